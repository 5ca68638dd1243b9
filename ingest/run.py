"""The ingest loop: benchmark items -> prompts -> batches -> captured keys -> the store.

Three threads keep the model busy: a preparer (prepare.py) decodes images, builds prompts, runs the
processor and labels tokens for the next batch while the model runs this one; the main thread (here)
runs the forward with hooks; a writer thread (writer_thread.py) owns the KeyWriter, so the model never
waits on disk. What the run does is fixed before it starts (plan.py: arguments, run id, resume set); the
manifest (manifest.py) records it, and the progress bar (progress.py) shows it.

Resuming: re-running the same command finds the run's committed samples and skips them, and the writer
deletes the half-written files of a killed attempt (store/writer.py). Ctrl-C stops cleanly and keeps what
was committed. A run that finishes merges its flush files into one per partition (store/compact.py).
"""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from store.errors import KeygapError, first_line
from store.schema import MODALITIES

from .plan import IngestError, RunPlan, committed_samples, plan_run

if TYPE_CHECKING:
    from store.lock import StoreLock
    from store.writer import AttentionBatch, KeyBatch, KeyWriter

    from .capture import CapturedKeys
    from .models import LoadedModel
    from .prepare import PreparedBatch

__all__ = ["IngestError", "RunSummary", "ingest", "to_device"]


@dataclass
class RunSummary:
    """What one `ingest` call did (this attempt) and the run's totals in the store."""

    run_id: str
    store: str
    model: str
    benchmark: str
    status: str  # done / interrupted
    layers: list[int]
    samples_done: int  # committed by this attempt
    samples_skipped: int  # skipped by this attempt (reasons in `skipped`)
    samples_resumed: int  # already in the store, not redone
    keys_written: int  # rows committed by this attempt
    seconds: float
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"sample_id", "reason"} this run skipped
    reader_skipped: list[Any] = field(default_factory=list)  # (row or id, reason) the benchmark reader dropped

    def line(self) -> str:
        extra = f", {self.samples_resumed} already stored" if self.samples_resumed else ""
        return (f"{self.status}: {self.samples_done} samples ({self.keys_written:,} keys) into {self.store} "
                f"as run {self.run_id}; {self.samples_skipped} skipped{extra}; {self.seconds:.1f} s")


def ingest(model: str | LoadedModel, benchmark: str, store: str | Path, **options: Any) -> RunSummary:
    """Capture keys of MODEL on BENCHMARK into STORE; re-running the same call resumes it.

    ``model`` is a spec for ingest.models.load_model or an already loaded LoadedModel (then ``device``
    and ``dtype`` are ignored). ``options`` are plan_run's: layers, keys, tokens, segments, device,
    dtype, key_dtype, batch_size, limit, shard, seed, harness, split, queries (last / text / all-text:
    also store those tokens' query vectors), attention (store the attention allocation), progress and
    checkpoint_seconds
    (committed samples are made durable at least this often, so a killed run loses at most that much
    work; the writer also flushes whenever 256 MiB are buffered).
    """
    return run_plan(plan_run(model, benchmark, store, **options))


def run_plan(plan: RunPlan) -> RunSummary:
    """Run a plan to the end, or until Ctrl-C (status "interrupted"), holding the (model, benchmark) lock
    throughout; the manifest says how it went."""
    from store.writer import KeyWriter, write_run

    from .manifest import start_manifest

    started = time.time()
    lock = take_lock(plan)
    try:
        # under the lock: another writer of this model and benchmark may have committed samples (or
        # written a manifest with other settings) since the plan was made
        plan = dataclasses.replace(plan, finished=committed_samples(plan.store, plan.settings, plan.settings_hash))
        writer = KeyWriter(plan.store, plan.run_id, lock=lock)
        manifest = start_manifest(plan)
        write_run(plan.store, manifest)
        return _run_locked(plan, writer, manifest, started)
    finally:
        lock.release()


