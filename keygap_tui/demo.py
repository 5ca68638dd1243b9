"""`keygap demo`: the README's main command. Ingests the bundled sample benchmark with two tiny random
models (once: ingest resumes, so a second run finds everything done), then opens the explorer on it.

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


def run_demo(args) -> int:
    from ingest.run import ingest

    store = args.store or DEMO_STORE
    for model in DEMO_MODELS:
        summary = ingest(model, args.benchmark, store, layers="all", keys="both", progress=sys.stderr.isatty())
        print(f"{model}: {summary.line()}", file=sys.stderr)
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
