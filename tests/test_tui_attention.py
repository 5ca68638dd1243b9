"""The Attention tab on a real ingest (tiny:qwen2.5-vl with --attention): FastV's lines, the layer x kv head
heatmap, the drill-down numbers of the cell under the cursor (against plain SQL over the same store) and,
on Enter, that kv head's scatter (against the stored keys sliced by hand and projected with numpy's SVD)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_tui_support import SMALL, make_app, screen_text, settle, sync

from ingest.run import ingest
from keygap_tui.analysis.cli import main as analysis_main
from keygap_tui.app.formatting import fmt_number
from keygap_tui.app.matrix import LOGIT_COLUMNS
from keygap_tui.app.widgets.head_heatmap import HeadHeatmap
from keygap_tui.app.widgets.plot_view import PlotView
from keygap_tui.app.widgets.scatter_pane import ScatterPane
from store.reader import KeyStore
from store.sql import query_store

MODEL = "tiny-qwen2.5-vl"


@pytest.fixture(scope="module")
def attention_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tui-attention") / "store"
    ingest("tiny:qwen2.5-vl", "sample", str(root), layers="all", queries="text", attention=True, limit=4,
           progress=False)
    return root


def _image_mass(store, layer: int, kv: int) -> float:
    t = query_store(str(store), f"""
        SELECT avg(mass) AS mass FROM (
          SELECT sample_id, head, sum(mass) AS mass FROM attention
          WHERE layer = {layer} AND head // 2 = {kv} AND query = 'last' AND modality = 'image' AND "group" <> 'sink'
          GROUP BY ALL)""")
    return t.column("mass").to_pylist()[0]


@pytest.mark.slow
@sync
async def test_attention_tab_heatmap_and_drill_down(attention_store, tmp_path):
    app = make_app(attention_store, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f6")
        await pilot.press("r")
        await settle(app, pilot)
        heatmap = app.query_one(HeadHeatmap)
        assert heatmap.layer_ids == [0, 1, 2, 3] and heatmap.head_ids == [0, 1]
        assert app.query_one("#attention-plot", PlotView)._text is not None
        heatmap.focus()
        await pilot.press("down", "down", "right")  # layer 2, kv head 1
        await settle(app, pilot)
        assert heatmap.picked() == (2, 1)
        detail = str(app.query_one("#attention-detail").render())
        want = fmt_number(_image_mass(attention_store, 2, 1), 3)
        assert "L2 kv head 1: key gap" in detail and f"image attention {want} / tokens" in detail
        assert "heads shuffled per layer" in detail
        await pilot.press("f6")
        app.query_one("#attention-quantity").action_cycle(1)  # key gap
        await settle(app, pilot)
        assert heatmap.raw_rows[2]["h1"] == pytest.approx(app.query_one("AttentionPane").result.matrix.key_gap[2, 1])
        text = screen_text(app)
        assert "Attention F6" in text and "heatmap" in text


@sync
async def test_attention_tab_without_attention_rows_says_what_to_do(tmp_path):
    from test_tui_support import make_store

    app = make_app(make_store(tmp_path / "store"), tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f6", "r")
        await settle(app, pilot)
        assert app.status.message == ("attention of m over layers and heads: no attention rows for model=m, "
                                      "benchmark=b: ingest with --attention")


def _head_keys(store, layer: int, head: int, n: int):
    """The stored image and text keys of ``layer`` (the scatter's seeded draw of ``n`` per side), cut to kv head
    ``head`` by hand with head_dim read from the run manifest file, centred in float64; and their sample ids."""
    (manifest,) = (store / "runs").glob("*.json")
    head_dim = json.loads(manifest.read_text())["head_dim"]
    ks = KeyStore(str(store))
    sides = [ks.load(MODEL, "sample", layer, modality, rope="post", n=n, seed=0) for modality in ("image", "text")]
    assert all(s.x.shape[1] == 2 * head_dim for s in sides)  # two kv heads, concatenated
    image, text = (s.x[:, head * head_dim:(head + 1) * head_dim].astype(np.float64) for s in sides)
    x = np.vstack([image, text])
    return x - x.mean(axis=0), [str(v) for s in sides for v in s.sample_id], (image, text)


def _assert_pca_of(coords: np.ndarray, x: np.ndarray) -> None:
    """``coords`` are the first two principal components of ``x``: an exact linear map of x onto two orthonormal
    axes, which span numpy's SVD top-2 subspace (the app's randomized PCA approximates each axis to within
    ~0.5 % here, so the points are compared to the SVD's within 2 % of their range, up to each axis' sign)."""
    coords = coords.astype(np.float64)
    w, *_ = np.linalg.lstsq(x, coords, rcond=None)
    scale = np.abs(coords).max()
    assert np.abs(x @ w - coords).max() < 1e-4 * scale  # a projection of exactly these columns
    np.testing.assert_allclose(w.T @ w, np.eye(2), atol=1e-3)
    u, sv, vt = np.linalg.svd(x, full_matrices=False)
    assert np.linalg.svd(vt[:2] @ w, compute_uv=False).min() > 0.99
    want = u[:, :2] * sv[:2]
    for k in range(2):
        np.testing.assert_allclose(coords[:, k] * np.sign(coords[:, k] @ want[:, k]), want[:, k], atol=0.02 * scale)


def _fits(coords: np.ndarray, x: np.ndarray) -> float:
    """Largest residual of the best linear map x -> coords, relative to the points' range."""
    w, *_ = np.linalg.lstsq(x, coords.astype(np.float64), rcond=None)
    return float(np.abs(x @ w - coords).max() / np.abs(coords).max())


