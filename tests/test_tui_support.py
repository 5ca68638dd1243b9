"""Shared pieces of the TUI tests (no tests here): a small real store and an app wired to temp folders."""

from __future__ import annotations

import io
from pathlib import Path

from store_helpers import write_synthetic_store

from keygap_tui.app.app import KeygapApp
from keygap_tui.app.config import AnalysisSettings, Config

# Tiny on purpose: Pilot key presses wait for idle, so every computation here must take well under a second.
SMALL = AnalysisSettings(metrics=("mmd", "js"), n=60, permutations=19, replicates=2, seed=0, scatter_points=60)


def make_store(
    root: Path, layers=(0, 1, 2, 3), samples=12, tokens=6, dim=8, shift=0.8, model="m", benchmark="b"
) -> Path:
    write_synthetic_store(root, model=model, benchmark=benchmark, layers=layers, samples=samples, tokens=tokens,
                          dim=dim, shift=shift)
    return root


def make_app(
    store: Path | str, tmp: Path, settings: AnalysisSettings = SMALL, keys: dict | None = None, **kwargs
) -> KeygapApp:
    config = Config(export_dir=str(tmp / "exports"), keys=dict(keys or {}), path=tmp / "tui.toml")
    return KeygapApp(str(store), config=config, state_path=tmp / "state.json", settings=settings, **kwargs)


async def settle(app, pilot) -> None:
    """Let every worker finish (plot drawing starts more workers when results arrive), then repaint."""
    from textual.worker import WorkerCancelled, WorkerFailed

    for _ in range(4):
        try:
            await app.workers.wait_for_complete()
        except (WorkerFailed, WorkerCancelled):
            pass  # the app shows these; the tests check what it shows
        await pilot.pause()


def sync(test):
    """Run an async test with asyncio.run (the project has no pytest-asyncio; one event loop per test)."""
    import asyncio
    import functools

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def screen_text(app) -> str:
    """The screen as plain text, the way a user reads it."""
    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens, simplify=True))
    return console.export_text()
