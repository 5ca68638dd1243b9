"""TUI responsiveness: time to first screen, and the longest event-loop stall while a t-SNE and an MMD run.

Run: .venv/bin/python benchmarks/bench_tui.py [--store demo-store] [--only start|keys|stall] [--dim 4096] [--keys 2000]

1. First screen: a fresh interpreter starts `keygap tui` headless; we time (wall clock from before the
   process was spawned) until Textual's Ready event (first frame painted) and until the store's catalog is
   on screen. Baseline in the same run: a bare Textual App with a Footer, the framework's own floor.
2. Stall: inside a headless app a 10 ms timer records the gap between its ticks. Baseline: the gaps while
   idle. Then MMD (compare, default n and permutations) and a t-SNE of both sides start together from
   the keyboard, in thread workers, and we record the gaps until both finish and their plots are drawn.
   Reference: the same two computations run directly (what a blocking UI would freeze for).
The results cache is cleared before each computation so nothing is answered from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def build_store(root: Path, dim: int, keys: int) -> Path:
    from store_helpers import write_synthetic_store

    tokens = 20
    write_synthetic_store(root, layers=(1,), samples=max(4, keys // tokens), tokens=tokens, dim=dim, shift=0.3,
                          flush_every=25)
    return root


# --- 1. time to first screen (child processes) -----------------------------------------------------------
CHILD = r"""
import sys, time, json
t_spawn = float(sys.argv[2]); kind = sys.argv[1]; store = sys.argv[3]
marks = {}
if kind == "bare":
    from textual.app import App
    from textual.widgets import Footer
    class Bare(App):
        def compose(self):
            yield Footer()
        def on_ready(self):
            marks["ready"] = time.time() - t_spawn
            self.exit()
    Bare().run(headless=True, size=(120, 40))
else:
    from keygap_tui.app.app import KeygapApp
    class Timed(KeygapApp):
        def on_ready(self):
            marks["ready"] = time.time() - t_spawn
        def _catalog_ready(self, catalog):
            super()._catalog_ready(catalog)
            marks["catalog"] = time.time() - t_spawn
            self.simulate_key("c")  # the user's first key, the moment the picker is filled
        def _matrix_part(self, table, part, p, rows):
            super()._matrix_part(table, part, p, rows)
            if rows and "result" not in marks:
                marks["result"] = time.time() - t_spawn
                marks["cached"] = all(r["cached"] for r in rows)
                self.call_after_refresh(self.exit)
    from keygap_tui.app.config import Config
    Timed(store, config=Config(), state_path=sys.argv[4]).run(headless=True, size=(120, 40))
