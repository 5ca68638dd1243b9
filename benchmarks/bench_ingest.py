"""Ingest benchmark: `ingest` throughput (capture + labels + writing) against the plain forward pass.

A LLaVA-1.5-shaped input (336 px image -> 576 image tokens, ~60-130 text tokens) through a LLaVA
model scaled down to fit a CPU (same architecture classes, smaller widths), on the bundled sample's
first 8 items. Baseline: the same model's plain forward (use_cache=False) on the same processed
batches, timed in the same process right before each ingest run; the ratio of each adjacent pair is
taken and the median reported, so load from other jobs drifting over minutes cancels out. Ingest
times cover the whole run (image decoding, prompts, processor, labels, forward with hooks, Parquet
writing in the writer thread); model loading is excluded. Target: ingest >= 0.95 x the plain
forward's samples/s; with --queries text --attention (the attention mass of every captured query over
every key, per head) >= 0.9.

Run: python benchmarks/bench_ingest.py   (or `make bench BENCH=ingest`; `--only attention` for the
--queries --attention variants alone); on a GPU:
python benchmarks/bench_ingest.py --model random:llava-1.5-7b --device cuda --samples 32 --batch 8
Numbers go to BENCHMARKS.md.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ingest.benchmarks import decode_image, open_benchmark
from ingest.capture import KeyCapture
from ingest.models import load_model
from ingest.prompts import build_prompt
from ingest.run import ingest
from ingest.tiny import build_tokenizer

N_SAMPLES = 8
BATCH = 4
REPEATS = 5


def build_model(folder: Path):
    """A LLaVA-1.5 with 336 px CLIP input (576 image tokens) and a small Llama decoder; saved to `folder`."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = build_tokenizer("llava")
    vision = CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                              num_attention_heads=4, image_size=336, patch_size=14, projection_dim=128)
    text = LlamaConfig(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                       num_key_value_heads=6, vocab_size=(len(tok) + 63) // 64 * 64,
                       max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_seq_length=576,
                         image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 336},
                                                                     crop_size={"height": 336, "width": 336}),
                               tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def plain_batches(lm, n_samples: int, batch: int):
    """The processed batches ingest would build (same prompts, padding and positions), on the device."""
    from ingest.run import to_device

    items = [it for _, it in zip(range(n_samples), open_benchmark("sample"))]
    batches = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        texts = [build_prompt(it, lm.model_type).text for it in chunk]
        images = [decode_image(b) for it in chunk for b in it.images]
        inputs = lm.processor(text=texts, images=images, padding=True, return_tensors="pt")
        if not lm.mrope:
            inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        batches.append({k: to_device(v, lm) for k, v in inputs.items()})
    return batches


def _sync(lm) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


