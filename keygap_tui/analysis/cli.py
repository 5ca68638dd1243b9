"""`keygap compare` and `keygap report`. Only the standard library and store.schema (which needs nothing
else) at module top: the console script must start fast and `keygap ingest` must run where numpy-heavy
analysis imports are not wanted."""

from __future__ import annotations

import argparse
import json
import sys

from store.schema import ROPE_KINDS


def register(subparsers) -> None:
    """Add the ``compare`` and ``report`` subcommands to the keygap argument parser."""
    p = subparsers.add_parser(
        "compare",
        help="compare two key sets (default: image vs text) with MMD, JS, ...",
        description="Compare two sides of one model/benchmark/layer. Several --model/--layer values (or 'all') "
        "sweep; --controls adds the control groups (Image-vs-Image, Text-vs-Text, Image-vs-Text on disjoint "
        "sample halves). Answers are cached in the store (results table of `keygap sql`).",
    )
    p.add_argument("--model", nargs="+", required=True, help="model id or store label; several, or 'all', to sweep")
    p.add_argument("--benchmark", default=None, help="benchmark label (default: the store's only benchmark)")
    p.add_argument(
        "--layer", nargs="+", required=True,
        help="layer index, early/middle/late (1, L//2, L-1), N%% of depth, or 'all' (stored layers); several sweep",
    )
    p.add_argument("--a", default="image", help="first side: modality[:segment,...] (default image)")
    p.add_argument("--b", nargs="+", default=["text"],
                   help="second side: modality[:segment,...] (default text); several sweep, "
                   "e.g. text:question text:options")
    p.add_argument(
        "--metrics", default=None,
        help="comma list (default mmd,js); see keygap_tui.stats.METRICS; 'logits' = the logit decomposition over "
        "stored text queries (ingest --queries)",
    )
    p.add_argument("--n", default=None, help="keys per side: an integer or 'all' (default 500)")
    p.add_argument("--permutations", type=int, default=None, help="permutations for p-values (default 200; 0 = none)")
    p.add_argument("--ci", type=float, default=None,
                   help="level of the bootstrap interval over samples per value (default 0.95; 0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rope", default="post", choices=ROPE_KINDS, help="keys after (post) or before RoPE")
    p.add_argument(
        "--heads", default=None,
        help="per attention head: 'all' or indices like 0,5 (kv heads for key measures, query heads for logits); "
        "one row per head (default: whole keys)",
    )
    p.add_argument("--controls", action="store_true", help="also run the three control groups")
    p.add_argument("--replicates", type=int, default=None, help="control-group replicates (default 5)")
    p.add_argument(
        "--param", action="append", default=[], metavar="METRIC.NAME=VALUE",
        help="a metric parameter, e.g. mmd.estimator=biased or js.bins=32 (repeatable)",
    )
    p.add_argument("--threads", default="auto", help="BLAS threads: an integer, or auto (1 when the machine is busy)")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not store the answer")
    p.add_argument("--json", action="store_true", help="print a JSON list of result objects")
    p.set_defaults(func=run_compare)

    r = subparsers.add_parser(
        "report",
        help="reproduce the paper's Figure 1, Figure 2 and Table from the store",
        description="Write Figure 1 (t-SNE grid), Figure 2 (control-group box plots) and the Table as text plots, "
        "CSV, JSON and Markdown (plus PNG with matplotlib) into --out.",
    )
    r.add_argument("--out", required=True, help="folder for the artefacts (created if missing)")
    r.add_argument("--models", nargs="+", default=None, help="models (default: all in the store)")
    r.add_argument("--benchmarks", nargs="+", default=None, help="benchmarks (default: all of each model)")
    r.add_argument("--layers", default="early,middle,late", help="layer spec per model (default early,middle,late)")
    r.add_argument("--metrics", default=None, help="comma list (default mmd,js)")
    r.add_argument("--n", default=None, help="keys per side for the measures: integer or 'all' (default 500)")
    r.add_argument("--permutations", type=int, default=None, help="permutations for p-values (default 200)")
    r.add_argument("--ci", type=float, default=None,
                   help="level of the bootstrap interval over samples in the Table (default 0.95; 0 = none)")
    r.add_argument("--replicates", type=int, default=None, help="control-group replicates (default 5)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--image", default="image", help="image side spec, modality[:segments] (default image)")
    r.add_argument("--text", default="text", help="text side spec, e.g. text:question,options (default text)")
    r.add_argument("--rope", default="post", choices=ROPE_KINDS)
    r.add_argument("--projection-n", default=None, help="keys per slice in Figure 1 (default 1000, or 'all')")
    r.add_argument("--projection", default="tsne", choices=("tsne", "pca"), help="Figure 1 method (default tsne)")
    r.add_argument("--tsne-iterations", default=None, help="EARLY,MAIN t-SNE iterations (default 125,125)")
    png = r.add_mutually_exclusive_group()
    png.add_argument("--png", dest="png", action="store_true", default=None, help="require PNG figures")
    png.add_argument("--no-png", dest="png", action="store_false", help="skip PNG figures")
    r.add_argument(
        "--param", action="append", default=[], metavar="METRIC.NAME=VALUE",
        help="a metric parameter, e.g. js.bins=32 (repeatable)",
    )
    r.add_argument("--no-cache", action="store_true", help="recompute and do not store answers")
    r.set_defaults(func=run_report)


