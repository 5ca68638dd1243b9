"""Sampled reads: uniform, paired across layers, equal to a naive full-read selection, and reading O(n) bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from store_helpers import write_synthetic_store

from store.reader import KeyStore

PART = "keys/model=m/benchmark=b/layer={layer}/rope=post/modality={modality}"


def _naive(root: Path, layer: int, modality: str, n: int, seed: int | None, segments=None) -> list[tuple[str, int]]:
    """The sample by its definition, from a full read with plain pyarrow: the n rows whose rand comes first
    at or after u (u = 0 without a seed, else numpy's first uniform draw from the seed), wrapping past 1."""
    files = sorted((root / PART.format(layer=layer, modality=modality)).glob("part-*.parquet"))
    t = pa.concat_tables([pq.read_table(f, columns=["sample_id", "position", "segment", "rand"]) for f in files])
    ids = np.array(t["sample_id"].cast(pa.string()).to_pylist())
    pos = t["position"].to_numpy()
    rand = t["rand"].to_numpy()
    if segments is None:
        keep = np.ones(len(ids), bool)
    else:
        keep = np.isin(t["segment"].cast(pa.string()).to_pylist(), segments)
    u = 0.0 if seed is None else np.random.default_rng(seed).random()
    shifted = np.where(keep, (rand - u) % 1.0, np.inf)
    order = np.argsort(shifted, kind="stable")[: min(n, int(keep.sum()))]
    return list(zip(ids[order].tolist(), pos[order].tolist()))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sampling") / "s"
    # 200 samples x 25 tokens = 5,000 rows per partition in 8 flush files, two layers
    write_synthetic_store(root, samples=200, tokens=25, dim=4, flush_every=25, layers=(1, 2))
    return root


@pytest.mark.parametrize("seed", [None, 0, 7, 123456])
def test_a_sample_is_the_window_of_the_random_order_its_seed_names(store, seed):
    ks = KeyStore(store)
    got = ks.load("m", "b", 1, "image", n=300, seed=seed)
    assert list(zip(got.sample_id.tolist(), got.position.tolist())) == _naive(store, 1, "image", 300, seed)
    assert got.total == 5000
    filtered = ks.load("m", "b", 2, "text", n=40, seed=seed, segments=["question"])
    want = _naive(store, 2, "text", 40, seed, ["question"])
    assert list(zip(filtered.sample_id.tolist(), filtered.position.tolist())) == want


@pytest.mark.slow
def test_seeded_samples_are_uniform_over_rows(store):
    ks = KeyStore(store)
    n, seeds = 250, 200
    inclusions = np.zeros(5000, np.int64)
    for seed in range(seeds):
        s = ks.load("m", "b", 1, "image", n=n, seed=seed)
        idx = np.array([int(x[1:]) for x in s.sample_id]) * 25 + s.position  # global row number 0..4999
        assert len(np.unique(idx)) == n
        inclusions[idx] += 1
        if seed < 5:  # one sample: spread evenly over the rows
            assert stats.chisquare(np.bincount(idx // 500, minlength=10)).pvalue > 0.001
    # every row is drawn with probability n / N: per bin of 500 rows the counts match that expectation
    per_bin = inclusions.reshape(10, 500).sum(axis=1)
    assert stats.chisquare(per_bin).pvalue > 0.001
    assert inclusions.sum() == n * seeds and abs(inclusions.mean() - n * seeds / 5000) < 1e-9
    # and no row is favoured: the per-row counts look binomial(seeds, n/N), not clumped
    p = n / 5000
    assert inclusions.var() < 2.0 * seeds * p * (1 - p)


def test_one_seed_takes_the_same_tokens_in_every_layer(store):
    ks = KeyStore(store)
    for seed in (None, 3, 99):
        a = ks.load("m", "b", 1, "text", n=500, seed=seed)
        b = ks.load("m", "b", 2, "text", n=500, seed=seed)
        assert list(zip(a.sample_id, a.position)) == list(zip(b.sample_id, b.position))
        assert not np.array_equal(a.x, b.x)  # different layers, different keys
    drawn = {seed: ks.load("m", "b", 1, "text", n=500, seed=seed) for seed in (3, 4)}
    tokens = {seed: set(zip(s.sample_id, s.position)) for seed, s in drawn.items()}
    assert tokens[3] != tokens[4]  # another seed, another sample


def test_the_first_k_rows_of_a_sample_are_the_k_row_sample(store):
    ks = KeyStore(store)
    big = ks.load("m", "b", 1, "image", n=400, seed=11)
    small = ks.load("m", "b", 1, "image", n=50, seed=11)
    assert np.array_equal(big.x[:50], small.x) and list(big.sample_id[:50]) == list(small.sample_id)


def _read_bytes() -> int:
    """Bytes this process has passed through read system calls so far (Linux /proc accounting)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io byte accounting")
@pytest.mark.slow
def test_a_seeded_sample_reads_about_what_it_returns(tmp_path):
    root = tmp_path / "s"
    # one file of 20,000 d=256 fp16 keys (10 MB of keys): 500 keys are 256 KB of it
    write_synthetic_store(root, samples=400, tokens=50, dim=256, flush_every=400)
    ks = KeyStore(root)
    ks.load("m", "b", 1, "image", n=500, seed=1000)  # imports, footers
    ratios = []
    for seed in range(5):
        before = _read_bytes()
        s = ks.load("m", "b", 1, "image", n=500, seed=seed)
        ratios.append((_read_bytes() - before) / (500 * 256 * 2))
        assert len(s) == 500
    assert np.median(ratios) <= 4.0, ratios
    before = _read_bytes()
    ks.load("m", "b", 1, "image")  # the whole partition, for scale
    assert (_read_bytes() - before) / (500 * 256 * 2) > 10 * np.median(ratios)
