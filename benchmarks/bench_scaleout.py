"""Scale-out benchmarks (issue 13): ratios, each baseline paired with its candidate in this one process.

- shards: `keygap ingest --devices cpu,cpu` (two shard processes) against `--device cpu` (one process),
  the whole command timed as a user runs it (start-up and model load included), on the scaled-down
  LLaVA of bench_ingest.py. Ratio = one process's seconds / two processes' seconds (> 1: the shards help).
- s3-ingest: `ingest()` into a local S3 server (moto, 127.0.0.1, its own process) against a local folder,
  the model loaded once. Ratio = folder seconds / S3 seconds (1.0: S3 costs nothing).
- s3-compare: `compare()` without the cache on a d = 4096 slice read from the S3 server against the same
  store in a folder. Ratio = folder seconds / S3 seconds.

Pairs run back to back, the order alternating, and the median of the pairs' ratios is reported, so load
from other jobs on this shared machine drifting over minutes cancels out.

    python benchmarks/bench_scaleout.py [--only shards|s3-ingest|s3-compare] [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # s3_server: moto's S3 server as the tests start it
sys.path.insert(0, str(HERE))


def paired(baseline, candidate, pairs: int) -> tuple[float, float, float, list[float]]:
    """Median baseline seconds, median candidate seconds, median of the pairs' ratios, every ratio."""
    base, cand, ratios = [], [], []
    for i in range(pairs):
        if i % 2:
            c, b = candidate(), baseline()
        else:
            b, c = baseline(), candidate()
        base.append(b), cand.append(c), ratios.append(b / c)
    return statistics.median(base), statistics.median(cand), statistics.median(ratios), ratios


def row(name: str, base: float, cand: float, ratio: float, ratios: list[float]) -> str:
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    return f"| {name} | {base:.2f} | {cand:.2f} | **{ratio:.2f}** | {spread} |"


def bench_shards(tmp: Path, pairs: int, samples: int) -> list[str]:
    from bench_ingest import build_model

    model = tmp / "model"
    build_model(model)
    keygap = str(Path(sys.executable).parent / "keygap")
    common = ["ingest", "--model", str(model), "--benchmark", "sample", "--limit", str(samples),
              "--batch-size", "4", "--no-progress"]

    cpu: dict[str, list[float]] = {}

    def run(*extra: str) -> float:
        store = tmp / "store"
        shutil.rmtree(store, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([keygap, *common, "--store", str(store), *extra], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"keygap ingest {' '.join(extra)} failed: {proc.stderr[-2000:]}")
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu.setdefault(extra[-1], []).append(used)
        return seconds

    run("--device", "cpu")  # warm the file cache (python packages, model files)
    cpu.clear()
    result = paired(lambda: run("--device", "cpu"), lambda: run("--devices", "cpu,cpu"), pairs)
    one, two = statistics.median(cpu["cpu"]), statistics.median(cpu["cpu,cpu"])
    return [row(f"`--devices cpu,cpu` vs `--device cpu`, {samples} samples, whole command (wall)", *result),
            "| same, CPU seconds of all processes (ratio one / two: below 1, two processes spend more CPU) "
            f"| {one:.1f} | {two:.1f} | {one / two:.2f} | |"]


def bench_s3_ingest(tmp: Path, server, pairs: int, samples: int) -> list[str]:
    from bench_ingest import build_model

    from ingest.models import load_model
    from ingest.run import ingest

    build_model(tmp / "model")
    lm = load_model(str(tmp / "model"), device="cpu")
    out = []
    for label, checkpoint in (("flush at the end", 60.0), ("flush after every batch", 0.0)):
        def run(store: str, checkpoint: float = checkpoint) -> float:
            s = ingest(lm, "sample", store, limit=samples, batch_size=4, progress=False, checkpoint_seconds=checkpoint)
            assert s.samples_done == samples, s
            return s.seconds

        def local() -> float:
            shutil.rmtree(tmp / "store", ignore_errors=True)
            return run(str(tmp / "store"))

        def s3() -> float:
            return run(f"s3://{server.make_bucket()}/store")

        local()  # warm-up: imports, first-call costs
        out.append(row(f"`ingest` into S3 vs a folder, {samples} samples, {label}", *paired(local, s3, pairs)))
    return out


def bench_s3_compare(tmp: Path, server, pairs: int) -> list[str]:
    import pyarrow.fs as pafs
    from bench_analysis import build_store

    from keygap_tui.analysis import Side, compare

    root = tmp / "store4096"
    n = build_store(root)
    bucket = server.make_bucket()
    fs, prefix = pafs.FileSystem.from_uri(f"s3://{bucket}/store")
    pafs.copy_files(str(root), prefix, destination_filesystem=fs)
    a, b = Side("bench", "b", 1, "image"), Side("bench", "b", 1, "text")

    def timed(store: str) -> float:
        t0 = time.perf_counter()
        compare(store, a, b, use_cache=False)
        return time.perf_counter() - t0

    timed(str(root)), timed(f"s3://{bucket}/store")  # warm-up
    result = paired(lambda: timed(str(root)), lambda: timed(f"s3://{bucket}/store"), pairs)
    return [row(f"`compare()` default, no cache, from S3 vs a folder ({n:,} + {n:,} keys, d = 4096)", *result)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["shards", "s3-ingest", "s3-compare"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32, help="samples per ingest (shards); s3-ingest uses 8")
    args = parser.parse_args()
    print(f"load average now: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} cores")
    print("| run | baseline s (median) | candidate s (median) | ratio (median of pairs) | spread |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.only in (None, "shards"):
            print("\n".join(bench_shards(tmp, args.pairs, args.samples)), flush=True)
        if args.only in (None, "s3-ingest", "s3-compare"):
            from s3_server import S3Server

            server = S3Server(max_seconds=3600)
            os.environ.update(server.env())
            try:
                if args.only in (None, "s3-ingest"):
                    print("\n".join(bench_s3_ingest(tmp, server, args.pairs, 8)), flush=True)
                if args.only in (None, "s3-compare"):
                    print("\n".join(bench_s3_compare(tmp, server, args.pairs)), flush=True)
            finally:
                server.stop()
    print(f"load average now: {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
