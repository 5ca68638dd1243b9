"""Benchmarks at the real shape of a study (issue 8), on stores built through KeyWriter and cached on disk.

Run: .venv/bin/python benchmarks/bench_scale.py [--cache DIR] [--only NAMES] [--repeat 5] [--big-dim 4096]
     (`make bench BENCH=scale`; `make bench` alone skips it: the first run writes ~13 GB and takes long)

Stores (built once under --cache, default ~/.cache/keygap-bench/scale-v1; delete a store's folder to rebuild it):
  study    llava-like (d=4096 fp16) and qwen-like (d=512) models, 32 layers. Layer 16 holds 64,000 image + 64,000
           text keys (4,000 items x 16 + 16 tokens); the other 31 layers hold the first 250 items only (4,000 +
           4,000 keys), which keeps the cache at ~3.5 GB instead of ~38 GB (a seeded n=500 sample reads O(n), see
           `compare` and `bytes`). Batches of 100 items as an ingest writes them; each model's run compacted at
           its end, as ingest does.
  small    the same two models, one layer, 3,200 + 3,200 keys (200 items): the "small partition" baselines
  big-D    one d=D model, one layer: 1,008,000 image keys (1,750 items x 576, `--tokens all`) + 112,000 text
  layout   the full study's partition layout with tiny keys (d=8): 2 models x 2 benchmarks (4,329 and 900
           items) x 32 layers x pre+post x image/text/special, flushed every 500 items, compacted
  demo     `keygap demo`'s store (tiny:llava and tiny:qwen2.5-vl on the bundled sample)

Measures (each a ratio against a baseline run in the same process, repeated; medians):
  compare  compare() n=500/side on study llava-like layer 16 (64k) / on small (3.2k)        target <= 1.3
  big      compare() on big-D (1M image keys) / on small's d=D model                          target <= 1.5
  bytes    bytes read (/proc/self/io rchar) by a seeded 500-key load / 500 keys' bytes         target <= 4
  info     `keygap info` as a process on layout and study, and its ratio to the demo store     target < 1 s
  tui      the TUI's first screen that accepts `c` (picker filled), and its ratio to the demo   target < 2 s
  sql      numpy decode + norm of 128k x 4096 keys / `keygap sql` norm aggregate of the same   target >= 0.5
  sweep    32-layer x 2-model sweep at n=500 / 64 single compares; time to the first row      target <= 1.2, < 1 s
           (in process, and `keygap compare --layer all` as a process to its first printed row)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYOUT_VERSION = 1  # bump when the stored format changes, so the cache is rebuilt
MODELS = {"llava-like": 4096, "qwen-like": 512}
LAYERS = 32
ITEMS = 4000  # x 16 tokens = 64,000 keys per side and layer
FULL_LAYER = 16  # the study's layer with all ITEMS; the others hold SWEEP_ITEMS
SWEEP_ITEMS = 250  # x 16 tokens = 4,000 keys per side in the other 31 layers
SMALL_ITEMS = 200  # x 16 = 3,200
TOKENS = 16
BATCH = 100
BENCH = "mmbench-cn"
SEGMENTS = ("system", "question", "options", "assistant")


# --- building ---------------------------------------------------------------------------------------------
def _labels(items: range, image_tokens: int, text_tokens: int, special: int = 0):
    """Per modality: sample ids, positions, segments and token ids of these items (positions as in a prompt)."""
    out = {}
    n_items = len(items)
    ids = np.array([str(1_000 + i) for i in items], dtype=object)
    spec = {"image": (image_tokens, 5), "text": (text_tokens, 5 + image_tokens), "special": (special, 0)}
    for modality, (k, first) in spec.items():
        if not k:
            continue
        segs = (["image"] * k if modality == "image" else
                [SEGMENTS[t % len(SEGMENTS)] for t in range(k)] if modality == "text" else ["special"] * k)
        out[modality] = (np.repeat(ids, k), np.tile(np.arange(first, first + k), n_items),
                         np.array(segs * n_items, dtype=object))
    return out, ids


def write_run(root: Path, model: str, dim: int, layers: list[int], items: int, *, image_tokens: int = TOKENS,
              text_tokens: int = TOKENS, special: int = 0, ropes=("post",), benchmark: str = BENCH,
              checkpoint_items: int | None = None, seed: int = 0, later_layers: list[int] | None = None,
              later_from: int = 0, log=print) -> None:
    """One run of one model written as an ingest writes it (KeyWriter, batches of BATCH items), then compacted.
    With ``later_layers``, items from ``later_from`` on are written for those layers only."""
    from store.compact import compact_run
    from store.writer import KeyBatch, KeyWriter
    from store.writer import write_run as write_manifest

    run_id = f"bench-{model}-{benchmark}"
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    w = KeyWriter(root, run_id)
    for start in range(0, items, BATCH):
        batch = range(start, min(items, start + BATCH))
        labels, ids = _labels(batch, image_tokens, text_tokens, special)
        for layer in (layers if later_layers is None or start < later_from else later_layers):
            for modality, (sid, pos, seg) in labels.items():
                keys = rng.standard_normal((len(pos), dim), dtype=np.float32).astype(np.float16)
                for rope in ropes:
                    w.add(KeyBatch(model=model, benchmark=benchmark, layer=layer, rope=rope, modality=modality,
                                   sample_id=sid, position=pos.astype(np.int32),
                                   token_id=rng.integers(0, 32000, len(pos)),
                                   segment=seg, keys=keys))
        w.commit([{"model": model, "benchmark": benchmark, "sample_id": s, "status": "done"} for s in ids])
        if checkpoint_items and (start + BATCH) % checkpoint_items == 0:
            w.flush()  # an ingest's periodic checkpoint
        if start % (BATCH * 10) == 0:
            log(f"  {model} {benchmark}: {start + len(batch)}/{items} items, {time.perf_counter() - t0:.0f} s")
    w.close()
    files = w.files_written
    report = compact_run(root, run_id, progress=None)
    write_manifest(root, {"run_id": run_id, "status": "done", "model_id": model, "model": model,
                          "benchmark": benchmark, "num_layers": LAYERS, "started": "", "ended": ""})
    log(f"  {model} {benchmark}: {files} files written, compacted: {report.line()} ({time.perf_counter() - t0:.0f} s)")


def build(cache: Path, name: str, log=print) -> Path:
    """The store ``name`` under ``cache`` (built when missing; a half-built one is rebuilt)."""
    root = cache / name
    done = root / ".bench-complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    log(f"building {root} (once; cached)")
    if name == "study":
        for model, dim in MODELS.items():
            write_run(root, model, dim, list(range(LAYERS)), ITEMS, later_layers=[FULL_LAYER], later_from=SWEEP_ITEMS,
                      log=log)
    elif name == "small":
        for model, dim in MODELS.items():
            write_run(root, model, dim, [16], SMALL_ITEMS, log=log)
    elif name.startswith("big-"):
        write_run(root, "big", int(name[4:]), [16], 1750, image_tokens=576, text_tokens=64, log=log)
    elif name == "layout":
        for model in MODELS:
            for benchmark, items in (("mmbench-cn", 4329), ("mmmu", 900)):
                write_run(root, model, 8, list(range(LAYERS)), items, special=2, ropes=("post", "pre"),
                          benchmark=benchmark, checkpoint_items=500, log=log)
    elif name == "demo":
        proc = subprocess.run([sys.executable, "-m", "keygap_tui.cli", "demo", "--no-tui", "--store", str(root)],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"keygap demo failed: {proc.stderr[-2000:]}")
    else:
        raise SystemExit(f"unknown store {name}")
    done.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return root


# --- measuring --------------------------------------------------------------------------------------------
def rchar() -> int:
    """Bytes this process passed through read system calls (Linux), the measure of what a load read."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise SystemExit("no /proc/self/io")


