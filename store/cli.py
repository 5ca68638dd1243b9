"""`keygap sql` and `keygap info`. Only stdlib at import time: `keygap --help` must stay instant."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import warn_problems
from .store_option import add_store_argument, default_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sql",
        help="run read-only SQL over the store (views keys, samples, runs, results)",
        description="Run read-only SQL over the store. Views: keys (one row per stored key; vec FLOAT[] is "
        "decoded only when selected), samples, runs, results.",
    )
    p.add_argument("query", help='e.g. "SELECT modality, count(*) FROM keys GROUP BY 1"')
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of standard output")
    p.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                   help="stop a query that runs longer than S seconds (300; 0 = no limit)")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="DuckDB memory limit, e.g. 4GiB (half of this machine's memory)")
    add_store_argument(p)
    p.set_defaults(func=run_sql)

    p = subparsers.add_parser(
        "compact",
        help="merge each run's files into one per partition (ingest does this at the end of a run)",
        description="Merge each run's many flush files into one file per partition, for stores written before "
        "ingest compacted at the end of a run, or by a run that was stopped. Readers may read meanwhile: "
        "they see the old files or the new ones, never both. Safe to interrupt; running it again finishes.",
    )
    p.add_argument("--model", default=None, help="only this model (store label)")
    p.add_argument("--benchmark", default=None, help="only this benchmark")
    p.add_argument("--wait", action="store_true",
                   help="wait for an ingest writing a model and benchmark to finish instead of skipping it")
    add_store_argument(p)
    p.set_defaults(func=run_compact)

    p = subparsers.add_parser(
        "info", help="summarise what a store holds",
        description="Summarise a store: models, benchmarks, layers, modalities, row counts, runs.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_argument(p)
    p.set_defaults(func=run_info)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 10000000 seconds")
    return value


def run_sql(args: argparse.Namespace) -> int:
    from .catalog import SqlCatalog
    from .errors import SqlError
    from .sql import check_read_only, default_memory_limit, query_store, render

    if args.format == "parquet" and not args.out:
        raise SqlError("--format parquet needs --out FILE (Parquet is binary)")
    if args.out:
        check_output_path(args.out)
    check_read_only(args.query)
    catalog = SqlCatalog(args.store or default_store(), memory_limit=args.memory_limit or default_memory_limit())
    warn_problems(catalog.problems, "sql")
    table = query_store(catalog, args.query, timeout=args.timeout or None)
    data = render(table, args.format)
    if args.out:
        write_output(args.out, data)
        print(f"{table.num_rows} rows written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return 0


def check_output_path(path: str) -> None:
    """Refuse an --out that cannot be a file before any work is done."""
    from .errors import KeygapError

    if os.path.isdir(path):
        raise KeygapError(f"--out {path} is a folder: give a file name, e.g. {os.path.join(path, 'result.csv')}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise KeygapError(f"--out {path}: the folder {parent} does not exist; create it first")


def write_output(path: str, data: bytes) -> None:
    """Write a whole result file or nothing: a temp file renamed into place, errors as one line."""
    from .errors import KeygapError
    from .files import atomic_write_bytes

    try:
        if os.path.exists(path) and not os.path.isfile(path):  # a device such as /dev/stdout: write through
            with open(path, "wb") as f:
                f.write(data)
        else:
            atomic_write_bytes(path, data)
    except OSError as exc:
        raise KeygapError(
            f"cannot write --out {path}: {exc.strerror or exc}; choose another path or free space"
        ) from None


def run_compact(args: argparse.Namespace) -> int:
    from .compact import compact_store
    from .errors import StoreError
    from .location import is_remote
    from .reader import KeyStore

    store = args.store or default_store(reading=False)
    if is_remote(store):  # compaction renames and links files: only where the writer writes (store/location.py)
        raise StoreError(f"keygap compact works on a local or shared folder, not {store}: ingest into a folder and "
                         "compact it before copying it to object storage (a store on S3 keeps one file per flush)")
    KeyStore(store)  # a missing or foreign store is a one-line error before anything is locked
    last = [0.0]

    def progress(done: int, total: int, message: str) -> None:
        import time

        if sys.stderr.isatty() and time.monotonic() - last[0] > 1.0:
            last[0] = time.monotonic()
            print(f"keygap compact: {100 * done / max(1, total):3.0f}% {message}", file=sys.stderr)

    reports, skipped = compact_store(store, args.model, args.benchmark, wait=args.wait, progress=progress,
                                     on_wait=lambda holder: print(f"keygap compact: waiting for {holder}",
                                                                  file=sys.stderr))
    for report in reports:
        print(report.line())
    if not reports and not skipped:
        print("every run is already compact")
    for line in skipped:
        print(f"keygap compact: skipped: {line}", file=sys.stderr)
    return 1 if skipped else 0


def run_info(args: argparse.Namespace) -> int:
    from .summary import summarize

    summary = summarize(args.store or default_store())
    warn_problems(summary["problems"], "info")
    if args.json:
        from .jsonsafe import json_safe

        print(json.dumps(json_safe(summary), indent=1, allow_nan=False))  # strict JSON: NaN becomes null
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    lines = [f"store {s['store']}  (schema version {s['schema_version']})"]
    if not s["partitions"]:
        lines.append("no keys yet: run `keygap ingest --model ... --benchmark ...`")
    else:
        lines.append(f"{s['rows']:,} keys in {s['files']} files, {s['bytes'] / 2**20:.1f} MiB")
        lines.append(
            f"{'model':<28} {'benchmark':<14} {'layers':<18} {'rope':<9} {'modality':<9} {'dim':>5} {'rows':>10}"
        )
        for g in s["groups"]:
            lines.append(
                f"{g['model']:<28} {g['benchmark']:<14} {g['layers']:<18} {g['rope']:<9} {g['modality']:<9} "
                f"{g['dim']:>5} {g['rows']:>10,}"
            )
    for h in s.get("writing", []):
        part = f" ({h['part']})" if h.get("part") else ""
        lines.append(f"being written now: {h['model']} on {h['benchmark']}{part} by `{h['command']}` "
                     f"(pid {h['pid']} on host {h['host']})")
    for tree, what in (("queries", "query vectors"), ("attention", "attention rows")):
        for g in s.get(tree, []):
            lines.append(f"{g['model']:<28} {g['benchmark']:<14} {g['layers']:<18} {g['rows']:>10,} {what}")
    lines.append(f"{s['samples']} samples committed; {len(s['runs'])} runs")
    for r in s["runs"]:
        lines.append(
            f"  {r.get('run_id')}: {r.get('status')}  model={r.get('model_id')}  benchmark={r.get('benchmark')}  "
            f"samples={r.get('samples_done')}  skipped={r.get('samples_skipped')}"
        )
    return "\n".join(lines)
