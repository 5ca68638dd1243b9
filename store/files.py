"""Whole-file writes: a reader sees the old file or the new one, never half of either.

One temp-name convention for the whole store: ``.<name>.tmp-<pid>-<ns>`` beside the target. The leading dot
hides it from every reader (they skip hidden names) and the pid/time suffix keeps two writers from ever
sharing a temp file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def temp_path(final: str | os.PathLike) -> Path:
    """A unique hidden temp name beside ``final`` (same folder, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``final`` by temp file + fsync + rename; on any failure the temp file is removed."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
