"""``--shard K/N``: the K-th (0-based, as ``$SLURM_ARRAY_TASK_ID``) of N contiguous chunks of a
sorted work list, for Slurm job arrays. One rule for every command that shards (denoise, pick),
so the same K/N always names the same files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N; ValueError (one line) otherwise."""
    parts = str(spec).split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        k, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(
            f"--shard {spec!r}: expected K/N with integers, e.g. 0/4 (K is 0-based)"
        ) from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {spec!r}: need N >= 1 and 0 <= K < N (K is 0-based)")
    return k, n


def shard_items(items: Sequence[T], k: int, n: int) -> list[T]:
    """The K-th of N contiguous chunks of ``items`` (sizes differ by at most one, larger first)."""
    base, extra = divmod(len(items), n)
    start = k * base + min(k, extra)
    stop = start + base + (1 if k < extra else 0)
    return list(items[start:stop])
