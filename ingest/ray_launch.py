"""`keygap ingest --ray [ADDRESS]`: the N shards of one ingest as Ray tasks on a Ray cluster.

Ray places the tasks (one GPU each where the cluster has GPUs, `num_gpus=0` on CPU), and each task runs the
ordinary shard (`ingest(..., shard=(i, N))`), so the store, its resume and its files are those of N
hand-started shards. Progress travels as the same JSON-line events the `--devices` launcher reads, through
a Ray queue to the driver. Ctrl-C cancels the tasks; a cancelled shard stops like a Ctrl-C'd one and keeps
what it committed. Ray is optional (`pip install 'keygap[ray]'`) and imported only here.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from .launch import ShardBar, ShardProgress, shards_outcome
from .shards import ShardError


def run_on_ray(model: str, benchmark: str, store: str, options: dict[str, Any], *, address: str | None,
               shards: int | None, progress: bool) -> int:
    """Run the shards as Ray tasks; 0 when all finished, 130 after Ctrl-C, 2 if any failed."""
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise ShardError("--ray needs Ray: pip install 'keygap[ray]' (or pip install ray)") from None
    try:
        ray.init(address=None if address in (None, "", "local") else address, include_dashboard=False,
                 ignore_reinit_error=True, log_to_driver=False,
                 runtime_env={"env_vars": {"KEYGAP_RAY_SHARD": "1"}})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ShardError(f"--ray {address or ''}: cannot reach a Ray cluster ({str(exc).splitlines()[0]}); "
                         "start one with `ray start --head` or leave out the address for a local one") from None
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = shards or gpus
    if not n:
        raise ShardError("the Ray cluster has no GPUs: say how many CPU shards to run with --shards N")
    # Workers may start elsewhere: hand them absolute paths (the store must be shared by the workers).
    store = os.path.abspath(store) if "://" not in store else store
    if os.path.exists(benchmark):
        benchmark = os.path.abspath(benchmark)
    events = Queue()
    task = ray.remote(_shard_task).options(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)
    refs = [task.remote(model, benchmark, store, options, i, n, events) for i in range(n)]
    state = [ShardProgress() for _ in range(n)]
    bar = ShardBar(progress, n)
    interrupted = False
    pending = list(refs)
    try:
        while pending:
            _, pending = ray.wait(pending, timeout=0.2)
            _drain(events, state)
            for i, ref in enumerate(refs):
                state[i].running = ref in pending
            bar.show(state)
    except KeyboardInterrupt:
        interrupted = True
        print(f"stopping {len(pending)} shard(s) cleanly ...", file=sys.stderr)
        for ref in pending:
            ray.cancel(ref)
    failed = 0
    for i, ref in enumerate(refs):
        name = f"shard {i}/{n} (ray)"
        try:
            summary = ray.get(ref)
        except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
            print(f"{name}: cancelled before it committed anything new")
            continue
        except ray.exceptions.RayTaskError as exc:
            failed += 1
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            text = str(cause).strip()
            print(f"{name} failed: {text.splitlines()[-1] if text else type(cause).__name__}", file=sys.stderr)
            continue
        interrupted |= summary["status"] == "interrupted"
        print(f"{name}: {summary['line']}")
    _drain(events, state)
    for s in state:
        s.running = False
    bar.show(state)
    bar.stop()
    return shards_outcome(n, failed, interrupted)


def _shard_task(model: str, benchmark: str, store: str, options: dict[str, Any], i: int, n: int, events) -> dict:
    """One shard, inside a Ray worker: the plain ingest, its progress events forwarded to the driver."""
    import json

    import ray

    from .run import ingest

    device = "cuda" if ray.get_gpu_ids() else "cpu"
    r, w = os.pipe()
    os.environ["KEYGAP_PROGRESS_FD"] = str(w)

    def forward() -> None:
        with os.fdopen(r, "r") as f:
            for line in f:
                try:
                    events.put_nowait((i, json.loads(line)))
                except Exception:  # a full or gone queue must never stop the ingest
                    pass

    t = threading.Thread(target=forward, daemon=True)
    t.start()
    try:
        summary = ingest(model, benchmark, store, **{**options, "shard": (i, n), "device": device, "progress": False})
    finally:
        os.environ.pop("KEYGAP_PROGRESS_FD", None)
        os.close(w)
        t.join(timeout=5)
    return {"status": summary.status, "line": summary.line()}


def _drain(events, state: list[ShardProgress]) -> None:
    deadline = time.time() + 0.05
    while time.time() < deadline:
        try:
            i, event = events.get_nowait()
        except Exception:  # ray.util.queue.Empty
            return
        state[i].apply(event)
