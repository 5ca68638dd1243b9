"""The ingest loop: benchmark items -> prompts -> batches -> captured keys -> the store.

Three threads keep the model busy: a preparer decodes images, builds prompts, runs the processor
and labels tokens for the next batch while the model runs this one; the main thread runs the
forward with hooks; a writer thread owns the KeyWriter, so the model never waits on disk.

Resuming: the run id is a hash of everything that decides which rows are stored (model, benchmark,
layers, keys, tokens, segments, seed, key dtype, harness), so re-running the same command finds
its own committed samples and skips them, and the writer deletes the half-written files of the
killed attempt. --limit is not part of it: a trial with --limit 5 is extended by the full run
(concurrent shards must share one --limit, since it decides the shard split). A store refuses a
second ingest of the same model and benchmark with other settings, since mixing them would
duplicate rows.

CircularEval copies (MMBench rows >= 1,000,000, ``item.circular_of`` set) are rotated options
under the same image: under causal attention their image keys equal the original item's, so only
their text and special keys are stored (their forward still sees the image).
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store.errors import KeygapError
from store.schema import resolve_layers

CIRCULAR_POLICY = "text-only"  # see the module docstring
_MAX_SKIPS_IN_MANIFEST = 1000


class IngestError(KeygapError, ValueError):
    """Bad ingest arguments or a run that cannot go on; the message says what to do."""


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
    keys_written: int  # rows written by this attempt
    seconds: float
    skipped: list = field(default_factory=list)  # {"sample_id", "reason"} of items this run skipped
    reader_skipped: list = field(default_factory=list)  # (row or id, reason) the benchmark reader dropped

    def line(self) -> str:
        extra = f", {self.samples_resumed} already stored" if self.samples_resumed else ""
        return (f"{self.status}: {self.samples_done} samples ({self.keys_written:,} keys) into {self.store} "
                f"as run {self.run_id}; {self.samples_skipped} skipped{extra}; {self.seconds:.1f} s")


@dataclass
class _Prepared:
    """One batch ready for the model, with every label the writer needs."""

    items: list
    inputs: dict
    batch_index: np.ndarray  # [n] row in the batch of each kept token
    token_index: np.ndarray  # [n] padded column of each kept token
    sample_of: np.ndarray  # [n] index into items
    position: np.ndarray  # [n] unpadded position
    token_id: np.ndarray
    modality: np.ndarray
    segment: np.ndarray
    image_index: np.ndarray
    rows: list  # samples rows (one per item)
    skipped_rows: list  # samples rows of items skipped while preparing


def parse_shard(shard) -> tuple[int, int]:
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


def ingest(model: str, benchmark: str, store: str, *, layers="early,middle,late", keys="post",
           tokens="16:16", segments=None, device="auto", dtype=None, key_dtype=None, batch_size=4,
           limit=None, shard=(0, 1), seed=0, harness="lmms-eval", split=None, progress=True,
           checkpoint_seconds=60.0) -> RunSummary:
    """Capture keys of MODEL on BENCHMARK into STORE; re-running the same call resumes it.

    ``model`` is a spec for ingest.models.load_model or an already loaded LoadedModel (then
    ``device`` and ``dtype`` are ignored).

    ``checkpoint_seconds``: committed samples are made durable (flushed) at least this often, so a
    killed run loses at most that much work; the writer also flushes whenever 256 MiB are buffered.
    """
    from ingest.benchmarks import open_benchmark

    from .capture import storage_dtype
    from .models import load_model
    from .selection import parse_tokens

    ropes = parse_keys(keys)
    shard_i, shard_n = parse_shard(shard)
    if int(batch_size) < 1:
        raise IngestError(f"--batch-size must be at least 1, got {batch_size}")
    if limit is not None and int(limit) < 1:
        raise IngestError(f"--limit must be at least 1, got {limit}")
    try:
        policy = parse_tokens(tokens, segments)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    from .prompts import HARNESSES
    if harness not in HARNESSES:
        raise IngestError(f"--harness {harness!r}: use one of {', '.join(HARNESSES)}")

    from .models import LoadedModel

    from store.writer import init_store

    source = open_benchmark(benchmark, split=split)
    if Path(store).exists():
        init_store(store)  # a bad --store fails now, not after minutes of model loading
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    try:
        layer_list = resolve_layers(layers, lm.num_layers)
        kdtype = storage_dtype(lm.dtype, key_dtype)
    except ValueError as exc:
        raise IngestError(str(exc)) from None

    settings = {
        "model_id": lm.model_id, "model": lm.label, "benchmark": source.name, "layers": layer_list,
        "keys": list(ropes), "tokens": policy.describe(),
        "segments": sorted(policy.segments) if policy.segments else None, "seed": int(seed),
        "key_dtype": kdtype, "harness": harness, "circular": CIRCULAR_POLICY,
    }
    if source.split is not None:  # the split actually read, so a default and its explicit name agree
        settings["split"] = source.split
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    run_id = f"ingest-{digest}-{shard_i}of{shard_n}"
    store_path = Path(store)
    finished = _check_store(store_path, settings, digest)

    loop = _Loop(lm=lm, source=source, store=store_path, run_id=run_id, settings=settings,
                 layers=layer_list, ropes=ropes, key_dtype=kdtype, policy=policy, seed=int(seed),
                 harness=harness, batch_size=int(batch_size), limit=limit, shard=(shard_i, shard_n),
                 finished=finished, progress=progress, device=str(lm.device), dtype=str(lm.dtype),
                 checkpoint_seconds=float(checkpoint_seconds))
    return loop.run()


def _check_store(root: Path, settings: dict, digest: str) -> set[str]:
    """Sample ids this configuration already committed; refuse a clashing configuration."""
    if not (root / "keygap.json").exists():
        return set()
    from store.reader import KeyStore

    ks = KeyStore(str(root))
    for run in ks.runs():
        s = run.get("settings") or {}
        same_target = s.get("model") == settings["model"] and s.get("benchmark") == settings["benchmark"]
        # Another split holds other items, so it may share the partitions; any other difference may not.
        diff = [k for k in sorted(set(s) | set(settings)) if k not in ("model_id", "split") and s.get(k) != settings.get(k)]
        if same_target and run.get("settings_hash") != digest and (diff or s.get("model_id") != settings["model_id"]):
            raise IngestError(
                f"{root} already holds {settings['model']} on {settings['benchmark']} ingested with other "
                f"settings ({', '.join(diff) or 'model id'} differ, run {run.get('run_id')}): use the same "
                "settings to resume, or another --store")
    table = ks.samples(["model", "benchmark", "sample_id", "run_id"])
    prefix = f"ingest-{digest}-"
    return {sid for m, b, sid, rid in zip(table["model"].to_pylist(), table["benchmark"].to_pylist(),
                                          table["sample_id"].to_pylist(), table["run_id"].to_pylist())
            if m == settings["model"] and b == settings["benchmark"] and str(rid).startswith(prefix)}


class _Loop:
    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.skipped: list = []
        self.samples_done = 0
        self.samples_skipped = 0
        self.keys_written = 0
        self.resumed = 0

    # -- sample stream ----------------------------------------------------------------------------------
    def _my_items(self):
        """Items of this shard not yet committed, in benchmark order."""
        shard_i, shard_n = self.shard
        mine = None
        if shard_n > 1:
            ids = []
            for item in self.source:
                ids.append(item.sample_id)
                if self.limit is not None and len(ids) >= self.limit:
                    break
            perm = np.random.default_rng(self.seed).permutation(len(ids))
            mine = {ids[j] for j in perm[shard_i::shard_n]}
        if mine is not None:
            self.remaining = len(mine - self.finished)
        else:
            self.remaining = max(0, min(len(self.source), self.limit or len(self.source)) - len(self.finished))
        seen = 0
        for item in self.source:
            if self.limit is not None and seen >= self.limit:
                break
            seen += 1
            if mine is not None and item.sample_id not in mine:
                continue
            if item.sample_id in self.finished:
                self.resumed += 1
                continue
            yield item

    # -- preparation (runs in the preparer thread) ------------------------------------------------------
    def _prepare(self, items: list) -> _Prepared:
        from ingest.benchmarks import BenchmarkError, decode_image

        from .labels import images_in_prompt_order
        from .prompts import build_prompt

        ready, skipped_rows = [], []
        for item in items:
            try:
                prompt = build_prompt(item, self.lm.family, self.harness)
                order = images_in_prompt_order(prompt.image_spans)
                images = [decode_image(item.images[k], f"image {k + 1} of item {item.sample_id}")
                          for k in order]
            except BenchmarkError as exc:
                skipped_rows.append(self._skip_row(item, str(exc)))
                continue
            ready.append((item, prompt, images))
        return self._process(ready, skipped_rows)

    def _process(self, ready: list, skipped_rows: list) -> _Prepared:
        from .labels import TokenKinds, label_sample
        from .selection import select_positions

        try:
            inputs = self._processor(ready)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
            if len(ready) <= 1:
                for item, _, _ in ready:
                    skipped_rows.append(self._skip_row(item, f"processor failed: {_first_line(exc)}"))
                ready, inputs = [], None
            else:  # find the culprit by processing items one at a time
                parts = [self._process([r], []) for r in ready]
                ready = [r for r in ready if any(r[0] is it for p in parts for it in p.items)]
                for p in parts:
                    skipped_rows.extend(p.skipped_rows)
                inputs = self._processor(ready) if ready else None
        lm = self.lm
        kinds = TokenKinds(image=lm.image_token_id, video=lm.video_token_id, special=lm.special_ids)
        cols = {k: [] for k in ("batch_index", "token_index", "sample_of", "position", "token_id",
                                "modality", "segment", "image_index")}
        rows = []
        if inputs is not None:
            replacements = inputs.pop("text_replacement_offsets")
            ids = inputs["input_ids"].numpy()
            mask = inputs["attention_mask"].numpy().astype(bool)
            for b, (item, prompt, _) in enumerate(ready):
                valid = np.flatnonzero(mask[b])  # padding is never labelled, never stored
                toks = label_sample(ids[b, valid], prompt.text, prompt.spans, prompt.image_spans,
                                    replacements[b], lm.tokenizer, kinds)
                pos = select_positions(toks, self.policy, seed=self.seed, sample_id=item.sample_id,
                                       store_image=item.circular_of is None)
                n = len(pos)
                cols["batch_index"].append(np.full(n, b))
                cols["token_index"].append(valid[pos])
                cols["sample_of"].append(np.full(n, b))
                cols["position"].append(pos)
                cols["token_id"].append(toks.token_id[pos])
                cols["modality"].append(toks.modality[pos])
                cols["segment"].append(toks.segment[pos])
                cols["image_index"].append(toks.image_index[pos])
                rows.append(self._done_row(item, prompt, toks))
            if not lm.mrope:
                # Left padding shifts every position unless position_ids count real tokens only
                # (FIELD-NOTES pitfall b); M-RoPE models compute their own 3-D positions.
                m = inputs["attention_mask"].long()
                inputs["position_ids"] = (m.cumsum(-1) - 1).clamp(min=0)
        cat = {k: (np.concatenate(v) if v else np.zeros(0, object if k in ("modality", "segment") else np.int64))
               for k, v in cols.items()}
        return _Prepared(items=[r[0] for r in ready], inputs=inputs, rows=rows, skipped_rows=skipped_rows, **cat)

    def _processor(self, ready: list):
        texts = [prompt.text for _, prompt, _ in ready]
        images = [img for _, _, imgs in ready for img in imgs]
        return self.lm.processor(text=texts, images=images or None, padding=True, return_tensors="pt",
                                 return_text_replacement_offsets=True)

    def _base_row(self, item) -> dict:
        return {"model": self.lm.label, "benchmark": self.source.name, "sample_id": item.sample_id,
                "question": item.question, "answer": item.answer, "category": item.category,
                "image_hash": item.image_hash, "circular_of": item.circular_of}

    def _skip_row(self, item, reason: str) -> dict:
        self.skipped.append({"sample_id": item.sample_id, "reason": reason})
        return self._base_row(item) | {"status": f"skipped: {reason}", "n_tokens": 0, "n_image_tokens": 0}

    def _done_row(self, item, prompt, toks) -> dict:
        return self._base_row(item) | {
            "template_id": prompt.template_id, "n_tokens": len(toks),
            "n_image_tokens": int((toks.modality == "image").sum()),
            "segment_tokens": json.dumps(toks.segment_counts(), ensure_ascii=False), "status": "done"}

    # -- key batches ------------------------------------------------------------------------------------
    def _key_batches(self, prep: _Prepared, captured) -> list:
        from store.writer import KeyBatch

        sample_ids = np.array([it.sample_id for it in prep.items], dtype=object)[prep.sample_of]
        out = []
        for modality in ("image", "text", "special", "video"):
            sel = np.flatnonzero(prep.modality == modality)
            if not len(sel):
                continue
            for (layer, rope), keys in captured.keys.items():
                out.append(KeyBatch(
                    model=self.lm.label, benchmark=self.source.name, layer=layer, rope=rope,
                    modality=modality, sample_id=sample_ids[sel], position=prep.position[sel],
                    token_id=prep.token_id[sel], segment=prep.segment[sel], keys=keys[sel],
                    dtype=captured.dtype, image_index=prep.image_index[sel],
                    rope_thw=captured.rope_positions[sel] if self.lm.mrope else None))
        return out

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        import torch

        from store.writer import KeyWriter, write_run

        from .capture import KeyCapture

        started = time.time()
        writer = KeyWriter(self.store, self.run_id)
        self.manifest = {
            "run_id": self.run_id, "status": "running", "settings": self.settings,
            "settings_hash": self.run_id.split("-")[1], "model_id": self.lm.model_id,
            "model": self.lm.label, "model_type": self.lm.model_type, "benchmark": self.source.name,
            "benchmark_source": _describe(self.source), "shard": f"{self.shard[0]}/{self.shard[1]}",
            "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
            "num_layers": self.lm.num_layers, "num_kv_heads": self.lm.num_kv_heads,
            "head_dim": self.lm.head_dim, **_model_identity(self.lm.model),
            "started": _now(), "ended": None, "versions": _versions(),
            "notes": {"layers": "early,middle,late = 1, L//2, L-1 (our choice; the paper names none)",
                      "tokens": "IMAGE:TEXT tokens per sample drawn from (seed, sample id); the last "
                                "prompt token is always kept; 'all' keeps every token",
                      "circular": "CircularEval copies store text and special keys only"},
        }
        previous = _previous_manifest(self.store, self.run_id)
        if previous:
            self.manifest["started"] = previous.get("started", self.manifest["started"])
            self.manifest["attempts"] = previous.get("attempts", 1) + 1
            self.manifest["skipped"] = previous.get("skipped", [])
            self.manifest["keys_written"] = previous.get("keys_written", 0)
        write_run(self.store, self.manifest)

        sink = _WriterThread(writer, self.checkpoint_seconds)
        sink.start()
        prepared: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        preparer = threading.Thread(target=self._prepare_all, args=(prepared, stop), daemon=True,
                                    name="keygap-prepare")
        status = "done"
        bar = _Progress(self.progress)
        try:
            with KeyCapture(self.lm, self.layers, ropes=self.ropes, key_dtype=self.key_dtype) as cap:
                preparer.start()
                bar.start()
                while True:
                    prep = _get(prepared, preparer)
                    if prep is None:
                        break
                    if isinstance(prep, BaseException):
                        raise prep
                    batches = []
                    if prep.items:
                        if bar.total is None:
                            bar.set_total(self.remaining)
                        inputs = {k: _to_device(v, self.lm) for k, v in prep.inputs.items()}
                        try:
                            captured = cap.run(inputs, prep.batch_index, prep.token_index)
                        except torch.OutOfMemoryError:
                            raise IngestError(
                                f"out of memory at batch size {self.batch_size} on {self.device}: rerun "
                                f"the same command with --batch-size {max(1, self.batch_size // 2)} "
                                "(finished samples are kept)") from None
                        batches = self._key_batches(prep, captured)
                    sink.put(batches, prep.rows + prep.skipped_rows)
                    n_keys = sum(len(b) for b in batches)
                    bar.advance(len(prep.items) + len(prep.skipped_rows), n_keys)
        except KeyboardInterrupt:
            status = "interrupted"
        except BaseException:
            status = "failed"
            raise
        finally:
            stop.set()
            bar.stop()
            sink.finish()
            self.samples_done, self.samples_skipped = sink.samples_done, sink.samples_skipped
            self.keys_written = sink.rows
            self.manifest.update(status=status if sink.error is None else "failed", ended=_now())
            self._totals_into_manifest()
            write_run(self.store, self.manifest)
            if self.keys_written:
                # cached analysis answers that read these partitions are stale now: never served (their
                # key includes the files read) but they would linger in the `results` table
                from store.results import ResultsCache

                ResultsCache(self.store).prune_stale()
            if sink.error is not None and status != "failed":
                raise IngestError(f"writing to {self.store} failed: {_first_line(sink.error)}") from sink.error
        return RunSummary(run_id=self.run_id, store=str(self.store), model=self.lm.label,
                          benchmark=self.source.name, status=status, layers=self.layers,
                          samples_done=self.samples_done, samples_skipped=self.samples_skipped,
                          samples_resumed=self.resumed,
                          keys_written=self.keys_written, seconds=time.time() - started,
                          skipped=list(self.skipped), reader_skipped=list(self.source.skipped))

    def _prepare_all(self, out: queue.Queue, stop: threading.Event) -> None:
        """Preparer thread: batches of items -> _Prepared, then None; an exception is passed on."""
        try:
            batch = []
            for item in self._my_items():
                if stop.is_set():
                    return
                batch.append(item)
                if len(batch) == self.batch_size:
                    _put(out, self._prepare(batch), stop)
                    batch = []
            if batch:
                _put(out, self._prepare(batch), stop)
            _put(out, None, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            _put(out, exc, stop)

    def _totals_into_manifest(self) -> None:
        from store.reader import KeyStore

        table = KeyStore(str(self.store)).samples(["run_id", "status"])
        statuses = [s for r, s in zip(table["run_id"].to_pylist(), table["status"].to_pylist())
                    if r == self.run_id]
        done = sum(1 for s in statuses if s == "done")
        self.manifest["samples_done"] = done
        self.manifest["samples_skipped"] = len(statuses) - done
        previous = self.manifest.get("skipped", [])
        self.manifest["skipped"] = (previous + self.skipped)[:_MAX_SKIPS_IN_MANIFEST]
        self.manifest["reader_skipped"] = [list(s) for s in self.source.skipped][:_MAX_SKIPS_IN_MANIFEST]
        self.manifest["keys_written"] = self.manifest.get("keys_written", 0) + self.keys_written


class _WriterThread(threading.Thread):
    """Owns the KeyWriter: adds and commits whole batches in order; the queue bounds memory."""

    def __init__(self, writer, checkpoint_seconds: float):
        super().__init__(daemon=True, name="keygap-writer")
        self.writer = writer
        self.checkpoint_seconds = checkpoint_seconds
        self._last_flush = time.monotonic()
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.samples_done = 0
        self.samples_skipped = 0
        self.rows = 0

    def put(self, batches: list, rows: list) -> None:
        if self.error is not None:
            raise IngestError(f"writing to the store failed: {_first_line(self.error)}") from self.error
        while True:
            try:
                self.queue.put((batches, rows), timeout=0.5)
                return
            except queue.Full:
                if not self.is_alive():
                    raise IngestError(f"the store writer stopped: {_first_line(self.error)}") from self.error

    def run(self) -> None:
        while True:
            msg = self.queue.get()
            if msg is None:
                break
            if self.error is not None:
                continue  # drain: nothing more is written after a failure
            batches, rows = msg
            try:
                for b in batches:
                    self.writer.add(b)
                self.writer.commit(rows)
                self.samples_done += sum(1 for r in rows if r.get("status") == "done")
                self.samples_skipped += sum(1 for r in rows if r.get("status") != "done")
                self.rows += sum(len(b) for b in batches)
                if time.monotonic() - self._last_flush >= self.checkpoint_seconds:
                    self.writer.flush()
                    self._last_flush = time.monotonic()
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.writer.discard_staged()
                self.error = exc

    def finish(self) -> None:
        """Write everything queued, close the writer (flush committed keys), stop the thread."""
        self.queue.put(None)
        self.join()
        if self.error is None:
            try:
                self.writer.close()
            except BaseException as exc:  # noqa: BLE001
                self.error = exc


class _Progress:
    """A rich progress bar: samples/s, keys/s and ETA (silent when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.total = None
        self.keys = 0
        self.t0 = time.time()
        self._bar = None

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task("ingest", total=None, rate="")
        self._bar.start()

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, samples: int, keys: int) -> None:
        self.keys += keys
        if self._bar is None:
            return
        dt = max(time.time() - self.t0, 1e-9)
        done = self._bar.tasks[0].completed + samples
        rate = f"{done / dt:.2f} samples/s  {self.keys / dt:,.0f} keys/s"
        self._bar.update(self._task, advance=samples, rate=rate)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _get(q: queue.Queue, producer: threading.Thread):
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not producer.is_alive() and q.empty():
                return None


def _put(q: queue.Queue, value, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(value, timeout=0.2)
            return
        except queue.Full:
            continue


def _to_device(value, lm):
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point():
        return value.to(lm.device, dtype=lm.dtype, non_blocking=True)
    return value.to(lm.device, non_blocking=True)


def _previous_manifest(root: Path, run_id: str) -> dict | None:
    path = root / "runs" / f"{run_id}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describe(source) -> dict:
    try:
        return source.describe()
    except Exception:  # noqa: BLE001 - provenance is best effort
        return {"benchmark": source.name}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        keygap = version("keygap")
    except PackageNotFoundError:
        keygap = "unknown"
    return {"keygap": keygap, "torch": torch.__version__, "transformers": transformers.__version__}


def _model_identity(model) -> dict:
    """Revision and attention implementation: keys of the same weights can differ across both."""
    config = getattr(model, "config", None)
    return {
        "revision": getattr(config, "_commit_hash", None),
        "name_or_path": getattr(config, "_name_or_path", None),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
