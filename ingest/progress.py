"""The ingest progress bar on stderr: samples done of those pending, samples/s, keys/s and time left."""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    """A rich progress bar; every method is a no-op when ``enabled`` is False (no terminal, --no-progress)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total: int | None = None
        self.keys = 0
        self.t0 = time.time()
        self._bar: Any = None
        self._task: Any = None

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task("ingest", total=None, rate="")
        self._bar.start()

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, samples: int, keys: int) -> None:
        self.keys += keys
        if self._bar is None:
            return
        dt = max(time.time() - self.t0, 1e-9)
        done = self._bar.tasks[0].completed + samples
        rate = f"{done / dt:.2f} samples/s  {self.keys / dt:,.0f} keys/s"
        self._bar.update(self._task, advance=samples, rate=rate)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
