"""Progress for long work, the one place that decides how it is shown.

On a terminal: a tqdm bar on stderr. Otherwise (Slurm output files, ``make``, cron mail):
plain lines on stderr every ``interval`` seconds and at the end, with the percentage, the rate
and the time left::

    train: 40/200 batches (20%), 3.1 batches/s, ETA 0:00:52

``CRYOGLEAN_PROGRESS_SECONDS`` sets the interval of those lines (default 30 s). Used by the
crawl, image export, picking, training (through a Lightning callback) and the report.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import TextIO

INTERVAL_ENV = "CRYOGLEAN_PROGRESS_SECONDS"


def interval_seconds() -> float:
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(value)) if value else 30.0
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={value!r} is not a number of seconds") from None


def line(desc: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """One progress line: ``desc: done/total unit (pct%), rate unit/s, ETA h:mm:ss``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        pct = 100.0 * done / total
        eta = _dt.timedelta(seconds=round((total - done) / rate)) if rate > 0 else "?"
        return (f"{desc}: {done}/{total} {unit} ({pct:.0f}%), {rate:.3g} {unit}/s, "
                f"ETA {eta}")
    return f"{desc}: {done} {unit}, {rate:.3g} {unit}/s"


class Progress:
    """``update(n)`` as work is done, ``close()`` (or a ``with`` block) at the end.

    ``enabled=False`` shows nothing. ``tty`` forces the bar (True) or the lines (False);
    default: whether ``stream`` is a terminal.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", enabled: bool = True,
                 stream: TextIO | None = None, interval: float | None = None,
                 tty: bool | None = None):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.interval = interval_seconds() if interval is None else interval
        self.done = 0
        self._t0 = time.monotonic()
        self._last = self._t0
        self._bar = None
        self._closed = False
        if enabled and (self.stream.isatty() if tty is None else tty):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval and (self.total is None or self.done < self.total):
            self._last = now
            self._emit(now)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def _emit(self, now: float) -> None:
        print(line(self.desc, self.done, self.total, self.unit, now - self._t0),
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done:
            self._emit(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True):
    """Iterate ``iterable`` with a :class:`Progress` (``total`` defaults to its length)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)
