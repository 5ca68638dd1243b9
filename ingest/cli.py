"""`keygap ingest`. Only the standard library at import time: torch loads when the command runs."""
from __future__ import annotations

import argparse
import sys

from store.store_option import add_store_argument, default_store

_EPILOG = """\
MODEL: a save_pretrained folder or a hub id already in the local Hugging Face cache (LLaVA-1.5,
LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Qwen3-VL), tiny:llava, tiny:llava-next, tiny:qwen2-vl,
tiny:qwen2.5-vl, tiny:qwen3-vl (small random models, no download), or random:llava-1.5-7b,
random:qwen2.5-vl-7b (full-size random weights, for GPU throughput).
BENCH: sample or sample-mmmu (bundled), or your copy of MMBench (a TSV, a Parquet file or folder)
or MMMU (the folder of <Subject>/validation-*.parquet), optionally prefixed mmbench-cn:, mmbench-en:
or mmmu:.
Run the same command again to resume: finished samples are skipped, nothing is stored twice.
One process writes a model and benchmark at a time (a lock in STORE/locks/): a second one is
refused, or waits with --wait; the shards of one run (same settings) write side by side.
MMBench CircularEval copies (rows >= 1,000,000) store text and special keys only: under causal
attention their image keys equal the original item's. Samples whose images cannot be decoded are
skipped, with the reason, in the run manifest (`keygap sql "SELECT * FROM runs"`).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="run a vision-language model over a benchmark and store its attention keys",
        description="Run a vision-language model over benchmark samples, capture the attention keys of "
        "chosen decoder layers with forward hooks, and append them to the store. Resumable: run the "
        "same command again.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="local folder, cached hub id, tiny:llava | tiny:qwen2.5-vl | ..., random:llava-1.5-7b")
    p.add_argument("--benchmark", required=True, metavar="BENCH",
                   help="sample, sample-mmmu, or a path to MMBench (TSV / Parquet) or MMMU (folder), "
                        "optionally prefixed mmbench-cn: / mmbench-en: / mmmu:")
    add_store_argument(p)
    p.add_argument("--layers", default="early,middle,late",
                   help="early,middle,late (= 1, L//2, L-1) | all | 0,5,31 (default: %(default)s)")
    p.add_argument("--keys", choices=("pre", "post", "both"), default="post",
                   help="post = after RoPE, what attention uses; pre = k_proj output (after k_norm "
                        "where the model has one) (default: %(default)s)")
    p.add_argument("--tokens", default="16:16",
                   help="IMAGE:TEXT tokens kept per sample, drawn with --seed (the last prompt token is "
                        "always kept), or 'all' (default: %(default)s)")
    p.add_argument("--segments", default=None,
                   help="comma-separated text segments eligible for the text draw, e.g. "
                        "question,options,hint (default: every segment)")
    p.add_argument("--queries", nargs="?", const="text", default=None, choices=("last", "text", "all-text"),
                   help="also store query vectors (pre/post RoPE as --keys) of: the last prompt token (last); "
                        "it plus the text tokens whose keys are drawn (text, the value when the flag is given "
                        "alone); it plus every text token of --segments (all-text)")
    p.add_argument("--attention", action="store_true",
                   help="also store, per sample, layer and query head, the attention mass the last prompt token "
                        "(and the mean of the other text queries) puts on each key group: sink, image, special "
                        "and each text segment (computed from q and K in the hook, exact under sdpa/flash too)")
    p.add_argument("--harness", choices=("lmms-eval", "lmms-eval-simple", "vlmevalkit"), default="lmms-eval",
                   help="whose prompts and image preprocessing to reproduce: lmms-eval (0.7.3, its default "
                        "chat classes), lmms-eval-simple (its --force_simple classes) or vlmevalkit (the "
                        "shipped config of each model) (default: %(default)s)")
    p.add_argument("--split", default=None,
                   help="benchmark split to read from a folder (MMBench: dev, MMMU: validation by default)")
    p.add_argument("--device", default="auto", help="cuda | cuda:N | cpu | auto (default: %(default)s)")
    p.add_argument("--dtype", default="auto",
                   help="compute dtype: float16 | bfloat16 | float32 | auto (the checkpoint's half type "
                        "on a GPU, float32 on a CPU) (default: %(default)s)")
    p.add_argument("--key-dtype", default="auto",
                   help="stored key dtype: float16 | bfloat16 | float32 | auto (the model's own) "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N", help="samples per forward (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N benchmark items")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="process shard I of N (0-based) of a seeded permutation of the samples; N "
                        "processes can write one store side by side; 'auto' takes I/N from a SLURM job "
                        "array or torchrun (default: %(default)s)")
    p.add_argument("--devices", default=None, metavar="LIST",
                   help="one shard process per device on this machine, e.g. cuda:0,cuda:1 | all (every "
                        "GPU) | cpu,cpu; one progress bar, Ctrl-C stops all, rerun resumes")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the shards as Ray tasks: on the cluster at ADDRESS (e.g. auto, ray://head:10001) "
                        "or, without one, a local Ray runtime; needs pip install 'keygap[ray]'")
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="with --ray: how many shards (default: one per GPU of the cluster)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the token draw and the shard split (default: %(default)s)")
    p.add_argument("--wait", action="store_true",
                   help="if another process is writing this model and benchmark into the store, wait for it "
                        "to finish instead of refusing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_ingest)
    global _PARSER
    _PARSER = p


_PARSER: argparse.ArgumentParser | None = None


def ingest_options(args: argparse.Namespace) -> dict:
    """The keyword options of ingest.run.ingest that a command line sets (model, benchmark, store apart)."""
    return dict(layers=args.layers, keys=args.keys, tokens=args.tokens, segments=args.segments,
                device=args.device, dtype=args.dtype, key_dtype=args.key_dtype, batch_size=args.batch_size,
                limit=args.limit, shard=args.shard, seed=args.seed, harness=args.harness, split=args.split,
                queries=args.queries, attention=args.attention, wait=args.wait,
                progress=not args.no_progress and sys.stderr.isatty())


def run_ingest(args) -> int:
    from .shards import ShardError, device_from_environment, parse_devices, shard_from_environment

    progress = not args.no_progress and sys.stderr.isatty()
    if args.shards is not None and not args.ray:
        raise ShardError("--shards goes with --ray; for shards you start yourself use --shard I/N")
    if args.ray or args.devices:
        if args.shard != "0/1" or args.device != "auto" or (args.ray and args.devices):
            raise ShardError("--devices and --ray start the shards themselves: use one of them, without "
                             "--shard and --device")
    if args.ray:
        from .ray_launch import run_on_ray

        if args.shards is not None and args.shards < 1:
            raise ShardError(f"--shards must be at least 1, got {args.shards}")
        options = {k: v for k, v in ingest_options(args).items() if k not in ("shard", "device", "progress")}
        return run_on_ray(args.model, args.benchmark, args.store or default_store(reading=False), options,
                          address=args.ray, shards=args.shards, progress=progress)
    if args.devices:
        from .launch import child_argv, run_on_devices

        assert _PARSER is not None
        devices = parse_devices(args.devices)
        return run_on_devices(child_argv(_PARSER, args), devices, progress=progress)
    if args.shard == "auto":
        i, n = shard_from_environment()
        args.shard = f"{i}/{n}"
        args.device = device_from_environment(args.device)
    from .run import ingest

    summary = ingest(args.model, args.benchmark, args.store or default_store(reading=False), **ingest_options(args))
    print(summary.line())
    for skip in summary.skipped[:10]:
        print(f"  skipped {skip['sample_id']}: {skip['reason']}")
    if len(summary.skipped) > 10:
        print(f"  ... {len(summary.skipped) - 10} more skipped (listed in the run manifest)")
    if summary.reader_skipped:
        print(f"  {len(summary.reader_skipped)} benchmark rows were unusable (listed in the run manifest), "
              f"first: {summary.reader_skipped[0][0]}: {summary.reader_skipped[0][1]}")
    if summary.status == "interrupted":
        print("interrupted: what was finished is kept; run the same command to resume", file=sys.stderr)
        return 130
    return 0
