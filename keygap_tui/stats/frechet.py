"""Frechet distance between Gaussians fitted to the two key sets, optionally in the MIR convention.

FD = |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^{1/2}).
Why no sqrtm: with any factorisation C_a = L_a L_a', the eigenvalues of C_a C_b are those of the
symmetric PSD matrix (L_a' L_b)(L_a' L_b)', so tr((C_a C_b)^{1/2}) is the nuclear norm of L_a' L_b.
L is the centred data itself when rows <= dim (rank-deficient covariance, the usual case for
per-layer keys) and an eigh square root otherwise, so the largest matrix factorised is min(rows, dim)
square and no complex-valued sqrtm round-off appears. Covariances use ddof = 1, as np.cov.

rescale_by_text_norm=True follows the Modality Integration Rate (Huang et al., arXiv 2410.07167):
both sets are divided by the mean L2 norm of the text side first, making the distance comparable across
layers whose key norms differ. MIR also replaces 3-sigma norm outliers by the median; we do not
(norm_summary reports the outliers instead), so values match MIR only on outlier-free data.
"""

from __future__ import annotations

import time

import numpy as np

from .inputs import as_pair, check_choice
from .result import MeasureResult


def frechet_distance(x, y, *, groups_x=None, groups_y=None, seed: int = 0, rescale_by_text_norm: bool = False,
                     text_side: str = "b") -> MeasureResult:
    """text_side: which input holds the text keys for rescale_by_text_norm ('b' = y, the default)."""
    started = time.perf_counter()
    check_choice("text_side", text_side, ("a", "b"))
    x, y = as_pair(x, y, min_rows=2)
    a = x.astype(np.float64)
    b = y.astype(np.float64)
    scale = 1.0
    if rescale_by_text_norm:
        text = b if text_side == "b" else a
        mean_norm = float(np.sqrt(np.einsum("ij,ij->i", text, text)).mean())
        scale = 1.0 / mean_norm if mean_norm > 0 else 1.0
        a *= scale
        b *= scale
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a -= mu_a
    b -= mu_b
    trace_a = float(np.einsum("ij,ij->", a, a) / (len(a) - 1))
    trace_b = float(np.einsum("ij,ij->", b, b) / (len(b) - 1))
    cross = _trace_sqrt_product(_cov_factor(a), _cov_factor(b))
    mean_term = float(np.sum((mu_a - mu_b) ** 2))
    value = mean_term + trace_a + trace_b - 2.0 * cross
    extra = {"mean_term": mean_term, "covariance_term": trace_a + trace_b - 2.0 * cross,
             "trace_a": trace_a, "trace_b": trace_b, "scale_factor": scale}
    params = {"rescale_by_text_norm": bool(rescale_by_text_norm), "text_side": text_side, "ddof": 1,
              "outlier_removal": None}
    return MeasureResult("frechet", float(value), None, len(x), len(y), params, seed,
                         time.perf_counter() - started, extra)


def _cov_factor(centred: np.ndarray) -> np.ndarray:
    """L [dim, r] with L L' = covariance (ddof 1), r = min(rows, dim)."""
    rows, dim = centred.shape
    if rows <= dim:
        return centred.T / np.sqrt(rows - 1)
    cov = centred.T @ centred / (rows - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    return eigvec * np.sqrt(np.clip(eigval, 0.0, None))


def _trace_sqrt_product(factor_a: np.ndarray, factor_b: np.ndarray) -> float:
    cross = factor_a.T @ factor_b
    gram = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum())
