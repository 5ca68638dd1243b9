"""The ingest progress bar on stderr: samples done of those pending, samples/s, keys/s and time left.

Under `--devices` a launcher draws one bar for all shards: it hands each shard process a pipe in
KEYGAP_PROGRESS_FD, and the shard reports its total and each advance there as JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, TextIO


class ProgressBar:
    """A rich progress bar; every method is a no-op when ``enabled`` is False (no terminal, --no-progress)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total: int | None = None
        self.keys = 0
        self.t0 = time.time()
        self._bar: Any = None
        self._task: Any = None
        self._report: TextIO | None = _progress_pipe()

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
        self._send({"total": total or 0})
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, samples: int, keys: int) -> None:
        self.keys += keys
        self._send({"samples": samples, "keys": keys})
        if self._bar is None:
            return
        dt = max(time.time() - self.t0, 1e-9)
        done = self._bar.tasks[0].completed + samples
        rate = f"{done / dt:.2f} samples/s  {self.keys / dt:,.0f} keys/s"
        self._bar.update(self._task, advance=samples, rate=rate)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._report is not None:
            self._report.close()
            self._report = None

    def _send(self, event: dict) -> None:
        if self._report is None:
            return
        try:
            self._report.write(json.dumps(event) + "\n")
            self._report.flush()
        except OSError:  # the launcher went away: keep ingesting, stop reporting
            self._report = None


def _progress_pipe() -> TextIO | None:
    fd = os.environ.get("KEYGAP_PROGRESS_FD")
    if not fd:
        return None
    try:
        return os.fdopen(os.dup(int(fd)), "w", buffering=1)  # a copy: whoever made the pipe closes its own
    except (OSError, ValueError):
        return None
