"""Preparation, in its own thread: benchmark items -> prompts -> processor output -> labelled batches.

While the model runs one batch, the preparer decodes the images of the next, builds its prompts, runs the
processor and labels every token, so the model never waits for the CPU work. A sample whose image cannot
be decoded, or that the processor rejects, is skipped with its reason; the rest of the batch goes on.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from store.errors import first_line

from .plan import RunPlan


@dataclass
class QueryTokens:
    """The query tokens of one batch (``--queries`` / ``--attention``), one entry per token, in the order
    capture returns their vectors."""

    batch_index: np.ndarray  # [n_q] row in the batch
    token_index: np.ndarray  # [n_q] padded column
    sample_of: np.ndarray  # [n_q] index into items
    position: np.ndarray
    token_id: np.ndarray
    modality: np.ndarray
    segment: np.ndarray
    image_index: np.ndarray
    is_last: np.ndarray  # bool [n_q]: the sample's last prompt token


@dataclass
class PreparedBatch:
    """One batch ready for the model, with every label the writer needs (one entry per kept token)."""

    items: list[Any]
    inputs: dict[str, Any] | None
    batch_index: np.ndarray  # [n] row in the batch of each kept token
    token_index: np.ndarray  # [n] padded column of each kept token
    sample_of: np.ndarray  # [n] index into items
    position: np.ndarray  # [n] unpadded position
    token_id: np.ndarray
    modality: np.ndarray
    segment: np.ndarray
    image_index: np.ndarray
    rows: list[dict[str, Any]]  # samples rows (one per item)
    skipped_rows: list[dict[str, Any]]  # samples rows of items skipped while preparing
    queries: QueryTokens | None = None  # when the plan captures queries or attention
    groups: Any = None  # ingest.attention.BatchGroups, when the plan captures attention


class PendingItems:
    """The items of this shard not yet committed, in benchmark order.

    ``remaining`` (how many there are) is known once iteration starts; ``resumed`` counts the items
    skipped because an earlier attempt committed them."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.remaining: int | None = None
        self.resumed = 0

    def __iter__(self) -> Iterator[Any]:
        plan, source, limit = self.plan, self.plan.source, self.plan.limit
        shard_i, shard_n = plan.shard
        mine = None
        if shard_n > 1:
            ids = []
            for item in source:
                ids.append(item.sample_id)
                if limit is not None and len(ids) >= limit:
                    break
            perm = np.random.default_rng(plan.seed).permutation(len(ids))
            mine = {ids[j] for j in perm[shard_i::shard_n]}
        if mine is not None:
            self.remaining = len(mine - plan.finished)
        else:
            self.remaining = max(0, min(len(source), limit or len(source)) - len(plan.finished))
        seen = 0
        for item in source:
            if limit is not None and seen >= limit:
                break
            seen += 1
            if mine is not None and item.sample_id not in mine:
                continue
            if item.sample_id in plan.finished:
                self.resumed += 1
                continue
            yield item


