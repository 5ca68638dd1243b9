"""The five research tasks a user brings to the explorer, each driven end to end through Pilot.

1. At which layer is the gap largest, per model?        -> C fills the matrix, the argmax is highlighted
2. Is it larger than the image-vs-image control?         -> the matrix's control columns and ratio
3. Which text tokens sit closest to the image cluster?   -> (token inspection, test_tui_tokens.py)
4. Two models at the same relative depth                 -> (side by side, test_tui_side_by_side.py)
5. Which prompt segment is farthest from the image keys? -> S sweeps the segments, sorted by corrected JS
Numbers are checked against keygap_tui.analysis called directly (an independent path from the widgets).
"""

from __future__ import annotations

import pytest
from store_helpers import write_synthetic_store
from test_tui_support import SMALL, make_app, screen_text, settle, sync

from keygap_tui.analysis import Side, compare, controls
from keygap_tui.app.widgets.matrix_table import MatrixTable


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks") / "store"
    write_synthetic_store(root, model="m", benchmark="b", layers=(0, 1, 2, 3), samples=12, tokens=6, dim=8, shift=0.8,
                          run_id="r1", text_segments=("system", "question", "options"))
    write_synthetic_store(root, model="n", benchmark="b", layers=(0, 1, 2), samples=12, tokens=6, dim=8, shift=0.4,
                          run_id="r2", seed=1, text_segments=("system", "question", "options"))
    return root


@pytest.mark.slow
@sync
async def test_task1_and_2_matrix_over_every_layer_with_controls(two_models, tmp_path):
    app = make_app(two_models, tmp_path)
    async with app.run_test(size=(200, 40)) as pilot:  # wide enough for every column, the CI columns included
        await settle(app, pilot)
        await pilot.press("C")
        await settle(app, pilot)
        m = app.query_one(MatrixTable).matrix
        assert sorted((r.model, r.layer) for r in m.rows.values()) == [("m", 0), ("m", 1), ("m", 2), ("m", 3),
                                                                       ("n", 0), ("n", 1), ("n", 2)]
        # task 1: the highlighted cell of each model's MMD column is its largest MMD, computed independently
        for model, layers in (("m", (0, 1, 2, 3)), ("n", (0, 1, 2))):
            values = {layer: compare(str(two_models), Side(model, "b", layer, "image"), Side(model, "b", layer, "text"),
                                     ["mmd"], SMALL.n, SMALL.seed, permutations=SMALL.permutations)[0].result.value
                      for layer in layers}
            best = max(values, key=values.get)
            assert ((model, "b", best, "post", "image", "text"), "mmd") in m.argmax()
        # task 2: every row has its control groups; the I-I column is analysis.controls' mean over replicates
        ctl = controls(str(two_models), "m", "b", 2, ["mmd"], SMALL.n, SMALL.seed, replicates=SMALL.replicates)
        ivi = sum(r.result.value for r in ctl if r.group == "image-vs-image") / SMALL.replicates
        cols = {c.label: c for c in m.columns()}
        assert m.value(m.rows[("m", "b", 2, "post", "image", "text")], cols["mmd I-I"]) == pytest.approx(ivi)
        text = screen_text(app)
        assert "mmd I-I" in text and "mmd ratio" in text and "≤0.05" in text  # p at its floor 1/(19+1), marked
        assert "mmd CI" in text and "js CI" in text  # the bootstrap intervals of the default ci = 0.95
        # a picker change never clears the matrix; Enter on a row brings the picker to that slice
        await pilot.press("3")
        assert len(m.rows) == 7
        table = app.query_one(MatrixTable)
        table.focus()
        table.move_cursor(row=5)
        await pilot.press("enter")
        await pilot.pause()
        assert (app.selection.model, app.selection.layer) == (table.current_row().model, table.current_row().layer)


@sync
async def test_task5_segment_sweep_sorted_by_corrected_js(two_models, tmp_path):
    app = make_app(two_models, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("S")
        await settle(app, pilot)
        m = app.query_one(MatrixTable).matrix
        assert sorted(r.b for r in m.rows.values()) == ["text:options", "text:question", "text:system"]
        table = app.query_one(MatrixTable)
        table.focus()
        js_col = [i for i, c in enumerate(m.columns()) if c.label == "js bc"][0]
        table.move_cursor(column=js_col)
        await pilot.press("s")  # sort by the corrected JS, largest first
        first = m.ordered()[0]
        direct = {seg: compare(str(two_models), Side("m", "b", 1, "image"), Side("m", "b", 1, "text", (seg,)), ["js"],
                               SMALL.n, SMALL.seed, permutations=SMALL.permutations)[0].result.extra["bias_corrected"]
                  for seg in ("system", "question", "options")}
        assert first.b == f"text:{max(direct, key=direct.get)}"
        assert "js bc▼" in screen_text(app)