print(json.dumps(marks))
"""


def first_screen(store: Path, repeats: int) -> dict:
    out: dict[str, list[float]] = {"bare_ready": [], "keygap_ready": [], "keygap_catalog": [], "keygap_result": []}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):  # launch 0 fills the results cache and the OS file cache; not counted
            for kind in ("bare", "keygap"):
                t0 = time.time()
                res = subprocess.run([sys.executable, "-c", CHILD, kind, str(t0), str(store),
                                      str(Path(tmp) / "state.json")],
                                     capture_output=True, text=True, env=env)
                if res.returncode:
                    raise SystemExit(f"the {kind} app failed to start: {res.stderr.strip()[-2000:]}")
                marks = json.loads(res.stdout.strip().splitlines()[-1])
                if i == 0:
                    continue
                out[f"{kind}_ready"].append(marks["ready"])
                if kind == "keygap":
                    out["keygap_catalog"].append(marks["catalog"])
                    out["keygap_result"].append(marks["result"])
    return {k: statistics.median(v) for k, v in out.items()}


# --- 2. stall while work runs ------------------------------------------------------------------------------
async def stall(store: Path, settings) -> dict:
    from test_tui_support import make_app

    from store.results import ResultsCache

    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(store, Path(tmp), settings=settings)
        gaps: list[float] = []
        last = [time.perf_counter()]

        where: list[str] = []

        def tick() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            where.append("; ".join(f"{j.label}: {j.message}" for j in app.status.jobs.values()))
            last[0] = now

        async with app.run_test(size=(120, 40)) as pilot:
            last[0] = time.perf_counter()
            timer = app.set_interval(0.01, tick)
            await pilot.pause()
            deadline = time.monotonic() + 600
            while not app.libraries_ready.is_set() or any(not w.is_finished for w in app.workers):  # catalog + warm-up
                await asyncio.sleep(0.05)
                if time.monotonic() > deadline:
                    raise SystemExit(f"start-up did not finish: {app.status.message}")
            startup = list(gaps)
            await pilot.press("f2")
            if app.query_one("#scatter-pane").method != "tsne":
                await pilot.press("t")
            gaps.clear()
            await asyncio.sleep(2.0)
            idle = list(gaps)
            gaps.clear()
            where.clear()
            ResultsCache(store).clear()
            t0 = time.perf_counter()
            last[0] = t0
            deadline = time.monotonic() + 600
            watching = None
            if os.environ.get("BENCH_TUI_TRACE"):
                watching = _watch_main_thread(last)
            await pilot.press("c", "r")
            while True:  # until both jobs are done and their results (table, plot) are on screen
                await asyncio.sleep(0.05)
                if time.monotonic() > deadline:
                    raise SystemExit(f"the jobs did not finish: {app.status.message}")
                busy = [w for w in app.workers if not w.is_finished]
                scattered = app.query_one("#scatter-pane").result is not None
                if not busy and scattered and app.query_one("#results").matrix.rows:
                    break
            await asyncio.sleep(0.3)
            work = list(gaps)
            if os.environ.get("BENCH_TUI_TRACE"):
                at = [sum(work[: i + 1]) for i in range(len(work))]
                top = sorted(range(len(work)), key=lambda i: -work[i])[:8]
                for i in top:
                    print(f"  gap {work[i] * 1000:.0f} ms ending {at[i]:.2f} s after start; jobs then: {where[i]}")
            wall = time.perf_counter() - t0
            ok = all(len(r.measures) == len(settings.metrics) for r in app.query_one("#results").matrix.rows.values())
            timer.stop()
            if watching is not None:
                watching.set()
    return {"startup": startup, "idle": idle, "work": work, "wall": wall, "ok": ok}


def _watch_main_thread(last: list[float], threshold_s: float = 0.08):
    """Trace mode: when the loop has not ticked for threshold_s, print what every thread is doing."""
    import threading
    import traceback

    main_id = threading.main_thread().ident
    stop = threading.Event()

    def watch() -> None:
        reported = 0.0
        while not stop.is_set():
            time.sleep(0.02)
            stuck = time.perf_counter() - last[0]
            if stuck > threshold_s and last[0] != reported:
                reported = last[0]
                frames = sys._current_frames()
                print(f"-- loop stuck {stuck * 1000:.0f} ms; main thread:")
                print("".join(traceback.format_stack(frames[main_id], limit=6)))
                for ident, frame in frames.items():
                    if ident not in (main_id, threading.get_ident()):
                        print(f"   thread {ident}: {traceback.format_stack(frame, limit=2)[-1].strip()}")

    threading.Thread(target=watch, daemon=True).start()
    return stop


# --- 3. reaction to every kind of key ------------------------------------------------------------------------
REACTION_KEYS = [  # (label, keys pressed before, the key timed): each opens, closes or changes something visible
    ("help opens (F1)", (), "f1"), ("help closes (Esc)", (), "escape"),
    ("palette opens (ctrl+p)", (), "ctrl+p"), ("palette closes (Esc)", (), "escape"),
    ("theme (T)", (), "T"), ("theme back (T)", (), "T"),
    ("Controls tab (F3)", (), "f3"), ("Layers tab (F4)", (), "f4"), ("SQL tab (F5)", (), "f5"),
    ("Esc leaves the editor", (), "escape"), ("Scatter tab (F2)", (), "f2"),
    ("middle layer (2)", (), "2"), ("next layer (])", (), "right_square_bracket"), ("early layer (1)", (), "1"),
]


async def reactions(store: Path, settings, rounds: int) -> dict:
    """Median time from a key press until the app is idle again (Pilot.press + one pause), per key; the
    baseline is an unbound key (f12) in the same app: Pilot's own cost."""
    from test_tui_support import make_app

    times: dict[str, list[float]] = {label: [] for label, _, _ in REACTION_KEYS} | {"unbound key (f12)": []}
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(store, Path(tmp), settings=settings)
        async with app.run_test(size=(120, 40)) as pilot:
            deadline = time.monotonic() + 600
            while not app.libraries_ready.is_set() or any(not w.is_finished for w in app.workers):
                await asyncio.sleep(0.05)
                if time.monotonic() > deadline:
                    raise SystemExit(f"start-up did not finish: {app.status.message}")
            await pilot.press("c")  # a computed matrix row and results on screen, as in real use
            await app.workers.wait_for_complete()
            for _ in range(rounds):
                for label, before, key in REACTION_KEYS + [("unbound key (f12)", (), "f12")]:
                    if before:
                        await pilot.press(*before)
                    t0 = time.perf_counter()
                    await pilot.press(key)
                    await pilot.pause()
                    times[label].append(time.perf_counter() - t0)
    return {label: statistics.median(v) for label, v in times.items()}