def paired(a, b, repeat: int) -> tuple[list[float], list[float]]:
    """Alternate a and b ``repeat`` times (after one unmeasured round each); wall-clock seconds of each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeat):
        for f, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            f()
            out.append(time.perf_counter() - t0)
    return ta, tb


def one_compare(store: Path, model: str, layer: int, a: str = "image", b: str = "text", benchmark: str = BENCH):
    from keygap_tui.analysis import Side, compare

    def run():
        return compare(str(store), Side(model, benchmark, layer, a), Side(model, benchmark, layer, b), use_cache=False,
                       threads="auto")

    return run


def load_avg() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def measure_compare(cache: Path, repeat: int) -> dict:
    small, study = build(cache, "small"), build(cache, "study")
    out = {}
    for model in MODELS:
        t_small, t_big = paired(one_compare(small, model, 16), one_compare(study, model, 16), repeat)
        out[model] = {"small_s": statistics.median(t_small), "study_s": statistics.median(t_big),
                      "ratio": statistics.median(np.array(t_big) / np.array(t_small))}
    return out


def measure_big(cache: Path, repeat: int, dim: int) -> dict:
    small, big = build(cache, "small"), build(cache, f"big-{dim}")
    model = next(m for m, d in MODELS.items() if d == dim)
    t_small, t_big = paired(one_compare(small, model, 16), one_compare(big, "big", 16), repeat)
    return {"dim": dim, "small_s": statistics.median(t_small), "big_s": statistics.median(t_big),
            "ratio": statistics.median(np.array(t_big) / np.array(t_small))}


def measure_bytes(cache: Path, repeat: int, dim: int) -> dict:
    from store.reader import KeyStore

    cases = [("study", "llava-like", 16), ("study", "qwen-like", 16), (f"big-{dim}", "big", 16)]
    out = {}
    for name, model, layer in cases:
        ks = KeyStore(str(build(cache, name)))
        ks.load(model, BENCH, layer, "image", n=500, seed=10_000)  # imports, footers
        ratios = []
        for seed in range(repeat):
            before = rchar()
            s = ks.load(model, BENCH, layer, "image", n=500, seed=seed)
            ratios.append((rchar() - before) / (500 * s.x.shape[1] * 2))
        out[f"{name}/{model}"] = {"dim": int(s.x.shape[1]), "rows": s.total, "ratio": statistics.median(ratios),
                                  "max": max(ratios)}
    return out


def _process_seconds(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    return statistics.median(times[1:])


def measure_info(cache: Path, repeat: int) -> dict:
    from store.summary import summarize

    out = {}
    for name in ("demo", "layout", "study"):
        root = build(cache, name)
        t_proc = _process_seconds([sys.executable, "-m", "keygap_tui.cli", "info", "--store", str(root)], repeat)
        t0 = time.perf_counter()
        s = summarize(str(root))
        out[name] = {"process_s": t_proc, "summarize_s": time.perf_counter() - t0, "partitions": len(s["partitions"]),
                     "files": s["files"], "keys": s["rows"]}
    for name in ("layout", "study"):
        out[name]["ratio_to_demo"] = out[name]["process_s"] / out["demo"]["process_s"]
    return out


def measure_tui(cache: Path, repeat: int) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_tui import first_screen

    out = {}
    for name in ("demo", "layout", "study"):
        marks = first_screen(build(cache, name), repeat)
        out[name] = {"accepts_c_s": marks["keygap_catalog"], "first_result_s": marks["keygap_result"],
                     "bare_textual_s": marks["bare_ready"]}
    for name in ("layout", "study"):
        out[name]["ratio_to_demo"] = out[name]["accepts_c_s"] / out["demo"]["accepts_c_s"]
    return out


def measure_sql(cache: Path, repeat: int) -> dict:
    """numpy decode + norm of the 128k x 4096 keys of one layer / `keygap sql`'s norm aggregate of the same rows:
    through the ``norm`` column (what the README offers for norms) and through ``vec_norm(vec)`` (lists)."""
    import pyarrow.parquet as pq

    from store import codec
    from store.reader import KeyStore
    from store.sql import query_store

    study = build(cache, "study")
    ks = KeyStore(str(study))
    parts = [ks.inventory.files[("llava-like", BENCH, FULL_LAYER, "post", m)] for m in ("image", "text")]
    files = [f.path for fs in parts for f in fs]
    where = f"WHERE model = 'llava-like' AND layer = {FULL_LAYER}"
    queries = {"norm_column": f"SELECT avg(norm) AS norm FROM keys {where}",
               "vec_norm": f"SELECT avg(vec_norm(vec)) AS norm FROM keys {where}"}
    got = {}

    def numpy_way():
        norms = []
        for path in files:
            pf = pq.ParquetFile(path)
            for g in range(pf.metadata.num_row_groups):
                x = codec.decode(pf.read_row_group(g, columns=["key"])["key"], "float16")
                norms.append(np.sqrt(np.einsum("ij,ij->i", x, x)))
        got["numpy"] = float(np.concatenate(norms).mean())

    def sql_way(name):
        def run():
            got[name] = query_store(str(study), queries[name]).to_pylist()[0]["norm"]
        return run

    out = {"keys": sum(f.rows for fs in parts for f in fs), "file_mib": sum(os.path.getsize(p) for p in files) / 2**20}
    for name in queries:
        t_np, t_sql = paired(numpy_way, sql_way(name), repeat)
        out[name] = {"numpy_s": statistics.median(t_np), "sql_s": statistics.median(t_sql),
                     "ratio": statistics.median(np.array(t_np) / np.array(t_sql)),
                     "agree": abs(got["numpy"] - got[name]) < 1e-3 * got["numpy"], "query": queries[name]}
    return out


def measure_sweep(cache: Path, repeat: int) -> dict:
    """A 32-layer x 2-model sweep at n=500 (iter_layer_sweep, rows as they come) / 64 x one compare of the same
    models (the median single compare of each model's layer 16 counted 32 times); time to the first row, in
    process and as `keygap compare --layer all` prints it."""
    from keygap_tui.analysis import iter_layer_sweep

    study = build(cache, "study")
    singles = {}
    for model in MODELS:
        run = one_compare(study, model, FULL_LAYER, benchmark=BENCH)
        run()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        singles[model] = statistics.median(times)
    baseline = sum(LAYERS * t for t in singles.values())
    sweeps, firsts, cells = [], [], 0
    for _ in range(max(1, repeat // 2)):
        t0 = time.perf_counter()
        first, rows = None, 0
        for _row in iter_layer_sweep(str(study), list(MODELS), BENCH, "all", use_cache=False, threads="auto"):
            first = first if first is not None else time.perf_counter() - t0
            rows += 1
        sweeps.append(time.perf_counter() - t0)
        firsts.append(first)
        cells = rows
    cli_first = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "keygap_tui.cli", "compare", "--store", str(study), "--model",
                                 *MODELS, "--layer", "all", "--no-cache"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        header = True
        for line in proc.stdout:
            if header and ("llava-like" in line or "qwen-like" in line):
                cli_first.append(time.perf_counter() - t0)
                header = False
                break
        proc.kill()
        proc.wait()
    sweep = statistics.median(sweeps)
    return {"single_compare_s": singles, "sweep_s": sweep, "rows": cells, "ratio": sweep / baseline,
            "first_row_s": statistics.median(firsts),
            "cli_first_row_s": statistics.median(cli_first) if cli_first else None}


MEASURES = {"compare": measure_compare, "big": measure_big, "bytes": measure_bytes, "info": measure_info,
            "tui": measure_tui, "sql": measure_sql, "sweep": measure_sweep}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "keygap-bench" / f"scale-v{LAYOUT_VERSION}"))
    p.add_argument("--only", default=",".join(MEASURES), help=f"comma list of {', '.join(MEASURES)} or 'build'")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--big-dim", type=int, default=4096, choices=sorted(set(MODELS.values())),
                   help="key width of the 1M-key partition (4096: ~8 GB, and ~16 GB while it is compacted)")
    p.add_argument("--build", default="", help="only build these stores (comma list: study,small,big-512,layout,demo)")
    args = p.parse_args(argv)
    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    if args.build:
        for name in args.build.split(","):
            build(cache, name.strip())
        return 0
    results = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count()}
    for name in args.only.split(","):
        name = name.strip()
        kwargs = {"dim": args.big_dim} if name in ("big", "bytes") else {}
        results[name] = MEASURES[name](cache, args.repeat, **kwargs) | {"load": load_avg()}
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
