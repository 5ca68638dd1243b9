"""Whole-file writes: a reader sees the old file or the new one, never half of either.

One temp-name convention for everything keygap writes: ``.<name>.tmp-<pid>-<ns>`` beside the target. The
leading dot hides it from every reader (they skip hidden names, and no glob of ``*.parquet`` matches it)
and the pid/time suffix keeps two writers from ever sharing a temp file. The rename is atomic because
the temp file is in the target's own folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A unique hidden temp name beside ``final`` (same folder, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


@contextmanager
def replacing(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path to write; when the block ends normally it replaces ``final`` in one rename. On any
    failure (an exception, Ctrl-C) the temp file is removed and ``final`` is untouched."""
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` through a temp file, fsynced before the rename (manifests, state)."""
    with replacing(final) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(final)