def take_lock(plan: RunPlan) -> StoreLock:
    """This run's lock: one per shard; shards of one run (same settings, shard count and --limit) share the
    model and benchmark, anything else writing them is refused (or waited for, with --wait)."""
    from store.lock import acquire
    from store.writer import init_store

    init_store(plan.store)
    i, n = plan.shard

    def waiting(holder: str) -> None:
        print(f"keygap ingest: waiting for {holder} to finish", file=sys.stderr)

    lock = acquire(plan.store, plan.lm.label, plan.source.name, part=f"shard-{i}of{n}",
                   tag=f"{plan.settings_hash}:{n}:{plan.limit}", wait=None if plan.wait else 0, on_wait=waiting)
    for note in lock.notes:
        print(f"keygap ingest: {note}", file=sys.stderr)
    return lock


def _run_locked(plan: RunPlan, writer: KeyWriter, manifest: dict[str, Any], started: float) -> RunSummary:
    import torch

    from store.writer import write_run

    from .capture import KeyCapture
    from .manifest import finish_manifest
    from .prepare import PendingItems, Preparer
    from .progress import ProgressBar
    from .writer_thread import WriterThread, key_rows, write_failure

    sink = WriterThread(writer, plan.checkpoint_seconds)
    sink.start()
    prepared: queue.Queue[PreparedBatch | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()
    pending = PendingItems(plan)
    preparer = Preparer(plan)
    preparing = threading.Thread(target=preparer.run, args=(pending, prepared, stop), daemon=True,
                                 name="keygap-prepare")
    status = "done"
    bar = ProgressBar(plan.progress)
    try:
        with KeyCapture(plan.lm, list(plan.layers), ropes=plan.ropes, key_dtype=plan.key_dtype,
                        queries=plan.queries is not None, attention=plan.attention) as cap:
            preparing.start()
            bar.start()
            while True:
                prep = _next_prepared(prepared, preparing)
                if prep is None:
                    break
                if isinstance(prep, BaseException):
                    raise prep
                batches: list[KeyBatch | AttentionBatch] = []
                if prep.items:
                    if bar.total is None:
                        bar.set_total(pending.remaining)
                    inputs = {k: to_device(v, plan.lm) for k, v in (prep.inputs or {}).items()}
                    try:
                        q = prep.queries
                        captured = cap.run(
                            inputs, prep.batch_index, prep.token_index,
                            query_index=None if q is None else (q.batch_index, q.token_index),
                            groups=None if prep.groups is None else prep.groups.index)
                    except torch.OutOfMemoryError:
                        raise IngestError(
                            f"out of memory at batch size {plan.batch_size} on {plan.device}: rerun "
                            f"the same command with --batch-size {max(1, plan.batch_size // 2)} "
                            "(finished samples are kept)") from None
                    batches = [
                        *key_batches(plan, prep, captured), *query_batches(plan, prep, captured),
                        *attention_batches(plan, prep, captured)]
                sink.put(batches, prep.rows + prep.skipped_rows)
                bar.advance(len(prep.items) + len(prep.skipped_rows), key_rows(batches))
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException:
        status = "failed"
        raise
    finally:
        stop.set()
        bar.stop()
        sink.finish()
        failed = status == "failed" or sink.error is not None
        if status == "done" and not failed:
            compact_run_files(plan, writer)
        finish_manifest(manifest, plan, status="failed" if failed else status, skipped=preparer.skipped)
        try:
            write_run(plan.store, manifest)
            if writer.rows_written:
                # cached analysis answers that read these partitions are stale now: never served (their
                # key includes the files read) but they would linger in the `results` table
                from store.results import ResultsCache

                ResultsCache(plan.store).prune_stale()
        except (OSError, KeygapError) as exc:
            if not failed:  # else the first error is the one to report; the manifest still says "running"
                raise write_failure(exc, plan.store) from exc
        if sink.error is not None and status != "failed":
            raise write_failure(sink.error, plan.store) from sink.error
    return RunSummary(run_id=plan.run_id, store=str(plan.store), model=plan.lm.label,
                      benchmark=plan.source.name, status=status, layers=list(plan.layers),
                      samples_done=sink.samples_done, samples_skipped=sink.samples_skipped,
                      samples_resumed=pending.resumed, keys_written=writer.rows_written, seconds=time.time() - started,
                      skipped=list(preparer.skipped), reader_skipped=list(plan.source.skipped))


def compact_run_files(plan: RunPlan, writer: KeyWriter) -> None:
    """A finished run leaves one file per partition, however many flushes it made (store/compact.py).

    Every key is committed before this starts, so a failure here loses nothing: it is reported and
    `keygap compact` (or the next run of the same command) finishes the job."""
    from store.compact import compact_run
    from store.errors import KeygapError
    from store.location import is_remote

    if is_remote(plan.store):  # compaction renames files: an ingest into s3:// keeps one file per flush
        return
    said: list[bool] = []

    def progress(done: int, total: int, message: str) -> None:
        if not said and plan.progress:
            said.append(True)
            print(f"keygap ingest: compacting the run's files ({total / 2**20:,.0f} MiB)", file=sys.stderr)

    try:
        compact_run(plan.store, plan.run_id, progress=progress, lock=writer.lock)
    except (OSError, KeygapError) as exc:
        print(f"keygap ingest: warning: compacting the run's files failed ({first_line(exc)}); every key is "
              "committed: run `keygap compact` later", file=sys.stderr)


def key_batches(plan: RunPlan, prep: PreparedBatch, captured: CapturedKeys) -> list[KeyBatch]:
    """One KeyBatch per (modality, layer, RoPE stage) present in the batch."""
    from store.writer import KeyBatch

    sample_ids = np.array([it.sample_id for it in prep.items], dtype=object)[prep.sample_of]
    out = []
    for modality in MODALITIES:
        sel = np.flatnonzero(prep.modality == modality)
        if not len(sel):
            continue
        for (layer, rope), keys in captured.keys.items():
            out.append(KeyBatch(
                model=plan.lm.label, benchmark=plan.source.name, layer=layer, rope=rope,
                modality=modality, sample_id=sample_ids[sel], position=prep.position[sel],
                token_id=prep.token_id[sel], segment=prep.segment[sel], keys=keys[sel],
                dtype=captured.dtype, image_index=prep.image_index[sel],
                rope_thw=captured.rope_positions[sel] if plan.lm.mrope else None))
    return out


def query_batches(plan: RunPlan, prep: PreparedBatch, captured: CapturedKeys) -> list[KeyBatch]:
    """One query KeyBatch per (modality, layer, RoPE stage) of the query tokens (``--queries``)."""
    from store.writer import KeyBatch

    q = prep.queries
    if not captured.queries or q is None:
        return []
    sample_ids = np.array([it.sample_id for it in prep.items], dtype=object)[q.sample_of]
    out = []
    for modality in ("image", "text", "special", "video"):
        sel = np.flatnonzero(q.modality == modality)
        if not len(sel):
            continue
        query_positions = captured.query_positions
        if query_positions is None:
            raise RuntimeError("queries were captured without their positions")
        for (layer, rope), vectors in captured.queries.items():
            out.append(KeyBatch(
                model=plan.lm.label, benchmark=plan.source.name, layer=layer, rope=rope, modality=modality,
                sample_id=sample_ids[sel], position=q.position[sel], token_id=q.token_id[sel],
                segment=q.segment[sel], keys=vectors[sel], dtype=captured.dtype, image_index=q.image_index[sel],
                rope_thw=query_positions[sel] if plan.lm.mrope else None, kind="query"))
    return out


def attention_batches(plan: RunPlan, prep: PreparedBatch, captured: CapturedKeys) -> list[AttentionBatch]:
    """One AttentionBatch per captured layer (``--attention``): see ingest/attention.py."""
    from store.writer import AttentionBatch

    from .attention import allocation_rows

    q = prep.queries
    if not captured.attention or q is None:
        return []
    sample_ids = [it.sample_id for it in prep.items]
    out = []
    for layer, masses in captured.attention.items():
        rows = allocation_rows(masses, prep.groups, q.sample_of, q.is_last, q.modality == "text", sample_ids)
        out.append(AttentionBatch(model=plan.lm.label, benchmark=plan.source.name, layer=layer, **rows))
    return out


def to_device(value: Any, lm: LoadedModel) -> Any:
    """A processor output on the model's device; floating tensors (pixels) in the model's dtype."""
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point():
        return value.to(lm.device, dtype=lm.dtype, non_blocking=True)
    return value.to(lm.device, non_blocking=True)


def _next_prepared(q: queue.Queue[Any], producer: threading.Thread) -> Any:
    """The next item the preparer produced, or None once it has stopped and its queue is empty."""
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not producer.is_alive() and q.empty():
                return None
