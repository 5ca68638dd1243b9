"""What a store holds, for `keygap info` and the TUI's picker."""

from __future__ import annotations

from itertools import groupby

from .lock import held_locks
from .reader import KeyStore


def summarize(store: str | KeyStore) -> dict:
    ks = store if isinstance(store, KeyStore) else KeyStore(store)
    parts = ks.partitions()
    groups = []

    def keyf(p: dict) -> tuple:
        return p["model"], p["benchmark"], p["rope"], p["modality"]

    for key, grouped in groupby(sorted(parts, key=keyf), key=keyf):
        items = list(grouped)
        layers = sorted(p["layer"] for p in items)
        groups.append(
            dict(zip(("model", "benchmark", "rope", "modality"), key))
            | {"layers": _ranges(layers), "layer_list": layers, "dim": items[0]["dim"], "dtype": items[0]["dtype"],
               "rows": sum(p["rows"] for p in items)}
        )
    runs = ks.runs()
    samples = ks.samples(["run_id", "status"])
    done: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for run_id, status in zip(samples["run_id"].to_pylist(), samples["status"].to_pylist()):
        counts = done if status == "done" else skipped
        counts[run_id] = counts.get(run_id, 0) + 1
    rows_by_run: dict[str, int] = {}
    for f in ks.inventory.all_files():
        rows_by_run[f.run_id] = rows_by_run.get(f.run_id, 0) + f.rows
    locks = held_locks(ks.uri)
    writing = {(h["model"], h["benchmark"], h["part"]) for h in locks}
    extras = {
        tree: [dict(zip(("model", "benchmark", "layers"), key)) | {"rows": rows, "files": files}
               for key, (rows, files) in sorted(_per_model(getattr(ks.inventory, tree)).items())]
        for tree in ("queries", "attention")
    }
    return {
        "store": ks.uri,
        "schema_version": ks.meta.get("schema_version"),
        "rows": sum(p["rows"] for p in parts),
        "files": sum(p["files"] for p in parts),
        "bytes": sum(p["bytes"] for p in parts),
        "models": ks.models(),
        "benchmarks": ks.benchmarks(),
        "partitions": parts,
        "groups": groups,
        "queries": extras["queries"],  # query vectors (`ingest --queries`), per model, benchmark and layers
        "attention": extras["attention"],  # attention allocation rows (`ingest --attention`)
        "samples": samples.num_rows,
        # Counts are what readers can see (committed), not what a manifest claims: a killed run's manifest
        # may count samples whose keys never reached a commit marker.
        "runs": [
            {k: r.get(k) for k in ("run_id", "status", "model_id", "model", "benchmark", "started", "ended")}
            | {"status": _status(r, writing),
               "samples_done": done.get(str(r.get("run_id")), 0),
               "samples_skipped": skipped.get(str(r.get("run_id")), 0),
               "rows": rows_by_run.get(str(r.get("run_id")), 0)}
            for r in runs
        ],
        "uncommitted_files": ks.inventory.uncommitted,
        "writing": locks,
        "problems": list(ks.problems),
    }


def _status(run: dict, writing: set[tuple]) -> str | None:
    """A manifest says "running" from its start until its end; with no live lock the process is gone."""
    status = run.get("status")
    if status != "running":
        return status
    i, _, n = str(run.get("shard") or "0/1").partition("/")
    if (run.get("model"), run.get("benchmark"), f"shard-{i}of{n}") in writing:
        return status
    return "stopped (killed or crashed; rerun its command to resume)"
def _per_model(files_by_partition: dict) -> dict[tuple, tuple[int, int]]:
    """{(model, benchmark, layer ranges): (rows, files)} of one tree's committed files."""
    layers: dict[tuple, set] = {}
    totals: dict[tuple, list[int]] = {}
    for partition, files in files_by_partition.items():
        key = partition[:2]
        layers.setdefault(key, set()).add(partition[2])
        t = totals.setdefault(key, [0, 0])
        t[0] += sum(f.rows for f in files)
        t[1] += len(files)
    return {key + (_ranges(sorted(layers[key])),): (totals[key][0], totals[key][1]) for key in totals}


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7" (``values`` sorted)."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)
