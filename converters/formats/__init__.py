"""Picker formats: one module per format with symmetric ``read(path, **opts) -> DataFrame`` and
``write(picks, dest, **opts) -> list[Path]`` over the picks frame, plus declared
``CAPABILITIES`` and ``EXTENSIONS``, the layout of an export (``LAYOUT``, a
:class:`converters.layout.Layout`, with hooks where a format needs code) and the side information
its files need (``READ_NEEDS``, ``WRITE_NEEDS``). Use them through :mod:`converters.registry`.

Private helpers: ``_common`` (picks frame and its numpy form ``PickColumns``, errors, atomic
writes), ``_text`` (bulk numeric text
formatting).
"""
