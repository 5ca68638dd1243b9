"""The writer thread: owns the KeyWriter, so the model never waits on disk.

The main thread hands it whole batches (keys plus the samples rows that commit them) through a bounded
queue, which also bounds the memory of batches waiting to be written. It commits them in order and
flushes at least every ``checkpoint_seconds``, so a killed run loses at most that much work. After a
failure it writes nothing more and keeps the error for the main thread to report.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from pathlib import Path
from typing import Any

from store.errors import KeygapError, first_line
from store.writer import AttentionBatch, KeyBatch, KeyWriter

from .plan import IngestError


def key_rows(batches: list[Any]) -> int:
    """Key rows among one batch's writes (query vectors and attention rows are not keys)."""
    return sum(len(b) for b in batches if getattr(b, "kind", None) == "key")


class WriterThread(threading.Thread):
    """Adds and commits whole batches in order; ``samples_done``, ``samples_skipped`` and ``rows`` (key rows)
    count them."""

    def __init__(self, writer: KeyWriter, checkpoint_seconds: float):
        super().__init__(daemon=True, name="keygap-writer")
        self.writer = writer
        self.checkpoint_seconds = checkpoint_seconds
        self._last_flush = time.monotonic()
        self.queue: queue.Queue[tuple[list[KeyBatch | AttentionBatch], list[dict[str, Any]]] | None] = queue.Queue(
            maxsize=4)
        self.error: BaseException | None = None
        self.samples_done = 0
        self.samples_skipped = 0
        self.rows = 0

    def put(self, batches: list[KeyBatch | AttentionBatch], rows: list[dict[str, Any]]) -> None:
        if self.error is not None:
            raise write_failure(self.error, self.writer.root) from self.error
        while True:
            try:
                self.queue.put((batches, rows), timeout=0.5)
                return
            except queue.Full:
                if not self.is_alive():
                    raise write_failure(self.error, self.writer.root) from self.error

    def run(self) -> None:
        while True:
            msg = self.queue.get()
            if msg is None:
                break
            if self.error is not None:
                continue  # drain: nothing more is written after a failure
            batches, rows = msg
            try:
                for b in batches:
                    self.writer.add(b)
                self.writer.commit(rows)
                self.samples_done += sum(1 for r in rows if r.get("status") == "done")
                self.samples_skipped += sum(1 for r in rows if r.get("status") != "done")
                self.rows += key_rows(batches)
                if time.monotonic() - self._last_flush >= self.checkpoint_seconds:
                    self.writer.flush()
                    self._last_flush = time.monotonic()
            except BaseException as exc:  # kept for finish() and put() to report in the main thread
                self.writer.discard_staged()
                self.error = exc

    def finish(self) -> None:
        """Write everything queued, close the writer (flush committed keys), stop the thread."""
        self.queue.put(None)
        self.join()
        if self.error is None:
            try:
                self.writer.close()
            except BaseException as exc:  # the main thread reports it as a failed write
                self.error = exc


def write_failure(exc: BaseException | None, store: str | Path) -> KeygapError:
    """The one-line error of a failed write to the store, naming the cause and what to do."""
    if isinstance(exc, KeygapError):  # a lock taken over, a damaged store: already says what to do
        return exc
    resume = "rerun the same command to resume (committed samples are kept)"
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return IngestError(f"the disk holding {store} is full ({first_line(exc)}): free space, then {resume}")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return IngestError(f"cannot write to {store} ({first_line(exc)}): use a writable --store, then {resume}")
    return IngestError(f"writing to {store} failed ({first_line(exc) if exc else 'the writer stopped'}): {resume}")
