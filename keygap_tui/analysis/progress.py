"""Progress reporting and cancellation shared by every long analysis function.

The TUI runs these functions in thread workers: it passes ``progress(fraction, message)`` to draw a bar
and ``should_stop()`` to cancel. ``Steps`` maps the sub-steps of nested work onto one 0..1 range.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]


class Steps:
    """Report progress of ``total`` equal steps, optionally as a sub-range [start, stop] of a parent bar."""

    def __init__(
        self,
        total: int,
        progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        start: float = 0.0,
        stop: float = 1.0,
    ):
        self.total = max(1, int(total))
        self.done = 0
        self.progress = progress
        self.should_stop = should_stop
        self.start = start
        self.stop = stop

    def fraction(self, within: float = 0.0) -> float:
        return self.start + (self.stop - self.start) * min(1.0, (self.done + within) / self.total)

    def check(self) -> None:
        """Raise Cancelled if the caller asked to stop."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("cancelled")

    def report(self, message: str, within: float = 0.0) -> None:
        self.check()
        if self.progress is not None:
            self.progress(self.fraction(within), message)

    def advance(self, message: str = "") -> None:
        self.done += 1
        self.report(message)

    def child(self) -> ProgressFn | None:
        """A progress callback whose 0..1 covers this bar's next step (for a nested function)."""
        if self.progress is None:
            return None
        lo, hi, parent = self.fraction(0.0), self.fraction(1.0), self.progress
        return lambda f, message: parent(lo + (hi - lo) * min(1.0, max(0.0, f)), message)

    def sub(self, total: int) -> Steps:
        """Steps covering the next one step of this bar (for a nested call)."""
        return Steps(total, self.progress, self.should_stop, self.fraction(0.0), self.fraction(1.0))
