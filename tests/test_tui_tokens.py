"""Research task 3 through Pilot: which text tokens sit closest to the image cluster?

Scatter, move the cursor to a point (its sample, position, segment and token text show), list the text
tokens nearest to the image centroid and to the point, and export what the scatter shows. Distances are
checked against numpy on the reader's own keys."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from test_tui_support import SMALL, make_app, make_store, screen_text, settle, sync

from store.reader import KeyStore


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


@pytest.mark.slow
@sync
async def test_task3_nearest_text_tokens_with_their_text(store, tmp_path):
    app = make_app(store, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("f2", "r")
        await settle(app, pilot)
        pane = app.query_one("#scatter-pane")
        plot = app.query_one("#scatter-plot")
        assert app.focused is plot  # the tab hands focus to the plot, so the cursor keys reach it
        first = pane.selected_row()
        await pilot.press("l", "l", "l", "k", "k")
        moved = pane.selected_row()
        assert moved is not None and set(moved) >= {"sample_id", "position", "segment", "token_id", "token_text"}
        assert moved["token_text"] == f"w{moved['token_id']}"
        text = screen_text(app)
        assert f"pos {moved['position']}" in text and repr(moved["token_text"]) in text
        assert first is not None and pane.result.data.title == "PCA m / b / L1 / post-RoPE: A image vs B text"
        await pilot.press("n")
        await settle(app, pilot)
        got = pane.nearest_rows
        ks = KeyStore(str(store))
        a = ks.load("m", "b", 1, "image", n=SMALL.scatter_points, seed=SMALL.seed)
        b = ks.load("m", "b", 1, "text", n=SMALL.scatter_points, seed=SMALL.seed)
        d = np.linalg.norm(b.x.astype(np.float64) - a.x.astype(np.float64).mean(axis=0), axis=1)
        want = np.argsort(d, kind="stable")[:len(got)]
        assert [r["distance"] for r in got] == pytest.approx(d[want].tolist())
        expected = [(str(b.sample_id[j]), int(b.position[j])) for j in want]
        assert [(r["sample_id"], r["position"]) for r in got] == expected
        assert all(r["token_text"] == f"w{r['token_id']}" for r in got)
        assert repr(got[0]["token_text"]) in screen_text(app)
        # to this point: the text tokens nearest to the selected point's key (never the point itself)
        await pilot.press("N")
        await settle(app, pilot)
        to_point = pane.nearest_rows
        assert to_point[0]["to"] == "the selected point" and to_point != got
        # exports: every point with slice, layer, method, position, token id and text
        await pilot.press("e")
        await settle(app, pilot)
        rows = list(csv.DictReader((tmp_path / "exports" / "scatter-001.csv").open()))
        assert len(rows) == 120
        assert set(rows[0]) >= {"model", "benchmark", "layer", "rope", "method", "side", "sample_id", "position",
                                "token_id", "token_text"}
        assert rows[0]["method"] == "pca" and rows[0]["token_text"] == f"w{rows[0]['token_id']}"
        # the list itself, when focused
        app.query_one("#scatter-nearest").focus()
        await pilot.press("e")
        await settle(app, pilot)
        listed = list(csv.DictReader((tmp_path / "exports" / "scatter-002.csv").open()))
        assert [r["token_text"] for r in listed] == [r["token_text"] for r in to_point]