@pytest.mark.slow
@sync
async def test_enter_on_a_heatmap_cell_draws_that_kv_heads_scatter(attention_store, tmp_path):
    app = make_app(attention_store, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("f6", "r")
        await settle(app, pilot)
        heatmap = app.query_one(HeadHeatmap)
        heatmap.focus()
        await pilot.press("down", "down", "right", "enter")  # layer 2, kv head 1
        await settle(app, pilot)
        assert app.current_tab == "scatter" and app.selection.layer == 2
        pane = app.query_one(ScatterPane)
        first = pane.result
        assert first.head == 1 and first.selection.layer == 2
        x1, samples, (image_keys, text_keys) = _head_keys(attention_store, 2, 1, SMALL.scatter_points)
        assert len(first.data.coords) == len(x1) > 20
        assert [r["sample_id"] for r in first.rows] == samples and {r["head"] for r in first.rows} == {1}
        _assert_pca_of(first.data.coords, x1)
        assert "kv head 1" in first.data.title
        text = screen_text(app)
        assert "kv head 1 of layer 2  key gap" in text and "⌫: back" in text
        gap = app.query_one("AttentionPane").result.matrix.key_gap[2, 1]
        assert f"key gap {fmt_number(gap)}" in text
        await pilot.press("n")  # nearest text tokens to the image centroid, in this head's columns
        await settle(app, pilot)
        dist = np.sqrt(((text_keys - image_keys.mean(axis=0)) ** 2).sum(axis=1))
        assert [r["distance"] for r in pane.nearest_rows[:3]] == pytest.approx(np.sort(dist)[:3], rel=1e-5)

        await pilot.press("backspace")  # back to the heatmap, its cursor where it was
        await settle(app, pilot)
        assert app.current_tab == "attention" and app.focused is heatmap and heatmap.picked() == (2, 1)
        await pilot.press("left", "enter")  # kv head 0 of the same layer
        await settle(app, pilot)
        other = pane.result
        assert other.head == 0 and app.current_tab == "scatter"
        x0, _, _ = _head_keys(attention_store, 2, 0, SMALL.scatter_points)
        _assert_pca_of(other.data.coords, x0)
        assert _fits(other.data.coords, x1) > 0.05 and _fits(first.data.coords, x0) > 0.05  # not the other head's
        assert "kv head 0 of layer 2" in screen_text(app)

        await pilot.press("r")  # r redraws the picker's slice: whole keys again, the head line goes
        await settle(app, pilot)
        assert pane.result.head is None and "kv head" not in screen_text(app)


@pytest.mark.parametrize("keys", [("down", "right"), ("down", "down", "right", "enter")], ids=["tab", "head"])
@pytest.mark.slow
def test_attention_snapshot(snap_compare, attention_store, tmp_path, monkeypatch, keys):
    """The Attention tab at 80x24 with the cursor on a cell; and Enter's drill-down: the head's line (which head,
    its numbers, the way back) above its scatter."""
    shutil.copytree(attention_store, tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    app = make_app("store", tmp_path, show_timings=False)

    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("f6", "r")
        await settle(pilot.app, pilot)
        pilot.app.query_one(HeadHeatmap).focus()
        await pilot.press(*keys)
        await settle(pilot.app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def _logit_cells(app) -> dict[str, str]:
    """The logit columns of the matrix's only row, as the table shows them."""
    from keygap_tui.app.widgets.matrix_table import MatrixTable

    table = app.query_one(MatrixTable)
    (row,) = table.matrix.ordered()
    labels = [c.label for c in table._columns]
    cells = table.get_row_at(0)
    return {label: str(cells[labels.index(label)]) for label in LOGIT_COLUMNS} | {"_key": row.key}


@pytest.mark.slow
@sync
async def test_matrix_logits_equal_keygap_compare(attention_store, tmp_path, capsys):
    """L puts this slice's logit decomposition in the matrix; its numbers are `keygap compare --metrics logits`'s,
    recomputed by the CLI without the cache the TUI filled."""
    app = make_app(attention_store, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "L")
        await settle(app, pilot)
        shown = _logit_cells(app)
        row = app.query_one("MatrixTable").matrix.rows[shown.pop("_key")]
        assert row.layer == 2 and row.measures == {} and row.controls == {}
    code = analysis_main(["--store", str(attention_store), "compare", "--model", MODEL, "--layer", "2",
                          "--metrics", "logits", "--n", str(SMALL.n), "--seed", str(SMALL.seed), "--json",
                          "--no-cache"])
    assert code == 0
    (cli,) = json.loads(capsys.readouterr().out)
    assert cli["extra"]["n_queries"] > 10 and cli["n_a"] > 0
    want = {"logit gap": cli["value"], "logit centroid": cli["extra"]["centroid"],
            "logit remainder": cli["extra"]["remainder"], "logit share": cli["extra"]["share_explained"]}
    assert shown == {label: fmt_number(v) for label, v in want.items()}
    assert row.logits["value"] == pytest.approx(cli["value"], rel=1e-12)
    assert row.logits["extra"]["centroid"] == pytest.approx(cli["extra"]["centroid"], rel=1e-12)
    assert row.logits["extra"]["remainder"] == pytest.approx(cli["extra"]["remainder"], rel=1e-12, abs=1e-15)
    assert row.logits["extra"]["share_explained"] == pytest.approx(cli["extra"]["share_explained"], rel=1e-12)


@pytest.mark.slow
@sync
async def test_matrix_logits_without_queries_say_so_in_the_cell_and_status(tmp_path):
    """A store ingested without --queries: with logits among the configured metrics, c still measures the slice,
    the logit cell reads 'no queries' and the status line says what to do, in one line."""
    from dataclasses import replace

    root = tmp_path / "store"
    ingest("tiny:llava", "sample", str(root), layers="1", limit=4, progress=False)
    app = make_app(root, tmp_path, settings=replace(SMALL, metrics=("mmd", "logits")))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        shown = _logit_cells(app)
        row = app.query_one("MatrixTable").matrix.rows[shown.pop("_key")]
        assert shown == {"logit gap": "no queries", "logit centroid": "-", "logit remainder": "-", "logit share": "-"}
        assert row.measures["mmd"]["value"] > 0 and "mmd" in row.controls
        message = app.status.message
        assert message.startswith("logits of tiny-llava L1: no queries for ") and "ingest with --queries" in message
        assert "\n" not in message and "Traceback" not in message
