"""Progress that reads well both on a terminal and in a log file.

On a terminal :func:`progress` is a tqdm bar. When stderr is not a terminal (``make demo > log``,
a batch job, a CI runner) tqdm's redraws end up as hundreds of lines joined by carriage returns,
so there it is a :class:`LogProgress` instead: one plain line each time another tenth is done or
``interval`` seconds have passed without a line (with the time left, when the total is known),
and a last line with the total and the rate.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Optional, TextIO

LOG_INTERVAL = 30.0
"""Seconds between two lines of a :class:`LogProgress` when no other tenth is done."""


class LogProgress:
    """A tqdm stand-in for logs: ``for x in LogProgress(...)``, ``update``, ``set_postfix``,
    ``close``. With a ``total``, a line at each tenth done; always a line after ``interval``
    seconds without one. The last line is printed on ``close`` when the loop was long enough to
    print a line or has a known total (a quick scan of unknown length stays silent)."""

    def __init__(
        self,
        iterable: Optional[Iterable] = None,
        desc: str = "",
        total: Optional[int] = None,
        unit: str = "it",
        interval: float = LOG_INTERVAL,
        stream: Optional[TextIO] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit.strip()
        self.interval, self.stream, self.clock = interval, stream, clock
        self.n = 0
        self.postfix = ""
        self.start = self.last_time = clock()
        self.tenths = 0  # tenths of total already reported
        self.printed_n: Optional[int] = None
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, **values) -> None:
        """Shown at the end of the next line, as tqdm shows it after the bar."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        tenths = self.tenths
        if self.total:
            tenths = min(10, self.n * 10 // self.total)
        if tenths > self.tenths or now - self.last_time >= self.interval:
            self.tenths = tenths
            self.write(now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.printed_n != self.n and (self.total is not None or self.printed_n is not None):
            self.write(self.clock())

    def write(self, now: float) -> None:
        elapsed = now - self.start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        percent = f" ({100 * self.n // self.total}%)" if self.total else ""
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        eta = ""
        if self.total and 0 < self.n < self.total and elapsed > 0:
            eta = f", ETA {clock_time((self.total - self.n) * elapsed / self.n)}"
        postfix = f", {self.postfix}" if self.postfix else ""
        line = f"{self.desc}: {done} {self.unit}{percent} in {elapsed:.0f}s{rate}{eta}{postfix}"
        print(line, file=self.stream or sys.stderr, flush=True)
        self.last_time, self.printed_n = now, self.n


def clock_time(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour: how long is left, as a clock shows it."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress(
    iterable: Optional[Iterable] = None,
    desc: str = "",
    total: Optional[int] = None,
    unit: str = "it",
    interval: float = LOG_INTERVAL,
    **tqdm_kwargs,
):
    """A tqdm bar on a terminal, else a :class:`LogProgress` (a few plain lines for a log)."""
    if getattr(sys.stderr, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, **tqdm_kwargs)
    return LogProgress(iterable, desc, total, unit, interval)
