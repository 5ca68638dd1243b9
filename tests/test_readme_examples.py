"""The README's TUI config example and SQL examples work as written (parsed out of README.md itself)."""

from __future__ import annotations

import re
from pathlib import Path

from test_tui_support import make_app, make_store, settle, sync

from keygap_tui.app.config import load_config
from store.sql import query_store

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@sync
async def test_readme_config_example_loads_and_its_keys_work(tmp_path):
    (toml,) = [b for b in _blocks("toml") if "[keys]" in b]
    path = tmp_path / "tui.toml"
    path.write_text(toml.replace('"/tmp/keygap-export"', repr(str(tmp_path / "exports")).replace("'", '"')))
    cfg = load_config(path)
    assert cfg.problems == []
    store = make_store(tmp_path / "store")
    app = make_app(store, tmp_path, keys=cfg.keys, settings=cfg.analysis.__class__(
        metrics=cfg.analysis.metrics, n=60, permutations=19, replicates=2, scatter_points=60))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        measured = ("m", "b", 2, "post", "image", "text")
        checks = (("n", lambda: app.selection.layer == 2),
                  ("f9", lambda: len(app.query_one("#results").matrix.rows[measured].measures) == 3))
        for key, action_done in checks:
            await pilot.press(key)  # with the default focus, as a user who just started the app
            await settle(app, pilot)
            assert action_done(), key


def test_readme_sql_examples_run(tmp_path):
    from store_helpers import write_synthetic_store

    store = tmp_path / "store"
    write_synthetic_store(store, layers=(0, 1), samples=6, tokens=4, dim=8, ropes=("post", "pre"))
    (sql,) = [b for b in _blocks("sql") if "attention-sink" in b]
    statements = [s.strip() for s in sql.split(";")
                  if s.strip() and not all(line.startswith("--") for line in s.strip().splitlines())]
    assert len(statements) >= 4
    for statement in statements:
        query_store(str(store), statement)
    sinks = query_store(str(store), [s for s in statements if "attention-sink" in s][0])
    keys = list(zip(*(sinks.column(c).to_pylist() for c in ("model", "layer", "sample_id", "position"))))
    assert len(keys) == len(set(keys))  # no key listed twice (pre and post RoPE)
