"""Picker formats: one module per format with symmetric ``read(path, **opts) -> DataFrame`` and
``write(picks, dest, **opts) -> list[Path]`` over the picks frame, plus declared
``CAPABILITIES`` and ``EXTENSIONS``. Use them through :mod:`converters.registry`.

Private helpers: ``_common`` (picks frame, errors, atomic writes), ``_text`` (bulk numeric text
formatting).
"""
