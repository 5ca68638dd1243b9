"""The run manifest (STORE/runs/<run_id>.json): what a run was, how it went, and with which software.

It is written when a run starts (status "running") and rewritten when it ends, so `keygap sql "SELECT *
FROM runs"` shows every attempt's settings, provenance and totals. A resumed run keeps the first start
time, counts its attempts and carries the skipped samples of earlier attempts forward.

Its totals (samples_done, samples_skipped, keys_written) are always counted from what the store has
committed at that moment, never from what the run handed to its writer: a killed run's manifest, or one
whose last flush failed on a full disk, claims no row a reader cannot see.
"""

from __future__ import annotations

from typing import Any

from store.schema import utc_now

from .plan import RunPlan

#: at most this many skipped samples (and unusable benchmark rows) are listed in a manifest
MAX_SKIPS_IN_MANIFEST = 1000


def start_manifest(plan: RunPlan) -> dict[str, Any]:
    """The manifest of a starting run, continuing the one an earlier attempt of the same run left."""
    lm = plan.lm
    manifest: dict[str, Any] = {
        "run_id": plan.run_id, "status": "running", "settings": dict(plan.settings),
        "settings_hash": plan.settings_hash, "model_id": lm.model_id,
        "model": lm.label, "model_type": lm.model_type, "benchmark": plan.source.name,
        "benchmark_source": _describe_source(plan.source), "shard": f"{plan.shard[0]}/{plan.shard[1]}",
        "device": plan.device, "dtype": plan.dtype, "batch_size": plan.batch_size,
        "num_layers": lm.num_layers, **lm.head_layout(), **_model_identity(lm.model),
        "started": utc_now(), "ended": None, "versions": _versions(),
        "notes": {"layers": "early,middle,late = 1, L//2, L-1 (our choice; the paper names none)",
                  "tokens": "IMAGE:TEXT tokens per sample drawn from (seed, sample id); the last "
                            "prompt token is always kept; 'all' keeps every token",
                  "circular": "CircularEval copies store text and special keys only",
                  "heads": "stored keys are the kv heads concatenated in order (head_dim values each), stored "
                           "queries the query heads; query head h reads kv head kv_head_of_query_head[h]",
                  **_capture_notes(plan)},
    }
    previous = _previous_manifest(plan)
    if previous:
        manifest["started"] = previous.get("started", manifest["started"])
        manifest["attempts"] = previous.get("attempts", 1) + 1
        manifest["skipped"] = previous.get("skipped", [])
    manifest.update(committed_totals(plan))
    return manifest


def finish_manifest(manifest: dict[str, Any], plan: RunPlan, *, status: str, skipped: list[dict[str, str]]) -> None:
    """Status, end time and the run's totals as the store holds them (every attempt's committed samples)."""
    manifest.update(status=status, ended=utc_now())
    manifest.update(committed_totals(plan))
    manifest["skipped"] = (manifest.get("skipped", []) + skipped)[:MAX_SKIPS_IN_MANIFEST]
    manifest["reader_skipped"] = [list(s) for s in plan.source.skipped][:MAX_SKIPS_IN_MANIFEST]


def committed_totals(plan: RunPlan) -> dict[str, int]:
    """samples_done, samples_skipped and keys_written of this run id (all attempts), as committed now."""
    from store.reader import KeyStore

    ks = KeyStore(plan.store)
    table = ks.samples(["run_id", "status"])
    statuses = [s for r, s in zip(table["run_id"].to_pylist(), table["status"].to_pylist(), strict=True)
                if r == plan.run_id]
    done = sum(1 for s in statuses if s == "done")
    keys = sum(f.rows for f in ks.inventory.all_files() if f.run_id == plan.run_id)
    return {"samples_done": done, "samples_skipped": len(statuses) - done, "keys_written": keys}


def _capture_notes(plan: RunPlan) -> dict[str, str]:
    notes = {}
    if plan.query_policy is not None:
        notes["queries"] = ("query tokens: the last prompt token" + {
            "last": "", "text": " and the text tokens of the key draw",
            "all-text": " and every text token of --segments"}[plan.query_policy]
            + ("; their vectors are stored" if plan.queries else "; used for attention only"))
    if plan.attention:
        notes["attention"] = ("per sample, layer and query head: attention mass of the last prompt token (query "
                              "'last') and the mean over the other text queries ('text') on each key group (sink = "
                              "position 0, image, special, video, each text segment), computed in float32 from the "
                              "layer's q and all K with the model's scaling, causal mask and softcapping")
    return notes


def _previous_manifest(plan: RunPlan) -> dict[str, Any] | None:
    from store.writer import read_run

    return read_run(plan.store, plan.run_id)


def _describe_source(source: Any) -> dict[str, Any]:
    try:
        return source.describe()
    except Exception:  # provenance is best effort: a reader that cannot describe itself still ingests
        return {"benchmark": source.name}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        keygap = version("keygap")
    except PackageNotFoundError:
        keygap = "unknown"
    return {"keygap": keygap, "torch": torch.__version__, "transformers": transformers.__version__}


def _model_identity(model: Any) -> dict[str, Any]:
    """Revision and attention implementation: keys of the same weights can differ across both."""
    config = getattr(model, "config", None)
    return {
        "revision": getattr(config, "_commit_hash", None),
        "name_or_path": getattr(config, "_name_or_path", None),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }
