"""Research task 4 through Pilot: two models at the same relative depth, side by side; pre vs post RoPE;
controls per layer labelled after the actual sides; a plot whose slice left the picker is marked stale."""

from __future__ import annotations

import pytest
from store_helpers import write_synthetic_store
from test_tui_support import make_app, screen_text, settle, sync

from keygap_tui.app.widgets.matrix_table import MatrixTable


@pytest.fixture(scope="module")
def two_depths(tmp_path_factory):
    root = tmp_path_factory.mktemp("sbs") / "store"
    write_synthetic_store(root, model="m", benchmark="b", layers=(0, 1, 2, 3), samples=12, tokens=6, dim=8, shift=0.8,
                          run_id="r1", ropes=("post", "pre"), text_segments=("question", "options"))
    write_synthetic_store(root, model="n", benchmark="b", layers=(0, 1, 2, 3, 4, 5, 6), samples=12, tokens=6, dim=8,
                          shift=0.4, run_id="r2", seed=1)
    return root


@pytest.mark.slow
@sync
async def test_task4_two_models_at_the_same_relative_depth_side_by_side(two_depths, tmp_path):
    app = make_app(two_depths, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "c")  # m: 4 layers, middle = 2 (relative depth 2/3)
        await settle(app, pilot)
        await pilot.press("f2", "r")
        await settle(app, pilot)
        pane = app.query_one("#scatter-pane")
        await pilot.press("b")  # pin the slice: plot on the left, its matrix row on top
        assert pane.pinned is not None and pane.pinned.selection.model == "m"
        assert app.query_one(MatrixTable).matrix.rows[("m", "b", 2, "post", "image", "text")].pinned
        await pilot.press("M")  # next model: n, 7 layers; the layer keeps the relative depth 2/3 -> 4
        assert app.focused is app.query_one("#scatter-plot")  # without leaving the plot
        assert (app.selection.model, app.selection.layer) == ("n", 4)
        assert "depth 0.67" in screen_text(app)
        assert "STALE" in screen_text(app)  # the drawn scatter is m's, the picker now says n
        await pilot.press("r", "c")
        await settle(app, pilot)
        assert pane.result.selection.model == "n" and "STALE" not in screen_text(app)
        assert pane.pinned.data.title.startswith("PCA m / b / L2 / post-RoPE")
        assert pane.result.data.title.startswith("PCA n / b / L4 / post-RoPE")
        rows = app.query_one(MatrixTable).matrix.ordered()
        assert [(r.model, r.layer) for r in rows][:2] == [("m", 2), ("n", 4)]  # the pinned row first
        await pilot.press("b")
        assert pane.pinned is None


@pytest.mark.slow
@sync
async def test_rope_choice_and_controls_labelled_after_the_sides(two_depths, tmp_path):
    app = make_app(two_depths, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("R")
        assert app.selection.rope == "pre"
        # both sides text: question tokens against options tokens
        app.query_one("#a_modality").focus()
        await pilot.press("l")
        app.query_one("#a_segment").focus()
        while app.selection.a_segment != "question":
            await pilot.press("l")
        app.query_one("#b_segment").focus()
        while app.selection.b_segment != "options":
            await pilot.press("l")
        await pilot.press("f3", "r")
        await settle(app, pilot)
        result = app.query_one("#controls-pane").result
        assert result.labels == {"image-vs-text": "A-B", "image-vs-image": "A-A", "text-vs-text": "B-B"}
        assert result.layers == [1, 2, 3] and {r["rope"] for r in result.rows} == {"pre"}
        text = screen_text(app)
        assert "A = text:question, B = text:options, pre-RoPE" in text
        table = app.query_one("#controls-table")
        assert [c.label.plain for c in table.columns.values()] == ["measure", "L", "A-B", "A-A", "B-B", "ratio"]
        assert [(r["metric"], r["layer"]) for r in result.table][:3] == [("mmd", 1), ("mmd", 2), ("mmd", 3)]