# --- argument helpers ---------------------------------------------------------------------------------------
def _split(values) -> list[str]:
    out = []
    for v in values or []:
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out


def _n(value, default):
    from .errors import AnalysisError

    if value is None:
        return default
    if str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise AnalysisError(f"--n must be an integer or 'all', got {value!r}") from None
    if n < 2:
        raise AnalysisError(f"--n must be at least 2 (or 'all'), got {n}")
    return n


def _ci(value, default):
    """The interval level: the default when not given, None for 0, else a level in [0.5, 1)."""
    from .errors import AnalysisError

    if value is None:
        return default
    if value == 0:
        return None
    if not 0.5 <= value < 1:
        raise AnalysisError(f"--ci must be a confidence level such as 0.95 (or 0 for none), got {value}")
    return float(value)


def _threads(value):
    from .errors import AnalysisError

    if value in (None, "auto"):
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise AnalysisError(f"--threads must be a positive integer or auto, got {value!r}")
    return n


def _only_benchmark(ks) -> str:
    from .errors import AnalysisError

    names = ks.benchmarks()
    if len(names) == 1:
        return names[0]
    if not names:
        raise AnalysisError("the store holds no keys yet: run `keygap ingest` first")
    raise AnalysisError(f"the store holds several benchmarks ({', '.join(names)}): pass --benchmark")


def _params(items) -> dict:
    """--param METRIC.NAME=VALUE items as {metric: {name: value}}, names checked against the measures."""
    from .errors import AnalysisError
    from .metrics import check_params

    out: dict = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        metric, dot, key = name.partition(".")
        if not eq or not dot or not metric.strip() or not key.strip():
            raise AnalysisError(f"--param {item!r}: write METRIC.NAME=VALUE, e.g. mmd.estimator=biased")
        out.setdefault(metric.strip().lower(), {})[key.strip()] = _param_value(value)
    check_params(out)
    return out