class Preparer:
    """Turns lists of items into PreparedBatch; ``skipped`` lists {sample_id, reason} of items it dropped."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.skipped: list[dict[str, str]] = []

    def run(self, pending: PendingItems, out: queue.Queue, stop: threading.Event) -> None:
        """Thread body: batches of pending items -> PreparedBatch on ``out``, then None; an exception is
        passed on through ``out`` for the main thread to raise."""
        try:
            batch = []
            for item in pending:
                if stop.is_set():
                    return
                batch.append(item)
                if len(batch) == self.plan.batch_size:
                    put_unless_stopped(out, self.prepare(batch), stop)
                    batch = []
            if batch:
                put_unless_stopped(out, self.prepare(batch), stop)
            put_unless_stopped(out, None, stop)
        except BaseException as exc:  # handed to the main thread, which raises it
            put_unless_stopped(out, exc, stop)

    def prepare(self, items: list[Any]) -> PreparedBatch:
        from ingest.benchmarks import BenchmarkError

        from .harness import prepare

        ready, skipped_rows = [], []
        for item in items:
            try:
                prompt, images = prepare(item, self.plan.lm, self.plan.harness_config)
            except BenchmarkError as exc:
                skipped_rows.append(self._skip_row(item, str(exc)))
                continue
            ready.append((item, prompt, images))
        return self._process(ready, skipped_rows)

    def _process(self, ready: list[tuple[Any, Any, list[Any]]], skipped_rows: list[dict[str, Any]]) -> PreparedBatch:
        from .attention import BatchGroups, token_groups
        from .labels import TokenKinds, label_sample, token_texts
        from .selection import select_positions, select_queries

        try:
            inputs = self._processor(ready)
        except Exception as exc:  # one bad image must not stop the batch: find it and skip it
            if len(ready) <= 1:
                for item, _, _ in ready:
                    skipped_rows.append(self._skip_row(item, f"processor failed: {first_line(exc)}"))
                ready, inputs = [], None
            else:  # find the culprit by processing items one at a time
                parts = [self._process([r], []) for r in ready]
                ready = [r for r in ready if any(r[0] is it for p in parts for it in p.items)]
                for p in parts:
                    skipped_rows.extend(p.skipped_rows)
                inputs = self._processor(ready) if ready else None
        lm = self.plan.lm
        kinds = TokenKinds(image=lm.image_token_id, video=lm.video_token_id, special=lm.special_ids)
        cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("batch_index", "token_index", "sample_of", "position", "token_id", "modality", "segment",
                            "image_index")
        }
        query_cols: dict[str, list[np.ndarray]] = {k: [] for k in QueryTokens.__dataclass_fields__}
        group_rows = []
        policy = self.plan.query_policy
        rows = []
        if inputs is not None:
            replacements = inputs.pop("text_replacement_offsets")
            ids = inputs["input_ids"].numpy()
            mask = inputs["attention_mask"].numpy().astype(bool)
            for b, (item, prompt, _) in enumerate(ready):
                valid = np.flatnonzero(mask[b])  # padding is never labelled, never stored
                toks = label_sample(ids[b, valid], prompt.text, prompt.spans, prompt.image_spans,
                                    replacements[b], lm.tokenizer, kinds)
                pos = select_positions(toks, self.plan.policy, seed=self.plan.seed, sample_id=item.sample_id,
                                       store_image=item.circular_of is None)
                _append_tokens(cols, b, valid, pos, toks)
                if policy is not None:
                    qpos = select_queries(toks, policy, pos, self.plan.policy.segments)
                    _append_queries(query_cols, b, valid, qpos, toks)
                if self.plan.attention:
                    group_rows.append((valid, *token_groups(toks)))
                rows.append(self._done_row(item, prompt, toks) | {
                    "token_text": json.dumps(token_texts(lm.tokenizer, toks.token_id[pos]), ensure_ascii=False)})
            if not lm.mrope:
                # Left padding shifts every position unless position_ids count real tokens only
                # (docs/MODELS.md, "Padding"); M-RoPE models compute their own 3-D positions.
                m = inputs["attention_mask"].long()
                inputs["position_ids"] = (m.cumsum(-1) - 1).clamp(min=0)
        queries = groups = None
        if policy is not None:
            queries = QueryTokens(**_concatenated(query_cols))
        if self.plan.attention and inputs is not None:
            groups = BatchGroups.build(group_rows, inputs["input_ids"].shape[1])
        return PreparedBatch(items=[r[0] for r in ready], inputs=inputs, rows=rows, skipped_rows=skipped_rows,
                             queries=queries, groups=groups, **_concatenated(cols))

    def _processor(self, ready: list[tuple[Any, Any, list[Any]]]) -> Any:
        texts = [prompt.text for _, prompt, _ in ready]
        images = [img for _, _, imgs in ready for img in imgs]
        return self.plan.lm.processor(text=texts, images=images or None, padding=True, return_tensors="pt",
                                      return_text_replacement_offsets=True,
                                      **self.plan.harness_config.processor_kwargs())

    def _base_row(self, item: Any) -> dict[str, Any]:
        return {"model": self.plan.lm.label, "benchmark": self.plan.source.name, "sample_id": item.sample_id,
                "question": item.question, "answer": item.answer, "category": item.category,
                "image_hash": item.image_hash, "circular_of": item.circular_of}

    def _skip_row(self, item: Any, reason: str) -> dict[str, Any]:
        self.skipped.append({"sample_id": item.sample_id, "reason": reason})
        return self._base_row(item) | {"status": f"skipped: {reason}", "n_tokens": 0, "n_image_tokens": 0}

    def _done_row(self, item: Any, prompt: Any, toks: Any) -> dict[str, Any]:
        return self._base_row(item) | {
            "template_id": prompt.template_id, "n_tokens": len(toks),
            "n_image_tokens": int((toks.modality == "image").sum()),
            "segment_tokens": json.dumps(toks.segment_counts(), ensure_ascii=False), "status": "done"}


def _append_tokens(cols: dict[str, list[np.ndarray]], b: int, valid: np.ndarray, pos: np.ndarray,
                   toks: Any) -> None:
    """The labels of sample ``b``'s chosen tokens ``pos`` (keys and queries carry the same ones)."""
    n = len(pos)
    cols["batch_index"].append(np.full(n, b))
    cols["token_index"].append(valid[pos])
    cols["sample_of"].append(np.full(n, b))
    cols["position"].append(pos)
    cols["token_id"].append(toks.token_id[pos])
    cols["modality"].append(toks.modality[pos])
    cols["segment"].append(toks.segment[pos])
    cols["image_index"].append(toks.image_index[pos])


def _append_queries(cols: dict[str, list[np.ndarray]], b: int, valid: np.ndarray, qpos: np.ndarray,
                    toks: Any) -> None:
    _append_tokens(cols, b, valid, qpos, toks)
    cols["is_last"].append(qpos == len(toks) - 1)


def _concatenated(cols: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-sample pieces joined per column; an empty batch gets empty columns of the right kind."""
    empty = {"modality": object, "segment": object, "is_last": bool}
    return {k: (np.concatenate(v) if v else np.zeros(0, empty.get(k, np.int64))) for k, v in cols.items()}


def put_unless_stopped(q: queue.Queue, value: Any, stop: threading.Event) -> None:
    """Put ``value`` on a bounded queue, giving up once ``stop`` is set (the consumer has left)."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.2)
            return
        except queue.Full:
            continue