def blocking_reference(store: Path, settings) -> dict:
    from keygap_tui.app import tasks
    from keygap_tui.app.selection import Selection, read_catalog
    from store.results import ResultsCache

    sel = Selection().fitted(read_catalog(store))
    ResultsCache(store).clear()
    t0 = time.perf_counter()
    tasks.matrix_rows(str(store), tasks.matrix_plan(read_catalog(store), sel, "slice"), settings, lambda *part: None,
                      with_controls=False)
    t_mmd = time.perf_counter() - t0
    t0 = time.perf_counter()
    tasks.project_slice(str(store), sel, "tsne", settings)
    t_tsne = time.perf_counter() - t0
    return {"compare": t_mmd, "tsne": t_tsne}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=4096, help="key width (LLaVA-1.5-7B: 32 heads x 128 = 4096)")
    parser.add_argument("--keys", type=int, default=2000, help="keys per side in the store")
    parser.add_argument("--repeats", type=int, default=3, help="first-screen launches per app (median)")
    parser.add_argument("--threads", type=int, default=0,
                        help="compute_threads for the TUI (0 = CPUs - 1, the default)")
    parser.add_argument("--store", type=Path, default=None,
                        help="time the first screen and key reactions on this store (e.g. demo-store after "
                        "`make demo`) instead of a synthetic one")
    parser.add_argument("--rounds", type=int, default=5, help="presses of each key (median)")
    parser.add_argument("--only", choices=("start", "keys", "stall"), default=None, help="run one part only")
    args = parser.parse_args()

    from keygap_tui.app.config import AnalysisSettings

    # the TUI's defaults (those of keygap compare: n=500 per side, 200 permutations, 1000 keys per side in t-SNE)
    settings = AnalysisSettings(compute_threads=args.threads)
    parts = [args.only] if args.only else ["start", "keys", "stall"]
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp) / "store", args.dim, args.keys)
        what = f"store {store}" if args.store else f"synthetic store: {args.keys} keys per side, d = {args.dim}"
        print(f"{what}; settings: n={settings.n}, permutations={settings.permutations}, t-SNE keys per side="
              f"{settings.scatter_points}; compute threads={settings.threads()} of {os.cpu_count()} cpus; "
              f"load average {os.getloadavg()[0]:.1f}")
        if "start" in parts:
            fs = first_screen(store, args.repeats)
            print(f"first screen (Ready): keygap {fs['keygap_ready']:.2f} s vs bare Textual app "
                  f"{fs['bare_ready']:.2f} s "
                  f"(x{fs['keygap_ready'] / fs['bare_ready']:.2f})")
            print(f"first screen that accepts c (picker filled): {fs['keygap_catalog']:.2f} s "
                  f"(x{fs['keygap_catalog'] / fs['bare_ready']:.2f} the bare app); c pressed then, cached answer on "
                  f"screen at {fs['keygap_result']:.2f} s")
        if "keys" in parts:
            rx = asyncio.run(reactions(store, settings, args.rounds))
            base = rx.pop("unbound key (f12)")
            slowest = max(rx, key=rx.get)
            for label, t in rx.items():
                print(f"  key reaction {label:26s} {t * 1000:6.0f} ms")
            print(f"slowest key reaction: {slowest} {rx[slowest] * 1000:.0f} ms (an unbound key: {base * 1000:.0f} ms, "
                  f"x{rx[slowest] / base:.1f})")
        if "stall" in parts:
            st = asyncio.run(stall(store, settings))
            ref = blocking_reference(store, settings)
            report_stall(st, ref)


def report_stall(st: dict, ref: dict) -> None:
    def over(g: list[float]) -> tuple[float, float]:
        extra = sorted(max(0.0, x - 0.01) for x in g) or [0.0]
        return extra[-1], extra[int(0.99 * (len(extra) - 1))]

    start_max, start_p99 = over(st["startup"])
    idle_max, idle_p99 = over(st["idle"])
    work_max, work_p99 = over(st["work"])
    print(f"blocking reference: compare (MMD+JS) {ref['compare']:.2f} s, t-SNE {ref['tsne']:.2f} s")
    print(f"event loop, start-up (catalog + library warm-up in workers): longest stall {start_max * 1000:.0f} ms, "
          f"p99 {start_p99 * 1000:.0f} ms ({len(st['startup'])} ticks)")
    print(f"event loop, idle: longest stall {idle_max * 1000:.0f} ms, p99 {idle_p99 * 1000:.0f} ms "
          f"({len(st['idle'])} ticks)")
    print(f"event loop, MMD + t-SNE in workers ({st['wall']:.1f} s wall): longest stall {work_max * 1000:.0f} ms, "
          f"p99 {work_p99 * 1000:.0f} ms ({len(st['work'])} ticks); results shown: {st['ok']}")
    print(f"longest stall vs blocking the loop with the same work: {work_max / (ref['compare'] + ref['tsne']):.3f}")


if __name__ == "__main__":
    main()
