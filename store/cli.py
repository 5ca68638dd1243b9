"""`keygap sql` and `keygap info`. Only stdlib at import time: `keygap --help` must stay instant."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_STORE = "./keygap-store"


def default_store() -> str:
    return os.environ.get("KEYGAP_STORE") or DEFAULT_STORE


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the key store (default: $KEYGAP_STORE or {DEFAULT_STORE})",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sql",
        help="run read-only SQL over the store (views keys, samples, runs, results)",
        description="Run read-only SQL over the store. Views: keys (one row per stored key; vec FLOAT[] is "
        "decoded only when selected), samples, runs, results.",
    )
    p.add_argument("query", help='e.g. "SELECT modality, count(*) FROM keys GROUP BY 1"')
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of standard output")
    add_store_argument(p)
    p.set_defaults(func=run_sql)

    p = subparsers.add_parser("info", help="summarise what a store holds", description="Summarise a store: models, benchmarks, layers, modalities, row counts, runs.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_argument(p)
    p.set_defaults(func=run_info)


def run_sql(args) -> int:
    from .sql import query_store, render

    if args.format == "parquet" and not args.out:
        from .errors import SqlError

        raise SqlError("--format parquet needs --out FILE (Parquet is binary)")
    table = query_store(args.store or default_store(), args.query)
    data = render(table, args.format)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(data)
        print(f"{table.num_rows} rows written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode())
    return 0


def run_info(args) -> int:
    from .summary import summarize

    summary = summarize(args.store or default_store())
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    lines = [f"store {s['store']}  (schema version {s['schema_version']})"]
    if not s["partitions"]:
        lines.append("no keys yet: run `keygap ingest --model ... --benchmark ...`")
    else:
        lines.append(f"{s['rows']:,} keys in {s['files']} files, {s['bytes'] / 2**20:.1f} MiB")
        lines.append(f"{'model':<28} {'benchmark':<14} {'layers':<18} {'rope':<9} {'modality':<9} {'dim':>5} {'rows':>10}")
        for g in s["groups"]:
            lines.append(
                f"{g['model']:<28} {g['benchmark']:<14} {g['layers']:<18} {g['rope']:<9} {g['modality']:<9} "
                f"{g['dim']:>5} {g['rows']:>10,}"
            )
    lines.append(f"{s['samples']} samples committed; {len(s['runs'])} runs")
    for r in s["runs"]:
        lines.append(
            f"  {r.get('run_id')}: {r.get('status')}  model={r.get('model_id')}  benchmark={r.get('benchmark')}  "
            f"samples={r.get('samples_done')}  skipped={r.get('samples_skipped')}"
        )
    return "\n".join(lines)
