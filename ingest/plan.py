"""What one `keygap ingest` call will do, decided and checked before any work starts: the RunPlan.

Resuming: the run id is a hash of everything that decides which rows are stored (model, benchmark,
layers, keys, tokens, segments, seed, key dtype, harness profile with its version and model config, the
CircularEval policy and the split read), so
re-running the same command finds its own committed samples and skips them. --limit is not part of it:
a trial with --limit 5 is extended by the full run (concurrent shards must share one --limit, since it
decides the shard split). A store refuses a second ingest of the same model and benchmark with other
settings, since mixing them in one partition would make the numbers ambiguous.

Concurrency: the plan is made before the run takes its (model, benchmark) lock, so run.py checks the
settings and the committed samples again once it holds the lock (another writer may have finished since).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from store.errors import KeygapError
from store.schema import MANIFEST, resolve_layers

if TYPE_CHECKING:
    from ingest.benchmarks.base import BenchmarkSource

    from .harness import HarnessConfig
    from .models import LoadedModel
    from .selection import TokenPolicy

#: MMBench CircularEval copies (rows >= 1,000,000) are rotated options under the same image: under causal
#: attention their image keys equal the original item's, so only their text and special keys are stored
#: (their forward still sees the image).
CIRCULAR_POLICY = "text-only"


class IngestError(KeygapError, ValueError):
    """Bad ingest arguments or a run that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class RunPlan:
    """Everything the run loop needs, resolved and validated: the loaded model, the benchmark, the store,
    the run id, the stored settings and the samples already committed by earlier attempts."""

    lm: LoadedModel
    source: BenchmarkSource
    store: str  # a folder or an s3:// URI, as named
    run_id: str
    settings_hash: str
    settings: Mapping[str, Any]  # what decides the stored rows; hashed into run_id, kept in the manifest
    layers: tuple[int, ...]
    ropes: tuple[str, ...]
    key_dtype: str
    policy: TokenPolicy
    seed: int
    harness: str
    harness_config: HarnessConfig  # the profile resolved for this model: prompts and image steps
    batch_size: int
    limit: int | None
    shard: tuple[int, int]  # (i, n): shard i of n, 0-based
    finished: frozenset[str]  # sample ids this configuration already committed
    progress: bool
    checkpoint_seconds: float  # committed samples are flushed at least this often
    wait: bool = False  # wait for another writer of this model and benchmark instead of refusing
    queries: str | None = None  # which query vectors are stored (selection.QUERY_POLICIES), None = none
    attention: bool = False  # store the attention allocation of the query tokens

    @property
    def query_policy(self) -> str | None:
        """The query tokens captured: --queries, or its default (``text``) when only --attention is asked."""
        return self.queries or ("text" if self.attention else None)

    @property
    def device(self) -> str:
        return str(self.lm.device)

    @property
    def dtype(self) -> str:
        return str(self.lm.dtype)


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """"I/N" (0-based I) or (I, N)."""
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise IngestError(f"--shard {shard!r} is not I/N (e.g. 0/4 for the first of four shards)") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise IngestError(f"--shard {i}/{n}: I must be 0..N-1 (shards are numbered from 0)")
    return int(i), int(n)


def parse_keys(keys: str) -> tuple[str, ...]:
    table = {"pre": ("pre",), "post": ("post",), "both": ("pre", "post")}
    if keys not in table:
        raise IngestError(f"--keys {keys!r}: use pre (k_proj output), post (after RoPE) or both")
    return table[keys]


