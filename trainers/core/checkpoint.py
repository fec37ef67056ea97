"""Reading a run's checkpoint without Lightning (picking, fine-tuning)."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A file that is not a usable cryoglean checkpoint."""


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict (``state_dict``, ``hyper_parameters``, ``epoch``…) on the CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (give weights/best.ckpt or "
                                "weights/last.ckpt of a run)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad checkpoint file
        raise CheckpointError(f"{path}: not a cryoglean checkpoint ({exc})") from None


def net_state(ckpt: dict, prefix: str = "net.") -> dict:
    """The picker network's weights (the task's ``net`` submodule) of a checkpoint."""
    sd = ckpt.get("state_dict", {})
    net = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not net:
        raise CheckpointError(f"checkpoint holds no network weights (no {prefix!r}* entries)")
    return net


def hparams(ckpt: dict) -> dict:
    """The run options saved with the checkpoint."""
    return dict(ckpt.get("hyper_parameters", {}))
