"""`keygap demo`: the README's main command. Ingests the bundled sample benchmark with two tiny random
models, with their text queries and attention allocation (once: ingest resumes, so a second run finds
everything done), then opens the explorer on it.

Without a terminal (CI, a pipe) it prints what the explorer would start from: the store summary and the
image-vs-text comparison of each model's middle layer, so the command still runs the whole job end to end.
"""

from __future__ import annotations

import sys

DEMO_MODELS = ("tiny:llava", "tiny:qwen2.5-vl")
DEMO_STORE = "demo-store"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="ingest the bundled sample with two tiny models (once) and open the explorer",
        description="Ingest the bundled sample benchmark with tiny:llava and tiny:qwen2.5-vl into a demo store "
        "(reused when already there), then open `keygap tui` on it.",
    )
    p.add_argument("--store", default=None, metavar="DIR", help=f"demo store (default: {DEMO_STORE})")
    p.add_argument("--benchmark", default="sample", help="benchmark to ingest (default: the bundled sample)")
    p.add_argument("--no-tui", action="store_true", help="print a summary instead of opening the explorer")
    p.set_defaults(func=run_demo)


def finished_run(store: str, model: str, benchmark: str) -> str | None:
    """The id of a finished demo ingest of ``model`` on ``benchmark`` in ``store``, or None.

    Read from the run manifests with the standard library: a second `make demo` then opens the explorer
    in seconds instead of importing torch and transformers only to find every sample done.
    """
    import json
    from pathlib import Path

    for path in sorted(Path(store, "runs").glob("*.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        settings = run.get("settings") if isinstance(run, dict) else None
        if (
            isinstance(settings, dict) and run.get("status") == "done" and settings.get("model_id") == model
            and settings.get("benchmark") == benchmark and set(settings.get("keys") or ()) == {"pre", "post"}
            and run.get("samples_done")
        ):
            if not settings.get("attention"):
                print(f"note: {store} was made before the demo captured queries and attention: delete it (make clean) "
                      "and run the demo again for the Attention tab", file=sys.stderr)
            return str(run.get("run_id"))
    return None


def run_demo(args) -> int:
    store = args.store or DEMO_STORE
    for model in DEMO_MODELS:
        done = finished_run(store, model, args.benchmark)
        if done:
            print(f"{model}: already ingested (run {done})", file=sys.stderr)
            continue
        from ingest.run import ingest

        summary = ingest(model, args.benchmark, store, layers="all", keys="both", queries="text", attention=True,
                         progress=sys.stderr.isatty())
        print(f"{model}: {summary.line()}", file=sys.stderr)
    from store.store_option import remember_store

    remember_store(store)  # plain `keygap` (and `keygap info`) now open the demo store
    if sys.stdin.isatty() and sys.stdout.isatty() and not args.no_tui:
        from keygap_tui.app import run

        run(store)
        return 0
    from keygap_tui.cli import main

    code = main(["info", "--store", store])
    from store.reader import KeyStore

    ks = KeyStore(store)
    for label in ks.models():
        for bench in ks.benchmarks(label):
            print(f"\n# {label} on {bench}: image vs text keys, middle layer", flush=True)
            code |= main(["compare", "--store", store, "--model", label, "--benchmark", bench, "--layer", "middle"])
    print(f"\nexplore it: keygap tui --store {store}")
    return code