def _param_value(text: str):
    """JSON where it parses (0.5, true, [1, 2]); "a,b,c" is a list of such values; else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [_param_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def _check_counts(permutations: int, replicates: int, n: int | None, ks=None) -> None:
    """Refuse counts that cannot work: negative ones, and permutations whose null distribution would not
    fit in memory (each permutation keeps one membership byte per key, plus a few floats)."""
    from .errors import AnalysisError

    if permutations < 0:
        raise AnalysisError(f"--permutations must be 0 or more, got {permutations}")
    if replicates < 1:
        raise AnalysisError(f"--replicates must be at least 1, got {replicates}")
    rows = 2 * (n if n is not None else _largest_partition(ks))
    need = (permutations + 1) * (rows + 64)
    have = available_memory()
    if have and need > have // 2:
        most = max(0, have // 2 // (rows + 64) - 1)
        raise AnalysisError(
            f"--permutations {permutations:,} would need about {_gib(need)} of memory for {rows:,} keys "
            f"({'all' if n is None else n} per side), and {_gib(have)} is available: use --permutations "
            f"{most:,} or fewer (or a smaller --n)")


def _largest_partition(ks) -> int:
    if ks is None:
        return 0
    return max((p["rows"] for p in ks.partitions()), default=0)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable), else the physical total, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def _check_out_folder(out: str) -> None:
    """--out of report must be a folder (created if missing) that can be written."""
    import os

    from .errors import AnalysisError

    if os.path.exists(out) and not os.path.isdir(out):
        raise AnalysisError(f"--out {out} exists and is not a folder: give a folder for the report "
                            "(it is created if missing)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.exists(out) and not os.path.isdir(parent):
        raise AnalysisError(f"--out {out}: its parent folder {parent} does not exist; create it first")


def _store(args) -> str:
    from store.store_option import default_store

    return getattr(args, "store", None) or default_store()


def _progress_bar(description: str, enabled: bool = True):
    """A rich progress bar on stderr (silent when stderr is not a terminal, or not ``enabled``: rows printed
    to the same terminal would tear it), usable as a callback."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"), console=console, transient=True,
        disable=not (enabled and console.is_terminal),
    )
    task = bar.add_task(description, total=1.0, note="")

    def update(fraction: float, message: str) -> None:
        bar.update(task, completed=fraction, note=message[:60])

    return bar, update