def plan_run(
    model: str | LoadedModel,
    benchmark: str,
    store: str | Path,
    *,
    layers: str | int | list[int] = "early,middle,late",
    keys: str = "post",
    tokens: str | None = "16:16",
    segments: str | list[str] | None = None,
    device: str | None = "auto",
    dtype: str | None = None,
    key_dtype: str | None = None,
    batch_size: int = 4,
    limit: int | None = None,
    shard: str | tuple[int, int] = (0, 1),
    seed: int = 0,
    harness: str = "lmms-eval",
    split: str | None = None,
    progress: bool = True,
    checkpoint_seconds: float = 60.0,
    wait: bool = False,
    queries: str | None = None,
    attention: bool = False,
) -> RunPlan:
    """Check the arguments (cheap checks first, the model load last) and resolve them into a RunPlan."""
    from ingest.benchmarks import open_benchmark
    from store.writer import init_store

    from .capture import storage_dtype
    from .harness import resolve as resolve_harness
    from .models import LoadedModel, load_model
    from .prompts import HARNESSES
    from .selection import parse_queries, parse_tokens

    ropes = parse_keys(keys)
    shard_i, shard_n = parse_shard(shard)
    if int(batch_size) < 1:
        raise IngestError(f"--batch-size must be at least 1, got {batch_size}")
    if limit is not None and int(limit) < 1:
        raise IngestError(f"--limit must be at least 1, got {limit}")
    try:
        policy = parse_tokens(tokens, segments)
        query_policy = parse_queries(queries)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    if harness not in HARNESSES:
        raise IngestError(f"--harness {harness!r}: use one of {', '.join(HARNESSES)}")

    from store.location import is_remote

    source = open_benchmark(benchmark, split=split)
    remote = is_remote(store)
    store_name = str(store) if remote else str(Path(store))
    if remote or Path(store).exists():
        init_store(store_name)  # a bad --store (or bucket, or credentials) fails now, not after the model loads
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    try:
        layer_list = resolve_layers(layers, lm.num_layers)
        kdtype = storage_dtype(lm.dtype, key_dtype)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    harness_config = resolve_harness(harness, lm.model_type)

    settings: dict[str, Any] = {
        "model_id": lm.model_id, "model": lm.label, "benchmark": source.name, "layers": layer_list,
        "keys": list(ropes), "tokens": policy.describe(),
        "segments": sorted(policy.segments) if policy.segments else None, "seed": int(seed),
        "key_dtype": kdtype, "harness": harness, "circular": CIRCULAR_POLICY,
        # profile, harness version, model config and image steps: a different one is a different run
        "harness_config": harness_config.describe(),
    }
    if source.split is not None:  # the split actually read, so a default and its explicit name agree
        settings["split"] = source.split
    # Present only when asked for, so the run ids of plain key runs stay what they were.
    if query_policy is not None:
        settings["queries"] = query_policy
    if attention:
        settings["attention"] = True
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return RunPlan(
        lm=lm, source=source, store=store_name, run_id=f"ingest-{digest}-{shard_i}of{shard_n}",
        settings_hash=digest, settings=MappingProxyType(settings), layers=tuple(layer_list), ropes=ropes,
        key_dtype=kdtype, policy=policy, seed=int(seed), harness=harness,
        harness_config=harness_config, batch_size=int(batch_size),
        limit=None if limit is None else int(limit), shard=(shard_i, shard_n),
        finished=committed_samples(store_name, settings, digest), progress=bool(progress),
        checkpoint_seconds=float(checkpoint_seconds), wait=bool(wait), queries=query_policy,
        attention=bool(attention),
    )


def committed_samples(root: str, settings: Mapping[str, Any], digest: str) -> frozenset[str]:
    """Sample ids this configuration already committed; refuse a clashing configuration."""
    from store.location import open_location
    from store.reader import KeyStore

    if not open_location(root).is_file(MANIFEST):
        return frozenset()

    ks = KeyStore(str(root))
    for run in ks.runs():
        raw = run.get("settings")
        s: dict[str, Any] = raw if isinstance(raw, dict) else {}
        same_target = s.get("model") == settings["model"] and s.get("benchmark") == settings["benchmark"]
        # Another split holds other items, so it may share the partitions; any other difference may not.
        diff = [k for k in sorted(set(s) | set(settings))
                if k not in ("model_id", "split") and s.get(k) != settings.get(k)]
        if same_target and run.get("settings_hash") != digest and (diff or s.get("model_id") != settings["model_id"]):
            raise IngestError(
                f"{root} already holds {settings['model']} on {settings['benchmark']} ingested with other "
                f"settings ({', '.join(diff) or 'model id'} differ, run {run.get('run_id')}): use the same "
                "settings to resume, or another --store")
    table = ks.samples(["model", "benchmark", "sample_id", "run_id"])
    prefix = f"ingest-{digest}-"
    return frozenset(
        sid for m, b, sid, rid in zip(table["model"].to_pylist(), table["benchmark"].to_pylist(),
                                      table["sample_id"].to_pylist(), table["run_id"].to_pylist(), strict=True)
        if m == settings["model"] and b == settings["benchmark"] and str(rid).startswith(prefix)
    )
