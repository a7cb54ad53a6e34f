"""Progress of a rebuild: a bar on a terminal, plain log lines otherwise.

On a TTY: ``order_summary [#########-----]  64%  128,000/200,000 events  14,210 ev/s  ETA 0:05``
redrawn in place at most ``redraw`` times per second. Elsewhere (CI logs, pipes): one
line every ``log_every`` seconds and a final line, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

BAR_WIDTH = 24


class Reporter(Protocol):
    """Anything told how many events are done (a :class:`Progress`, a worker's counter)."""

    def update(self, done: int) -> None: ...


def human_duration(seconds: float) -> str:
    """A duration as people write it: ``0.42 s``, ``12.3 s``, ``4 min 31 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Reports ``done`` of ``total`` events with the rate and the estimated time left."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_every: float = 5.0,
        redraw: float = 0.1,
    ) -> None:
        self.label = label
        self.total = max(0, total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.log_every = log_every
        self.redraw = redraw
        self.started = clock()
        self.done = 0
        self._last_output = float("-inf")
        self._last_done = -1
        self._width = 0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if rate <= 0 or self.total <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def line(self) -> str:
        """The current status as one line of text."""
        total = max(self.total, self.done)
        fraction = self.done / total if total else 1.0
        eta = self.eta
        eta_text = format_duration(eta) if eta is not None else "?"
        counts = f"{self.done:,}/{total:,} events  {self.rate:,.0f} ev/s  ETA {eta_text}"
        if self.tty:
            filled = int(BAR_WIDTH * fraction)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            return f"{self.label} [{bar}] {fraction:4.0%}  {counts}"
        return f"{self.label}: {fraction:.0%}  {counts}"

    def update(self, done: int) -> None:
        """Record that ``done`` events are processed; draws or logs when due."""
        self.done = done
        now = self.clock()
        if now - self._last_output < (self.redraw if self.tty else self.log_every):
            return
        self._last_output = now
        self._emit()

    def _emit(self, final: bool = False) -> None:
        self._last_done = self.done
        if self.tty:
            line = self.line()
            stale = " " * max(0, self._width - len(line))  # a shorter line must not leave old characters
            self._width = len(line)
            self.stream.write("\r" + line + stale + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def interrupt(self) -> None:
        """End the bar's line (on a terminal) so that a message can follow it."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def finish(self) -> None:
        """Print the final state (ends the bar's line on a terminal)."""
        self.total = max(self.total, self.done)
        if self.tty or self._last_done != self.done:
            self._emit(final=True)
