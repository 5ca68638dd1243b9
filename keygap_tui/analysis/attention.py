"""Attention allocation read from the store (`keygap ingest --attention`), beside the key gap per head.

- ``allocation``: FastV's figure, the mean attention mass on image / text / sink / special tokens per layer
  (a group's masses summed per sample and query head, then averaged), beside those tokens' share of the
  keys the query can see.
- ``head_matrix``: per layer and kv head, the centroid gap between image and text keys in that head's columns
  and the image attention mass of the query heads that read that kv head (and the image token share).
  The image attention deficit = token share - mass (> 0: the image gets less attention than its tokens).
- ``gap_deficit_correlation``: Pearson r over (layer, kv head) cells between key gap and deficit, with a
  permutation p-value that shuffles heads within each layer (stats/correlation.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keygap_tui.stats.centroid import centroid_gap
from keygap_tui.stats.correlation import Correlation, stratified_correlation
from store.reader import KeyStore

from .errors import AnalysisError
from .heads import head_columns, head_layout
from .sides import Side, load_side

BUCKETS = ("image", "text", "sink", "special", "video")
QUERY_KINDS = ("last", "text")
DEFAULT_HEAD_N = 500  # keys per side for each layer's per-head centroid gaps
DEFAULT_CORRELATION_PERMUTATIONS = 999


@dataclass
class Allocation:
    """Mean attention mass and token share per layer (rows) and bucket (columns) of one model and benchmark."""

    model: str
    benchmark: str
    query: str
    layers: list[int]
    buckets: list[str]
    mass: np.ndarray  # [layers, buckets]
    share: np.ndarray  # [layers, buckets]


@dataclass
class HeadMatrix:
    """Per (layer, kv head): the image-vs-text centroid gap of that head's keys and the image attention it gets."""

    model: str
    benchmark: str
    layers: list[int]
    heads: list[int]
    key_gap: np.ndarray  # [layers, heads] centroid gap |mu_image - mu_text| in the head's columns
    image_mass: np.ndarray  # [layers, heads] mean image mass of the query heads reading the kv head
    image_share: np.ndarray  # [layers, heads] mean image share of the visible keys
    params: dict = field(default_factory=dict)

    @property
    def deficit(self) -> np.ndarray:
        return self.image_share - self.image_mass


def _columns(ks: KeyStore, model: str, benchmark: str, layers=None):
    table = ks.load_attention(model, benchmark, layers,
                              columns=["sample_id", "head", "query", "group", "modality", "token_share", "mass"])
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def _bucket(group: np.ndarray, modality: np.ndarray) -> np.ndarray:
    return np.where(group == "sink", "sink", modality).astype(str)


def allocation(ks: KeyStore, model: str, benchmark: str, query: str = "last") -> Allocation:
    """FastV's allocation over every layer with attention rows (query ``last`` or ``text``)."""
    if query not in QUERY_KINDS:
        raise AnalysisError(f"query must be one of {', '.join(QUERY_KINDS)}, got {query!r}")
    c = _columns(ks, model, benchmark)
    pick = c["query"] == query
    layer, bucket = c["layer"][pick], _bucket(c["group"][pick], c["modality"][pick])
    mass, share = c["mass"][pick], c["token_share"][pick]
    cell = np.char.add(np.char.add(c["sample_id"][pick].astype(str), "|"), c["head"][pick].astype(str))
    layers = sorted(set(layer.tolist()))
    buckets = [b for b in BUCKETS if b in set(bucket.tolist())]
    out_mass = np.zeros((len(layers), len(buckets)))
    out_share = np.zeros((len(layers), len(buckets)))
    for i, lay in enumerate(layers):
        here = layer == lay
        cells = np.unique(cell[here])  # (sample, head) pairs: a bucket absent from one counts as 0 there
        for j, b in enumerate(buckets):
            rows = here & (bucket == b)
            out_mass[i, j] = mass[rows].sum() / len(cells)
            out_share[i, j] = share[rows].sum() / len(cells)
    return Allocation(model, benchmark, query, layers, buckets, out_mass, out_share)


def head_matrix(ks: KeyStore, model: str, benchmark: str, *, rope: str = "post", image: str = "image",
                text: str = "text", n: int | None = DEFAULT_HEAD_N, seed: int = 0) -> HeadMatrix:
    """The layer x kv head matrix over the layers that hold both keys and attention rows."""
    from .sides import parse_what

    layout = head_layout(ks, model)
    layers = sorted(set(ks.attention_layers(model, benchmark)) & set(ks.layers(model, benchmark)))
    if not layers:
        raise AnalysisError(f"no layer of {model} on {benchmark} has both keys and attention rows: "
                            "ingest with --attention")
    c = _columns(ks, model, benchmark, layers)
    kv_of = np.arange(layout.num_heads) // (layout.num_heads // layout.num_kv_heads)
    heads = list(range(layout.num_kv_heads))
    gap = np.full((len(layers), len(heads)), np.nan)
    mass = np.full_like(gap, np.nan)
    share = np.full_like(gap, np.nan)
    ma, sa = parse_what(image)
    mt, st = parse_what(text)
    last = (c["query"] == "last") & (c["modality"] == "image") & (c["group"] != "sink")
    for i, layer in enumerate(layers):
        xi = load_side(ks, Side(model, benchmark, layer, ma, sa, rope), n=n, seed=seed).x
        xt = load_side(ks, Side(model, benchmark, layer, mt, st, rope), n=n, seed=seed).x
        for g in heads:
            gap[i, g] = centroid_gap(head_columns(xi, g, layout.head_dim), head_columns(xt, g, layout.head_dim)).value
        here = last & (c["layer"] == layer)
        n_cells = len(np.unique(c["sample_id"][c["layer"] == layer])) * (layout.num_heads // layout.num_kv_heads)
        for g in heads:
            rows = here & np.isin(c["head"], np.flatnonzero(kv_of == g))
            mass[i, g] = c["mass"][rows].sum() / n_cells  # summed over image groups, averaged over cells
            share[i, g] = c["token_share"][rows].sum() / n_cells
    params = {"key_gap": "centroid gap |mu_image - mu_text| in each kv head's columns", "rope": rope,
              "image_side": image, "text_side": text, "n_per_side": "all" if n is None else n, "seed": seed,
              "attention": "image mass of the last prompt token, mean over samples and the query heads of the kv head",
              "deficit": "image token share - image attention mass"}
    return HeadMatrix(model, benchmark, layers, heads, gap, mass, share, params)


def gap_deficit_correlation(matrix: HeadMatrix, permutations: int = DEFAULT_CORRELATION_PERMUTATIONS,
                            seed: int = 0) -> Correlation:
    """Across (layer, kv head) cells: does a larger key gap go with a larger image attention deficit?"""
    strata = np.repeat(np.arange(len(matrix.layers)), len(matrix.heads))
    return stratified_correlation(matrix.key_gap.ravel(), matrix.deficit.ravel(), strata,
                                  permutations=permutations, seed=seed)
