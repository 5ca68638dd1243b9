"""Joint projections of store slices: PCA against numpy's SVD, seeded t-SNE, shared axes, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from store_helpers import write_synthetic_store

from keygap_tui.analysis import AnalysisError, Cancelled, Side, project, project_arrays
from store.reader import KeyStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj") / "store"
    write_synthetic_store(root, layers=(1,), samples=12, tokens=10, dim=24, shift=3.0, seed=4)
    write_synthetic_store(root, model="other", layers=(1,), samples=4, tokens=4, dim=8, seed=5, run_id="r2")
    return root


SIDES = [Side("m", "b", 1, "image"), Side("m", "b", 1, "text")]


def test_pca_projection_matches_numpy_svd(store):
    proj = project(store, SIDES, method="pca", n=80, seed=0)
    ks = KeyStore(str(store))
    x = np.vstack([ks.load("m", "b", 1, m, n=80, seed=0).x for m in ("image", "text")]).astype(np.float64)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    pc1 = centred @ vt[0]
    # The first component (the image/text shift) is well separated: randomized PCA must find it.
    assert abs(np.corrcoef(pc1, proj.coords[:, 0])[0, 1]) > 0.999
    assert proj.coords.shape == (160, 2) and proj.labels == ["image", "text"]
    assert np.bincount(proj.slice_index).tolist() == [80, 80]
    assert proj.params["method"] == "pca" and proj.params["n_per_slice"] == 80


def test_tsne_is_seeded_and_keeps_the_slices_apart(store):
    kw = dict(method="tsne", n=100, seed=7, iterations=(50, 50))
    first = project(store, SIDES, use_cache=False, **kw)
    again = project(store, SIDES, use_cache=False, **kw)
    np.testing.assert_array_equal(first.coords, again.coords)
    labels = first.slice_index
    knn = KNeighborsClassifier(5).fit(first.coords, labels)
    assert knn.score(first.coords, labels) > 0.95  # a 3-sigma shift stays visible in 2-D
    assert first.params["tsne"]["library"] == "openTSNE" and set(first.seconds) >= {"load", "pca", "tsne"}
    assert first.point_labels()[0] == "image" and first.sample_id.shape == (200,)


def test_projection_reports_progress_and_cancels():
    x = np.random.default_rng(0).normal(size=(150, 6)).astype(np.float32)
    seen = []
    project_arrays([x[:75], x[75:]], iterations=(25, 25), progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 4
    calls = []

    def stop_in_tsne():
        calls.append(1)
        return len(calls) > 3  # let PCA finish, stop inside the t-SNE iterations

    with pytest.raises(Cancelled):
        project_arrays([x], iterations=(50, 50), should_stop=stop_in_tsne, progress=lambda f, m: None)


def test_projection_errors_are_one_line(store):
    with pytest.raises(AnalysisError, match="different key widths"):
        project(store, [SIDES[0], Side("other", "b", 1, "text")], method="pca", n=10)
    with pytest.raises(AnalysisError, match="unknown projection method"):
        project(store, SIDES, method="umap", n=10)
    with pytest.raises(AnalysisError, match="nothing to project"):
        project(store, [], n=10)