# --- compare ---------------------------------------------------------------------------------------------
def run_compare(args) -> int:
    from store.errors import warn_problems

    from . import comparisons as cmp
    from .sides import Side, open_store, parse_what

    ks = open_store(_store(args))
    warn_problems(ks.problems, "compare")  # damaged files left out of the answer
    if args.benchmark is None:
        args.benchmark = _only_benchmark(ks)
    metrics = _split([args.metrics]) if args.metrics else list(cmp.DEFAULT_METRICS)
    n = _n(args.n, cmp.DEFAULT_N)
    permutations = cmp.DEFAULT_PERMUTATIONS if args.permutations is None else args.permutations
    replicates = cmp.DEFAULT_REPLICATES if args.replicates is None else args.replicates
    _check_counts(permutations, replicates, n, ks)
    ci = _ci(args.ci, cmp.DEFAULT_CI)
    metric_params = _params(args.param)
    models = _split(args.model)
    layer_spec = _split(args.layer)
    bs = list(args.b) if isinstance(args.b, (list, tuple)) else [args.b]
    use_cache = not args.no_cache
    threads = _threads(args.threads)
    from .metrics import metric_names

    metrics = list(metric_names(metrics))  # an empty list ("--metrics ,") is a one-line error here
    want_logits = "logits" in metrics
    metrics = [m for m in metrics if m != "logits"]
    single_layer = len(layer_spec) == 1 and layer_spec[0].lstrip("-").isdigit()
    if len(models) == 1 and models[0] != "all" and single_layer and len(bs) == 1 and args.heads is None:
        bar, update = _progress_bar("compare")
        with bar:
            rows = []
            layer = int(layer_spec[0])
            if metrics:
                ma, sa = parse_what(args.a)
                mb, sb = parse_what(bs[0])
                rows = cmp.compare(
                    ks, Side(models[0], args.benchmark, layer, ma, sa, args.rope),
                    Side(models[0], args.benchmark, layer, mb, sb, args.rope), metrics, n, args.seed,
                    permutations=permutations, ci=ci, metric_params=metric_params, use_cache=use_cache,
                    threads=threads, progress=update,
                )
                if args.controls:
                    rows += cmp.controls(
                        ks, models[0], args.benchmark, layer, metrics, n, args.seed, replicates=replicates,
                        rope=args.rope, image=args.a, text=bs[0], metric_params=metric_params, use_cache=use_cache,
                        threads=threads, progress=update,
                    )
            if want_logits:
                rows += _logit_rows(ks, models, args, layer_spec, bs[0], n, use_cache, update)
        print(json.dumps([r.to_dict() for r in rows], indent=1, allow_nan=False) if args.json else format_rows(rows))
        return 0
    # A sweep: rows are printed as each cell finishes (with --json, a progress bar shows instead); Ctrl-C
    # keeps what was printed, and every finished cell is in the results cache for the next run.
    plan = cmp.sweep_plan(ks, models, args.benchmark, layer_spec, args.rope, args.heads if metrics else None)
    sweep_models = list(dict.fromkeys(m for m, *_ in plan))
    pairs = [(args.a, b) for b in bs]
    printer = None if args.json else RowPrinter(sweep_models, pairs, controls=args.controls)
    bar, update = _progress_bar("sweep", enabled=args.json or not sys.stdout.isatty())
    rows = []
    try:
        with bar:
            if printer is not None:
                printer.header()
            if metrics:
                for row in cmp.iter_layer_sweep(
                    ks, sweep_models, args.benchmark, layer_spec, metrics=metrics, n=n, seed=args.seed, pairs=pairs,
                    rope=args.rope, permutations=permutations, ci=ci, with_controls=args.controls,
                    replicates=replicates, metric_params=metric_params, use_cache=use_cache, threads=threads,
                    progress=update, heads=args.heads,
                ):
                    rows.append(row)
                    if printer is not None:
                        printer.row(row)
            if want_logits:
                for b in bs:
                    for row in _logit_rows(ks, sweep_models, args, layer_spec, b, n, use_cache, update):
                        rows.append(row)
                        if printer is not None:
                            printer.row(row)
    except KeyboardInterrupt:
        if args.json:
            print(json.dumps([r.to_dict() for r in rows], indent=1, allow_nan=False))
        print(f"keygap compare: stopped after {len(rows)} rows (they are cached; run again to go on)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1, allow_nan=False))
    elif rows:
        print(f"\n{footer(rows)}")
    return 0


def _logit_rows(ks, models: list[str], args, layer_spec: list[str], b: str, n: int | None, use_cache: bool,
                update) -> list:
    """The logit decomposition (``--metrics logits``) for text queries against the sides ``args.a`` and ``b``."""
    from .logits import logit_sweep

    return logit_sweep(ks, models, args.benchmark, layer_spec, args.a, b, n, args.seed, rope=args.rope,
                       heads=args.heads, use_cache=use_cache, progress=update)


HEADERS = ["model", "layer", "head", "depth", "pair", "rep", "metric", "value", "corrected", "ci", "p_value", "n_a",
           "n_b", "seconds", "cached"]


def _cells(r) -> list[str]:
    """One comparison row as the table's cells."""
    m = r.result
    pair = r.group if r.kind == "controls" else f"{r.side_a.what} vs {r.side_b.what}"
    return [
        r.side_a.model, str(r.side_a.layer), "all" if r.side_a.head is None else str(r.side_a.head),
        "-" if r.depth is None else f"{r.depth:.2f}", pair,
        "-" if r.replicate < 0 else str(r.replicate), m.metric, f"{m.value:.6g}",
        "-" if m.extra.get("bias_corrected") is None else f"{m.extra['bias_corrected']:.6g}",
        "-" if m.ci is None else f"[{m.ci[0]:.4g}, {m.ci[1]:.4g}]",
        "-" if m.p_value is None else f"{m.p_value:.4g}", str(m.n_a), str(m.n_b), f"{m.seconds:.3f}",
        "yes" if r.cached else "no",
    ]


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def format_rows(rows) -> str:
    """A readable, aligned table of comparison rows (one line per metric value)."""
    lines = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(HEADERS)]
    out = [_line(HEADERS, widths), _line(["-" * w for w in widths], widths)] + [_line(line, widths) for line in lines]
    if rows:
        out += ["", footer(rows)]
    return "\n".join(out)


def footer(rows) -> str:
    """What follows the table: the logit decompositions spelled out, what the columns mean, the parameters."""
    out = []
    logit_rows = [r for r in rows if r.result.metric == "logits"]
    if logit_rows:
        out += ["logits: value = mean logit gap (image - text keys) that text queries see, scaled like the model; "
                "= centroid term + remainder"]
        for r in logit_rows:
            e = r.result.extra
            head = "all heads" if r.side_a.head is None else f"query head {r.side_a.head}"
            out.append(f"  {r.side_a.model} L{r.side_a.layer} {head}: gap {r.result.value:.6g} = centroid "
                       f"{e['centroid']:.6g} + remainder {e['remainder']:.6g}; share explained "
                       f"{_share(e.get('share_explained'))} over {e['n_queries']} queries")
        out.append("")
    first = rows[0]
    out.append("corrected = value minus its mean over the permutation draws (finite-sample bias), where given; "
               f"ci = {_ci_level(rows)} bootstrap interval over samples (of corrected, where given)")
    out.append(f"{first.side_a.benchmark}; params of the first row: {json.dumps(first.result.params, sort_keys=True)}")
    return "\n".join(out)


