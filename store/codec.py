"""Key vectors as raw little-endian bytes <-> float32 numpy.

Parquet `binary` of raw 2-byte floats wrote 10.7x and read 1.5x faster than a list<float16> column (docs/STORAGE.md,
"Keys as raw bytes"). bfloat16 widens losslessly to float32 by a 16-bit shift, so bf16 models keep their exact values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .schema import KEY_DTYPES


def encode(keys: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """Return (a C-contiguous little-endian array whose bytes are the keys, vector byte width).

    ``keys`` is float16/float32 for those dtypes; for bfloat16 pass the raw bits as uint16 (torch:
    ``t.view(torch.uint16)``) or float32 values, which are rounded to nearest-even bf16.
    """
    if dtype not in KEY_DTYPES:
        raise ValueError(f"unknown key dtype {dtype!r}: use one of {', '.join(KEY_DTYPES)}")
    keys = np.asarray(keys)
    if keys.ndim != 2:
        raise ValueError(f"keys must be a 2-D array [n, dim], got shape {keys.shape}")
    if dtype == "float16":
        arr = keys.astype("<f2", copy=False)
    elif dtype == "float32":
        arr = keys.astype("<f4", copy=False)
    else:
        if keys.dtype == np.uint16:
            arr = keys.astype("<u2", copy=False)
        else:
            bits = keys.astype("<f4").view("<u4")
            rounded = bits + 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
            arr = (rounded >> 16).astype("<u2")
    return np.ascontiguousarray(arr), arr.shape[1] * KEY_DTYPES[dtype]


def to_arrow(keys: np.ndarray, dtype: str) -> pa.BinaryArray:
    """Zero-copy-ish Arrow binary array of one vector per row (offsets are a simple arange)."""
    arr, width = encode(keys, dtype)
    n = arr.shape[0]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    if offsets[-1] != (n * width):
        raise ValueError("key data too large for one Arrow binary array; write smaller batches")
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(arr)])


def decode(column: pa.Array | pa.ChunkedArray, dtype: str, dim: int | None = None) -> np.ndarray:
    """Binary column of equal-width vectors -> float32 [n, dim], one copy (the widening cast)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    itemsize = KEY_DTYPES[dtype]
    parts = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            raise ValueError("key column holds nulls: the store is damaged")
        off_type: type[np.signedinteger] = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        bufs = chunk.buffers()
        offsets = np.frombuffer(bufs[1], dtype=off_type)[chunk.offset : chunk.offset + len(chunk) + 1]
        start, stop = int(offsets[0]), int(offsets[-1])
        width = (stop - start) // len(chunk)
        if width * len(chunk) != stop - start or (len(chunk) > 1 and np.any(np.diff(offsets) != width)):
            raise ValueError("key vectors of different lengths in one slice: the store is damaged")
        raw = np.frombuffer(bufs[2], dtype=np.uint8)[start:stop]
        parts.append((raw, width))
    if not parts:
        return np.zeros((0, dim or 0), dtype=np.float32)
    widths = {w for _, w in parts}
    if len(widths) != 1:
        raise ValueError("key vectors of different lengths in one slice: the store is damaged")
    width = widths.pop()
    d = width // itemsize
    if dim is not None and d != dim:
        raise ValueError(f"key width {d} does not match expected dimension {dim}")
    raw = parts[0][0] if len(parts) == 1 else np.concatenate([p for p, _ in parts])
    if dtype == "float16":
        return raw.view("<f2").reshape(-1, d).astype(np.float32)
    if dtype == "float32":
        return raw.view("<f4").reshape(-1, d).astype(np.float32, copy=True)
    out = np.empty(raw.size // 2, dtype=np.uint32)
    np.left_shift(raw.view("<u2"), 16, out=out, dtype=np.uint32)
    return out.view(np.float32).reshape(-1, d)