class Clock:
    """Wall and process CPU seconds (all threads): on a shared machine CPU time is the steadier cost."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_plain(lm, batches) -> tuple[float, float]:
    with Clock() as c, torch.inference_mode():
        for inputs in batches:
            lm.model(**inputs, use_cache=False)
        _sync(lm)
    return c.wall, c.cpu


def time_ingest(lm, store: Path, n_samples: int, batch: int, **kw) -> tuple[float, float, int]:
    """The whole ingest call on the already loaded model (RunSummary.seconds excludes setup)."""
    shutil.rmtree(store, ignore_errors=True)
    cpu0 = time.process_time()
    s = ingest(lm, "sample", str(store), limit=n_samples, batch_size=batch, progress=False, **kw)
    cpu = time.process_time() - cpu0
    assert s.samples_done == n_samples, s
    return s.seconds, cpu, s.keys_written


def time_hooks(lm, batches) -> tuple[float, float, int]:
    """Forward with capture on every layer (pre + post, 16 + 16 tokens per sample), no early stop:
    the cost of the hooks alone."""
    n = 0
    with Clock() as c, KeyCapture(lm, list(range(lm.num_layers)), ropes=("pre", "post"),
                                  stop_early=False) as cap:
        for inputs in batches:
            rows, cols = inputs["input_ids"].shape
            b = np.repeat(np.arange(rows), 32)
            t = np.tile(np.linspace(cols // 2, cols - 1, 32).astype(int), rows)
            got = cap.run(dict(inputs), b, t)
            n += sum(len(k) for k in got.keys.values())
        _sync(lm)
    return c.wall, c.cpu, n


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None,
                    help="a keygap MODEL (e.g. random:llava-1.5-7b on a GPU); default: the CPU-sized LLaVA")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on the shared 2-core development machines two OpenMP "
                         "threads fighting other jobs made paired timings swing 0.4-3x)")
    ap.add_argument("--samples", type=int, default=N_SAMPLES)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--only", default=None, help="run only the ingest variants whose name contains this text, "
                    "e.g. --only attention")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="keygap-bench-ingest-"))
    try:
        if args.model is None:
            build_model(work / "model")
            lm = load_model(str(work / "model"), device=args.device)
            shape = "decoder 6 x 384, CLIP 336/14"
        else:
            lm = load_model(args.model, device=args.device)
            shape = args.model
        batches = plain_batches(lm, args.samples, args.batch)
        n_tokens = [int(b["attention_mask"].sum(-1).max()) for b in batches]
        n_image = int(sum((b["input_ids"] == lm.image_token_id).sum() for b in batches)) // args.samples
        variants = {
            "early,middle,late, post, 16:16": dict(layers="early,middle,late", keys="post", tokens="16:16"),
            "all layers, pre+post, 16:16": dict(layers="all", keys="both", tokens="16:16"),
            "all layers, post, all tokens": dict(layers="all", keys="post", tokens="all"),
            "early,middle,late, 16:16, --queries text --attention": dict(
                layers="early,middle,late", keys="post", tokens="16:16", queries="text", attention=True),
            "all layers, post, 16:16, --queries text --attention": dict(
                layers="all", keys="post", tokens="16:16", queries="text", attention=True),
        }
        if args.only:
            variants = {k: v for k, v in variants.items() if args.only in k}
        runners = {}
        if not args.only:
            runners["forward + hooks only, all layers, no early stop"] = lambda: time_hooks(lm, batches)
        for name, kw in variants.items():
            runners["ingest " + name] = lambda kw=kw: time_ingest(lm, work / "store", args.samples, args.batch, **kw)
        time_plain(lm, batches[:1])  # warm up every path once
        for run in runners.values():
            run()
        plain, cpu_plain = [], []
        wall = {n: [] for n in runners}
        ratio, cpu_ratio, keys = {n: [] for n in runners}, {n: [] for n in runners}, {}
        for _ in range(args.repeats):
            for name, run in runners.items():
                base, base_cpu = time_plain(lm, batches)
                seconds, cpu, keys[name] = run()
                plain.append(base)
                cpu_plain.append(base_cpu)
                wall[name].append(seconds)
                ratio[name].append(base / seconds)
                cpu_ratio[name].append(base_cpu / cpu)
        print(f"{shape} on {lm.device} ({str(lm.dtype).removeprefix('torch.')}): ~{n_image} image tokens per "
              f"sample, padded batch length {min(n_tokens)}-{max(n_tokens)} tokens; {args.samples} samples, "
              f"batch {args.batch}, torch threads {torch.get_num_threads()}; {args.repeats} paired runs")
        print(f"{'run':<50} {'best s':>7} {'samples/s':>9} {'keys/s':>8} {'wall ratio':>10} {'cpu ratio':>9}")
        best_plain = min(plain)
        print(f"{'plain forward, use_cache=False (baseline)':<50} {best_plain:7.2f} "
              f"{args.samples / best_plain:9.2f} {'':>8} {1.0:10.2f} {1.0:9.2f}")
        for name in runners:
            best = min(wall[name])
            print(f"{name:<50} {best:7.2f} {args.samples / best:9.2f} {keys[name] / best:8.0f} "
                  f"{statistics.median(ratio[name]):10.2f} {statistics.median(cpu_ratio[name]):9.2f}"
                  f"   wall pairs {min(ratio[name]):.2f}-{max(ratio[name]):.2f}")
        print("wall ratio = median over pairs of (plain forward wall s / run wall s), each pair timed back to back;"
              " cpu ratio = the same with process CPU seconds (steadier when other jobs share the cores). "
              ">= 1: the run keeps up with the plain forward.")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
