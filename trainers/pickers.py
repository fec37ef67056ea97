"""The table of pickers: name → the module that declares it (``PICKER``, a
:class:`trainers.core.options.PickerSpec`). ``cryoglean train``/``pick`` are built from it.

A new picker is one folder under ``trainers/`` plus one line here.
"""

from __future__ import annotations

import importlib

from trainers.core.options import PickerSpec

PICKERS: dict[str, str] = {
    "centernet": "trainers.centernet.options",
    "tomo": "trainers.tomopicker.options",
    "dynamicdet": "trainers.dynamicdet.options",
}


def names() -> list[str]:
    return sorted(PICKERS)


def get(name: str) -> PickerSpec:
    """The declaration of picker ``name`` (ValueError with the known names otherwise)."""
    if name not in PICKERS:
        import difflib

        near = difflib.get_close_matches(name, names(), n=2)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValueError(f"unknown picker {name!r}{hint} (known: {', '.join(names())})")
    return importlib.import_module(PICKERS[name]).PICKER
