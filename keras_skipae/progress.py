"""Progress for long work outside ``fit``: decoding, statistics, probing, parity checks.

Work that ends within ``delay`` seconds shows nothing. Longer work shows a
live line on an interactive terminal (redrawn at most ten times a second) and,
when the output is not a terminal (logs, CI), one summary line at the end, so
logs stay readable. ``SKIPAE_PROGRESS=0`` turns it off, ``=1`` forces the
live line.

Example::

    with Progress("decoding train", total=len(files), unit="files") as bar:
        for f in files:
            decode(f)
            bar.update()

    for row in track(rows, "probing", total=len(rows)):
        ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def _mode(stream: TextIO) -> str:
    """``"live"``, ``"summary"`` or ``"off"`` for ``stream`` and ``SKIPAE_PROGRESS``."""
    setting = os.environ.get("SKIPAE_PROGRESS", "").strip().lower()
    if setting in ("0", "off", "false", "no"):
        return "off"
    if setting in ("1", "on", "true", "yes", "live"):
        return "live"
    isatty = getattr(stream, "isatty", None)
    return "live" if isatty is not None and isatty() else "summary"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Progress:
    """A progress line for ``total`` units of work (``total=None``: a count without a percentage)."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "items", delay: float = 2.0,
                 stream: TextIO | None = None):
        self.label = label
        self.total = int(total) if total is not None else None
        self.unit = unit
        self.delay = float(delay)
        self.stream = stream if stream is not None else sys.stderr
        self.mode = _mode(self.stream)
        self.count = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False
        self._closed = False

    def _text(self, now: float) -> str:
        elapsed = now - self.started
        if self.total:
            share = min(1.0, self.count / self.total)
            filled = int(share * 20)
            bar = "[" + "=" * filled + " " * (20 - filled) + "]"
            return f"{self.label} {bar} {self.count}/{self.total} {self.unit} ({share:.0%}), {_duration(elapsed)}"
        return f"{self.label}: {self.count} {self.unit}, {_duration(elapsed)}"

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.count += n
        if self.mode != "live":
            return
        now = time.monotonic()
        if now - self.started < self.delay or now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        self._drawn = True
        self.stream.write("\r" + self._text(now) + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """End the line: finish the live line, or write the summary when the work was long."""
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        if self.mode == "live" and self._drawn:
            self.stream.write("\r" + self._text(now) + "\x1b[K\n")
            self.stream.flush()
        elif self.mode == "summary" and now - self.started >= self.delay:
            self.stream.write(f"{self.label}: {self.count} {self.unit} in {_duration(now - self.started)}\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], label: str, total: int | None = None, *, unit: str = "items",
          delay: float = 2.0, stream: TextIO | None = None) -> Iterator[T]:
    """Yield ``items`` while showing a :class:`Progress` line (total from ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, unit=unit, delay=delay, stream=stream) as bar:
        for item in items:
            yield item
            bar.update()
