"""The Attention tab on a real ingest (tiny:qwen2.5-vl with --attention): FastV's lines, the layer x kv head
heatmap, and the drill-down numbers of the cell under the cursor, against plain SQL over the same store."""
from __future__ import annotations

import shutil

import pytest
from test_tui_support import make_app, screen_text, settle, sync

from ingest.run import ingest
from keygap_tui.app.formatting import fmt_number
from keygap_tui.app.widgets.head_heatmap import HeadHeatmap
from keygap_tui.app.widgets.plot_view import PlotView
from store.sql import query_store


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


@pytest.mark.slow
def test_attention_tab_snapshot(snap_compare, attention_store, tmp_path, monkeypatch):
    shutil.copytree(attention_store, tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    app = make_app("store", tmp_path, show_timings=False)

    async def run_before(pilot):
        await settle(pilot.app, pilot)
        await pilot.press("f6", "r")
        await settle(pilot.app, pilot)
        pilot.app.query_one(HeadHeatmap).focus()
        await pilot.press("down", "right")
        await settle(pilot.app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