def _share(value) -> str:
    return "-" if value is None or value != value else f"{value:.1%}"


def _ci_level(rows) -> str:
    levels = {r.result.params.get("ci") for r in rows if r.result.ci is not None}
    return "/".join(f"{level:.0%}" for level in sorted(levels)) if levels else "no"


class RowPrinter:
    """The same table, printed a row at a time as a sweep produces them (widths fixed from the plan)."""

    def __init__(self, models: list[str], pairs: list[tuple[str, str]], controls: bool):
        from .defaults import GROUPS

        pair_names = [f"{a} vs {b}" for a, b in pairs] + (list(GROUPS) if controls else [])
        fixed = {"model": max(map(len, models), default=5), "layer": 5, "head": 4, "depth": 5,
                 "pair": max(map(len, pair_names), default=4), "rep": 3, "metric": 8, "value": 11, "corrected": 11,
                 "ci": 22, "p_value": 8, "n_a": 6, "n_b": 6, "seconds": 8, "cached": 6}
        self.widths = [max(len(h), fixed[h]) for h in HEADERS]

    def header(self) -> None:
        print(_line(HEADERS, self.widths))
        print(_line(["-" * w for w in self.widths], self.widths), flush=True)

    def row(self, row) -> None:
        print(_line(_cells(row), self.widths), flush=True)


# --- report ----------------------------------------------------------------------------------------------
def run_report(args) -> int:
    from . import comparisons as cmp
    from .errors import AnalysisError
    from .projection import DEFAULT_ITERATIONS, DEFAULT_PROJECTION_N
    from .report import report

    iterations = DEFAULT_ITERATIONS
    if args.tsne_iterations:
        try:
            early, main = (int(v) for v in args.tsne_iterations.split(","))
        except ValueError:
            raise AnalysisError(
                f"--tsne-iterations wants EARLY,MAIN (e.g. 125,125), got {args.tsne_iterations!r}"
            ) from None
        iterations = (early, main)
    from store.errors import warn_problems

    from .sides import open_store

    _check_out_folder(args.out)
    ks = open_store(_store(args))
    warn_problems(ks.problems, "report")
    n = _n(args.n, cmp.DEFAULT_N)
    permutations = cmp.DEFAULT_PERMUTATIONS if args.permutations is None else args.permutations
    replicates = cmp.DEFAULT_REPLICATES if args.replicates is None else args.replicates
    _check_counts(permutations, replicates, n, ks)
    metric_params = _params(args.param)
    projection_n = _n(args.projection_n, DEFAULT_PROJECTION_N)
    bar, update = _progress_bar("report")
    ci = _ci(args.ci, cmp.DEFAULT_CI)
    try:
        with bar:
            result = report(
                ks, args.out, _split(args.models) or None, _split(args.benchmarks) or None, args.layers,
                metrics=_split([args.metrics]) if args.metrics else cmp.DEFAULT_METRICS,
                n=n, seed=args.seed, permutations=permutations, ci=ci, replicates=replicates,
                image=args.image, text=args.text, rope=args.rope,
                projection_n=projection_n, projection_method=args.projection,
                iterations=iterations, png=args.png, metric_params=metric_params, use_cache=not args.no_cache,
                progress=update,
            )
    except OSError as exc:  # writing the artefacts: a full disk, a folder that cannot be written
        where = exc.filename or args.out
        raise AnalysisError(f"cannot write the report into {args.out} ({exc.strerror or exc}: {where}): free "
                            "space or choose another --out") from None
    print(f"report written to {result.out}:")
    for path in result.files:
        print(f"  {path.name}")
    print("time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    for note in result.notes:
        print(f"note: {note}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry for these two commands (the keygap console script wires them in itself)."""
    parser = argparse.ArgumentParser(prog="keygap")
    parser.add_argument("--store", default=None)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from store.errors import KeygapError

    try:
        return args.func(args)
    except KeygapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
