"""Store benchmark: slice read of 5,000 x 4096 fp16 keys vs a raw pyarrow read of the same bytes; write rate.

Run: python benchmarks/bench_store.py   (or `make bench`). Prints a table; numbers go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from timing import timed

from store.reader import KeyStore
from store.writer import KeyBatch, KeyWriter

DIM = 4096
N = 5000
REPEATS = 5


def _batch(x, sample0, modality):
    n = len(x)
    ids = np.array([f"s{(sample0 + i // 32):06d}" for i in range(n)], dtype=object)
    return KeyBatch(
        model="bench", benchmark="b", layer=1, rope="post", modality=modality, sample_id=ids,
        position=np.arange(n) % 32, token_id=np.zeros(n, np.int32), segment=np.array(["image"] * n, dtype=object),
        keys=x, dtype="float16",
    )


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, DIM)).astype(np.float16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        # write: one partition of exactly N rows (the read comparison) and one of 4N rows (sampled reads)
        t = time.perf_counter()
        with KeyWriter(root, "bench") as w:
            w.add(_batch(x, 0, "image"))
            w.commit([])
            w.flush()
            for k in range(4):
                w.add(_batch(x, 10_000 * (k + 1), "text"))
                w.commit([])
                w.flush()
        write_s = time.perf_counter() - t
        mb = 5 * x.nbytes / 1e6
        ks = KeyStore(root)
        path = next((root / "keys").rglob("modality=image/*.parquet"))

        def raw():
            col = pq.read_table(path, columns=["key"])["key"].combine_chunks()
            buf = col.buffers()[2]
            return np.frombuffer(buf, dtype="<f2", count=len(col) * DIM).reshape(-1, DIM).astype(np.float32)

        def ours():
            return ks.load("bench", "b", 1, "image", n=N).x

        def ours_sample():
            return ks.load("bench", "b", 1, "text", n=N).x

        raw_s, a = timed(raw, repeat=REPEATS)
        ours_s, b = timed(ours, repeat=REPEATS)
        samp_s, _ = timed(ours_sample, repeat=REPEATS)
        assert a.shape == b.shape == (N, DIM)
        print(f"{'measure':<58} {'value':>12}")
        print(f"{'write rate (5 files, 25,000 x 4096 fp16, zstd-1)':<58} {mb / write_s:>9.0f} MB/s")
        print(f"{'raw pyarrow read of the key column -> float32 (s)':<58} {raw_s:>12.3f}")
        print(f"{'KeyStore.load 5,000 x 4096 (whole partition) (s)':<58} {ours_s:>12.3f}")
        print(f"{'  ratio ours / raw (target <= 1.5)':<58} {ours_s / raw_s:>12.2f}")
        print(f"{'KeyStore.load 5,000 sampled of 20,000 in 4 files (s)':<58} {samp_s:>12.3f}")
        print(f"{'  ratio sampled / raw':<58} {samp_s / raw_s:>12.2f}")


if __name__ == "__main__":
    main()
