"""Textbook float64 versions of the statistics, written from their formulas with scipy, for the tests to
compare keygap's engines against (independent of keygap's code paths)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, jensenshannon


def naive_mmd2(x, y, sigma_sq, estimator="unbiased", scales=(1.0,)):
    """O(n^2) MMD^2 in float64 from full scipy distance matrices."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)

    def k(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return np.mean([np.exp(-d2 / (2.0 * sigma_sq * s * s)) for s in scales], axis=0)

    kxx, kyy, kxy = k(x, x), k(y, y), k(y, x).T
    n, m = len(x), len(y)
    if estimator == "unbiased":
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2.0 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()


def naive_energy(x, y):
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic), float64."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()


def naive_centroid(x, y):
    return float(np.linalg.norm(np.asarray(x, np.float64).mean(0) - np.asarray(y, np.float64).mean(0)))


def naive_js_of_codes(codes_a, codes_b, bins, eps=1e-10):
    """Squared scipy Jensen-Shannon distance (base 2) of two histograms of bin codes, eps as keygap adds it."""
    ha = np.bincount(codes_a, minlength=bins) / len(codes_a) + eps
    hb = np.bincount(codes_b, minlength=bins) / len(codes_b) + eps
    return jensenshannon(ha, hb, base=2) ** 2
