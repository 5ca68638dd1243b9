"""Which store a command opens when none is named, and the demo's fast second start.

After `make demo`, plain `keygap` (and `keygap info`) must open the demo store, and say so; an ingest must
never fall back to a remembered store. A second `keygap demo` must find its finished runs from the
manifests alone (no torch import).
"""

from __future__ import annotations

import json
import subprocess
import sys

from test_tui_support import make_store

from keygap_tui.demo import DEMO_MODELS, finished_run
from store.store_option import DEFAULT_STORE, choose_store, remember_store


def test_remembered_store_is_opened_and_said_but_never_for_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("KEYGAP_STORE", raising=False)
    assert choose_store() == (DEFAULT_STORE, "")  # nothing remembered yet
    store = make_store(tmp_path / "demo-store")
    remember_store(str(store))
    path, note = choose_store()
    assert path == str(store) and "used last" in note and "--store" in note
    assert choose_store(reading=False) == (DEFAULT_STORE, "")  # ingest writes only where it was told
    (tmp_path / "keygap-store").mkdir()  # the plain default, when it exists, wins
    assert choose_store() == (DEFAULT_STORE, "")
    monkeypatch.setenv("KEYGAP_STORE", "/elsewhere")
    assert choose_store() == ("/elsewhere", "")


def test_keygap_info_after_demo_opens_the_demo_store(tmp_path):
    store = make_store(tmp_path / "demo-store")
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    code = f"from store.store_option import remember_store; remember_store({str(store)!r})"
    subprocess.run([sys.executable, "-c", code],
                   check=True, env=env, cwd=tmp_path)
    out = subprocess.run([sys.executable, "-m", "keygap_tui.cli", "info"], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "used last" in out.stderr and str(store) in out.stdout


def test_demo_second_start_reads_finished_runs_from_manifests(tmp_path):
    store = tmp_path / "demo"
    (store / "runs").mkdir(parents=True)
    assert finished_run(str(store), DEMO_MODELS[0], "sample") is None
    manifest = {"run_id": "r1", "status": "done", "samples_done": 23,
                "settings": {"model_id": DEMO_MODELS[0], "benchmark": "sample", "keys": ["pre", "post"]}}
    (store / "runs" / "r1.json").write_text(json.dumps(manifest))
    (store / "runs" / "r2.json").write_text(json.dumps(manifest | {"run_id": "r2", "status": "running"}))
    assert finished_run(str(store), DEMO_MODELS[0], "sample") == "r1"
    assert finished_run(str(store), DEMO_MODELS[1], "sample") is None  # the other model still needs its ingest
    (store / "runs" / "r1.json").write_text(json.dumps(manifest | {"status": "interrupted"}))
    assert finished_run(str(store), DEMO_MODELS[0], "sample") is None
