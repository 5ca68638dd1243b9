"""Attention allocation: which key group every token belongs to, and the stored rows made from the masses
that capture.py computes (FastV's split of attention into system prompt / image / instruction, per head).

Key groups partition every position of a sample, so a query's masses over its visible groups sum to 1:
- ``sink``: the first token (position 0), where attention sinks form, whatever its modality;
- ``image``, ``video``, ``special``: the tokens of that modality;
- every text segment by its own name (``system``, ``question``, ``options``, ...).
Two query kinds per sample, layer and head: ``last`` (the last prompt token, whose query produces the
answer) and ``text`` (the mean over the other captured text queries). Beside each mass the row keeps the
group's share of the keys that query can see: FastV's reference point (image tokens are most of the
sequence but receive a small share of attention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import SampleTokens

SINK = "sink"
#: group names that are not text segments; a text segment that happens to carry one is prefixed "text-"
RESERVED = (SINK, "image", "video", "special")
QUERY_KINDS = ("last", "text")


def token_groups(tokens: SampleTokens) -> tuple[np.ndarray, np.ndarray]:
    """(group name, group modality) of every token of one sample (object arrays [T])."""
    modality = tokens.modality.astype(object)
    segment = tokens.segment.astype(str).astype(object)
    group = np.where(modality == "text", segment, modality).astype(object)
    clash = (modality == "text") & np.isin(segment.astype(str), RESERVED)
    group[clash] = np.array(["text-" + s for s in segment[clash]], dtype=object)
    group_modality = modality.copy()
    if len(group):
        group[0] = SINK
    return group, group_modality


@dataclass
class BatchGroups:
    """Key groups of one padded batch: ``index`` int64 [batch, columns] (-1 = padding) into ``names``."""

    index: np.ndarray
    names: list[str]
    modality: list[str]  # modality of each group's tokens (for the sink: the first token's)

    @classmethod
    def build(cls, per_row: list[tuple[np.ndarray, np.ndarray, np.ndarray]], columns: int) -> BatchGroups:
        """``per_row`` = (unpadded columns, group names, group modalities) of each batch row."""
        names: dict[str, int] = {}
        modality: list[str] = []
        index = np.full((len(per_row), columns), -1, np.int64)
        for b, (cols, group, group_modality) in enumerate(per_row):
            for name, mod in zip(group.tolist(), group_modality.tolist()):
                if name not in names:
                    names[name] = len(names)
                    modality.append(str(mod))
            index[b, cols] = [names[g] for g in group.tolist()]
        return cls(index, list(names), modality)


def allocation_rows(captured: np.ndarray, groups: BatchGroups, query_sample: np.ndarray, query_is_last: np.ndarray,
                    query_is_text: np.ndarray, sample_ids: list[str]) -> dict[str, np.ndarray]:
    """Rows of one layer from capture's float32 [n_q, heads + 1, groups] (masses, then visible key counts).

    For each sample: the ``last`` row from its last prompt token, the ``text`` row as the mean over its
    other text queries (absent when it has none); groups the query cannot see (none of its keys) are left
    out. The columns are store.writer.AttentionBatch's, less the (model, benchmark, layer) the caller adds."""
    from store.writer import AttentionBatch

    heads = captured.shape[1] - 1
    names = np.array(groups.names, dtype=object)
    modality = np.array(groups.modality, dtype=object)
    per_batch = ("model", "benchmark", "layer")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in AttentionBatch.__dataclass_fields__ if k not in per_batch}
    for s, sid in enumerate(sample_ids):
        for kind in QUERY_KINDS:
            pick = (query_sample == s) & (query_is_last if kind == "last" else (query_is_text & ~query_is_last))
            idx = np.flatnonzero(pick)
            if not len(idx):
                continue
            mass = captured[idx, :heads].astype(np.float64).mean(axis=0)  # [H, G]
            counts = captured[idx, heads].astype(np.float64)  # [q, G]
            share = (counts / counts.sum(axis=1, keepdims=True)).mean(axis=0)
            keys = counts.mean(axis=0)
            present = np.flatnonzero(keys > 0)
            g = len(present)
            cols["sample_id"].append(np.full(heads * g, sid, dtype=object))
            cols["head"].append(np.repeat(np.arange(heads), g))
            cols["query"].append(np.full(heads * g, kind, dtype=object))
            cols["n_queries"].append(np.full(heads * g, len(idx)))
            cols["group"].append(np.tile(names[present], heads))
            cols["modality"].append(np.tile(modality[present], heads))
            cols["keys"].append(np.tile(keys[present], heads))
            cols["token_share"].append(np.tile(share[present], heads))
            cols["mass"].append(mass[:, present].reshape(-1))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
