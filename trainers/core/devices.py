"""``--gpus`` → Lightning Trainer arguments (training) or one torch device (picking)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Heads a picker does not train in some mode (CenterNet's size head in particle mode) have no
# gradient; DDP must be told, or it stops at the first step. Found by running the DDP path on
# 2 CPU processes.
DDP_STRATEGY = "ddp_find_unused_parameters_true"


def parse_gpus(gpus: str | None) -> dict:
    """``--gpus``: None → the first GPU when one is there, else CPU; ``-1`` → CPU; ``0,1`` →
    those GPUs (DDP when more than one). Returns Trainer keyword arguments."""
    import torch

    have = torch.cuda.is_available()
    if gpus is None or str(gpus).strip() == "":
        return {"accelerator": "gpu", "devices": [0]} if have else {"accelerator": "cpu",
                                                                     "devices": 1}
    text = str(gpus).strip()
    try:
        ids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ValueError(
            f"--gpus {text!r}: expected GPU ids like 0 or 0,1, or -1 for the CPU"
        ) from None
    if not ids or ids == [-1] or any(i < 0 for i in ids):
        return {"accelerator": "cpu", "devices": 1}
    if not have:
        log.warning("--gpus %s asked for GPUs but none is available; running on the CPU", text)
        return {"accelerator": "cpu", "devices": 1}
    kw = {"accelerator": "gpu", "devices": ids}
    if len(ids) > 1:
        kw["strategy"] = DDP_STRATEGY
    return kw


def pick_device(gpus: str | None) -> str:
    """The torch device a pick runs on (the first GPU that ``--gpus`` names, else ``cpu``)."""
    dev = parse_gpus(gpus)
    return f"cuda:{dev['devices'][0]}" if dev["accelerator"] == "gpu" else "cpu"
