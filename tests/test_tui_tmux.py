"""The real `keygap tui` in a real terminal (tmux): start it, send keys, read the screen, quit.

Skipped with a reason when tmux is missing (the project machines ship it; apt-get install tmux). Waits poll
the screen with a generous deadline; nothing here asserts how long anything took.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from test_tui_support import make_store

TMUX = shutil.which("tmux")
pytestmark = [
    pytest.mark.skipif(TMUX is None,
                       reason="tmux is not installed (apt-get install tmux); the project machines ship it"),
    pytest.mark.slow,
]


def _tmux(*args: str, check: bool = True) -> str:
    return subprocess.run([TMUX, "-L", SOCKET, *args], capture_output=True, text=True, check=check).stdout


SOCKET = f"keygap-test-{uuid.uuid4().hex[:8]}"


def _screen() -> str:
    return _tmux("capture-pane", "-p", "-t", "tui", check=False)


def _wait_for(text: str, deadline_s: float = 60.0) -> str:
    end = time.monotonic() + deadline_s
    screen = ""
    while time.monotonic() < end:
        screen = _screen()
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


def _wait_until_gone(text: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while text in _screen():
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} stayed on screen:\n{_screen()}")
        time.sleep(0.2)


def test_keygap_tui_in_tmux(tmp_path):
    store = make_store(tmp_path / "store")
    config = tmp_path / "config" / "keygap"
    config.mkdir(parents=True)
    (config / "tui.toml").write_text("[analysis]\nn = 60\npermutations = 19\nreplicates = 2\nscatter_points = 60\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               KEYGAP_STORE=str(store), TERM="xterm-256color")
    env.pop("TMUX", None)
    command = f"cd {tmp_path} && {sys.executable} -m keygap_tui.cli tui"
    _tmux("-f", "/dev/null", "new-session", "-d", "-s", "tui", "-x", "100", "-y", "30",
          "-e", f"XDG_CONFIG_HOME={env['XDG_CONFIG_HOME']}", "-e", f"XDG_STATE_HOME={env['XDG_STATE_HOME']}",
          "-e", f"KEYGAP_STORE={store}", command)
    try:
        _tmux("set", "-s", "set-clipboard", "on")
        _wait_for("model(s)")
        _tmux("send-keys", "-t", "tui", "c")
        screen = _wait_for("≤0.05")  # the matrix row: MMD's p-value at its floor 1/(19+1)
        assert "mmd" in screen and "js bc" in screen
        _tmux("send-keys", "-t", "tui", "l", "y")  # the selected cell (layer "1") to the clipboard via OSC 52
        end = time.monotonic() + 20
        while _tmux("show-buffer", check=False).strip() != "1" and time.monotonic() < end:
            time.sleep(0.2)
        assert _tmux("show-buffer", check=False).strip() == "1"
        _tmux("send-keys", "-t", "tui", "F5")
        _tmux("send-keys", "-t", "tui", "C-r")
        screen = _wait_for("8 rows")
        assert "modality" in screen
        # focus rules: letters type into the editor (r does not run, q does not quit), F-keys and Esc leave it
        _tmux("send-keys", "-t", "tui", "End", " -- rcqT")
        _wait_for("-- rcqT")
        assert "8 rows" in _screen()  # r stayed text: no second run of the query, no new status
        for key, shown in (("F2", "t: switch PCA / t-SNE"), ("F3", "Controls"), ("F4", "Layers")):
            _tmux("send-keys", "-t", "tui", "F5")
            _wait_for("older query")  # the SQL tab's keys in the footer: back in the editor
            time.sleep(0.3)  # keys sent in one burst can merge into one escape sequence
            _tmux("send-keys", "-t", "tui", key)
            _wait_for(shown)
            _wait_until_gone("older query")  # the editor has let go of the focus: its footer keys left
        _tmux("send-keys", "-t", "tui", "F5")
        _wait_for("older query")
        time.sleep(0.3)
        _tmux("send-keys", "-t", "tui", "Escape")
        _wait_for("left the editor")
        time.sleep(0.3)
        _tmux("send-keys", "-t", "tui", "q")
        end = time.monotonic() + 20
        while "tui" in _tmux("list-sessions", check=False) and time.monotonic() < end:
            time.sleep(0.2)
        assert "tui" not in _tmux("list-sessions", check=False), _screen()
    finally:
        _tmux("kill-server", check=False)
    state = (tmp_path / "state" / "keygap" / "tui.json").read_text()
    assert '"tab": "sql"' in state
