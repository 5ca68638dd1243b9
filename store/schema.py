"""The on-disk layout of a keygap store, in one place so readers and writers cannot drift apart.

See docs/ARCHITECTURE.md, "The store on disk", for the full description, and docs/STORAGE.md for why
it is laid out this way. Importing this module costs no pyarrow: the two Arrow schemas are built on first
use, so the command line and the TUI's first screen can use the names and constants here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StoreError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

    KEYS_SCHEMA: pa.Schema  # columns of a keys file (partition columns are not stored in the file)
    QUERIES_SCHEMA: pa.Schema  # query files: the columns of a keys file, the vector in ``query``
    ATTENTION_SCHEMA: pa.Schema  # attention allocation: one row per (sample, query head, query kind, key group)
    SAMPLES_SCHEMA: pa.Schema  # columns of a samples file (the commit marker of a flush)

SCHEMA_VERSION = 1
MANIFEST = "keygap.json"
KEYS_DIR = "keys"
QUERIES_DIR = "queries"  # query vectors (`keygap ingest --queries`), partitioned like keys
ATTENTION_DIR = "attention"  # attention allocation (`keygap ingest --attention`), per model/benchmark/layer
SAMPLES_DIR = "samples"
RUNS_DIR = "runs"
RESULTS_DIR = "results"

# Hive partition columns, outermost first.
PARTITIONS = ("model", "benchmark", "layer", "rope", "modality")
ATTENTION_PARTITIONS = ("model", "benchmark", "layer")
ROPE_KINDS = ("post", "pre")
MODALITIES = ("image", "text", "special", "video")
KEY_DTYPES = {"float16": 2, "bfloat16": 2, "float32": 4}
#: every time keygap stores (manifests, cached answers, reports): UTC, ISO 8601, whole seconds
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: the vector column of each tree of vector files
VECTOR_COLUMN = {KEYS_DIR: "key", QUERIES_DIR: "query"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def model_label(model_id: str) -> str:
    """A partition-safe name for a model id ("llava-hf/llava-1.5-7b-hf" -> "llava-hf--llava-1.5-7b-hf").

    Paths are reduced to their last component, since a local checkout's folder name is what people know it by.
    """
    text = str(model_id).rstrip("/")
    if text.startswith(("/", ".", "~")):
        text = Path(text).expanduser().name
    text = text.replace("/", "--").replace(":", "-")
    return _UNSAFE.sub("_", text).strip("_") or "model"


def partition_dir(root: Path, model: str, benchmark: str, layer: int, rope: str, modality: str,
                  tree: str = KEYS_DIR) -> Path:
    """The folder of one partition of the keys tree (or, with ``tree=QUERIES_DIR``, of the queries tree)."""
    return (
        Path(root)
        / tree
        / f"model={model}"
        / f"benchmark={benchmark}"
        / f"layer={int(layer)}"
        / f"rope={rope}"
        / f"modality={modality}"
    )


def attention_dir(root: Path, model: str, benchmark: str, layer: int) -> Path:
    return Path(root) / ATTENTION_DIR / f"model={model}" / f"benchmark={benchmark}" / f"layer={int(layer)}"


def utc_now() -> str:
    """The current time in TIME_FORMAT, e.g. 2026-11-30T08:52:07Z."""
    return time.strftime(TIME_FORMAT, time.gmtime())


def load_manifest(read: Callable[[], bytes], where: str) -> dict[str, Any]:
    """A store's keygap.json, read by ``read()``, checked: one line saying what is wrong and what to do when
    it cannot be read, is not a JSON object, or has another schema version."""
    try:
        meta = json.loads(read())
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{where} is unreadable ({first_line(exc)}): the store is damaged; restore that file"
        ) from None
    if not isinstance(meta, dict):
        raise StoreError(f"{where} is not a JSON object: the store is damaged; restore that file")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{where} says schema version {version}, this keygap reads and writes version {SCHEMA_VERSION}: "
            "use the keygap version that wrote the store, or a new --store"
        )
    return meta


def resolve_layers(spec: str | int | list, num_layers: int) -> list[int]:
    """Turn a layer spec into sorted decoder-layer indices.

    "early,middle,late" are our defaults for the paper's unnamed layers: 1, L // 2 and L - 1 (layer 0 is
    skipped because its text keys depend on the token id alone). "all" is every layer; integers may be
    negative (counted from the end).
    """
    if num_layers < 1:
        raise ValueError(f"a model needs at least one decoder layer, got {num_layers}")
    named = {"early": min(1, num_layers - 1), "middle": num_layers // 2, "late": num_layers - 1}
    if isinstance(spec, int):
        parts = [str(spec)]
    elif isinstance(spec, (list, tuple)):
        parts = [str(p) for p in spec]
    else:
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise ValueError("empty layer list: give e.g. early,middle,late | all | 0,5,31")
    out: set[int] = set()
    for part in parts:
        if part == "all":
            out.update(range(num_layers))
        elif part in named:
            out.add(named[part])
        else:
            try:
                idx = int(part)
            except ValueError:
                raise ValueError(
                    f"unknown layer {part!r}: use early, middle, late, all or integers (e.g. 0,5,31)"
                ) from None
            if idx < 0:
                idx += num_layers
            if not 0 <= idx < num_layers:
                raise ValueError(f"layer {part} is out of range: this model has layers 0..{num_layers - 1}")
            out.add(idx)
    return sorted(out)


def _arrow_schemas() -> dict[str, pa.Schema]:
    import pyarrow as pa

    keys = pa.schema(
        [
            ("sample_id", pa.dictionary(pa.int32(), pa.string())),
            ("position", pa.int32()),
            ("token_id", pa.int32()),
            ("segment", pa.dictionary(pa.int32(), pa.string())),
            ("image_index", pa.int16()),
            ("rope_t", pa.int32()),
            ("rope_h", pa.int32()),
            ("rope_w", pa.int32()),
            ("run_id", pa.dictionary(pa.int32(), pa.string())),
            ("rand", pa.float64()),
            ("dtype", pa.dictionary(pa.int32(), pa.string())),
            ("key", pa.binary()),
        ]
    )

    samples = pa.schema(
        [
            ("model", pa.string()),
            ("benchmark", pa.string()),
            ("sample_id", pa.string()),
            ("run_id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("category", pa.string()),
            ("image_hash", pa.string()),
            ("circular_of", pa.string()),
            ("template_id", pa.string()),
            ("n_tokens", pa.int32()),
            ("n_image_tokens", pa.int32()),
            ("segment_tokens", pa.string()),  # JSON object: segment -> token count
            ("token_text", pa.string()),  # JSON object: token id -> its text (the run's tokenizer), for the kept tokens
            ("status", pa.string()),  # "done" or "skipped: <reason>"
        ]
    )
    queries = pa.schema([f if f.name != "key" else pa.field("query", pa.binary()) for f in keys])
    attention = pa.schema(
        [
            ("sample_id", pa.dictionary(pa.int32(), pa.string())),
            ("head", pa.int16()),  # query head (kv head = head // (n_heads / n_kv_heads), see the run manifest)
            ("query", pa.dictionary(pa.int32(), pa.string())),  # "last" (last prompt token) or "text" (mean)
            ("n_queries", pa.int32()),  # query tokens averaged (1 for "last")
            ("group", pa.dictionary(pa.int32(), pa.string())),  # sink / image / special / video / a text segment
            ("modality", pa.dictionary(pa.int32(), pa.string())),  # of the group's tokens (sink: of token 0)
            ("keys", pa.float64()),  # visible keys in the group (mean over the queries)
            ("token_share", pa.float64()),  # keys / visible keys (mean over the queries): FastV's reference
            ("mass", pa.float64()),  # attention probability summed over the group (mean over the queries)
            ("run_id", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    return {"KEYS_SCHEMA": keys, "SAMPLES_SCHEMA": samples, "QUERIES_SCHEMA": queries, "ATTENTION_SCHEMA": attention}


def __getattr__(name: str) -> Any:
    """KEYS_SCHEMA, SAMPLES_SCHEMA, QUERIES_SCHEMA and ATTENTION_SCHEMA, built (once) when first asked for."""
    if name in ("KEYS_SCHEMA", "SAMPLES_SCHEMA", "QUERIES_SCHEMA", "ATTENTION_SCHEMA"):
        schemas = _arrow_schemas()
        globals().update(schemas)
        return schemas[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
