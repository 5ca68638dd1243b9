"""`keygap ingest --devices a,b,...`: one shard process per device into the same store, one progress bar.

Each child is the ordinary `keygap ingest ... --shard i/N --device d`, so a node run is exactly N shard
runs: the same resume (rerun the same command), the same files, the same store as N hand-started shards.
Children run in their own process sessions so that the terminal's Ctrl-C reaches this parent only; it
forwards one SIGINT to each child, which stops cleanly and keeps what it committed. A child that fails is
reported in one line; the others finish their work. Children report progress as JSON lines on a pipe
(KEYGAP_PROGRESS_FD, see progress.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

#: options of the parent that the launcher sets per child or handles itself
_NOT_FORWARDED = {"devices", "ray", "shards", "shard", "device", "no_progress", "help", "func", "command"}


@dataclass
class ShardProgress:
    """What one shard reported: its pending samples, how many are done, keys written, whether it runs."""

    total: int | None = None
    done: int = 0
    keys: int = 0
    running: bool = True

    def apply(self, event: dict) -> None:
        if "total" in event:
            self.total = int(event["total"])
        self.done += int(event.get("samples", 0))
        self.keys += int(event.get("keys", 0))


@dataclass(kw_only=True)
class _Child(ShardProgress):
    index: int
    device: str
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


def child_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The parent's ingest options as a command line, minus what the launcher sets for each child."""
    out: list[str] = []
    for action in parser._actions:
        if action.dest in _NOT_FORWARDED or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                out.append(flag)
        elif isinstance(action, argparse._StoreFalseAction):
            if not value:
                out.append(flag)
        elif value is not None:
            out += [flag, str(value)]
    return out


def run_on_devices(argv: list[str], devices: list[str], *, progress: bool) -> int:
    """Run one `keygap ingest` shard per device; 0 when all finished, 130 after Ctrl-C, 2 if any failed."""
    n = len(devices)
    children: list[_Child] = []
    readers: list[threading.Thread] = []
    for i, device in enumerate(devices):
        r, w = os.pipe()
        cmd = [sys.executable, "-m", "keygap_tui.cli", "ingest", *argv, "--shard", f"{i}/{n}",
               "--device", device, "--no-progress"]
        env = dict(os.environ, KEYGAP_PROGRESS_FD=str(w), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, env=env, pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, preexec_fn=_stop_with_parent)
        os.close(w)
        child = _Child(index=i, device=device, proc=proc)
        children.append(child)
        readers += [
            threading.Thread(target=_read_progress, args=(child, r), daemon=True),
            threading.Thread(target=_read_lines, args=(proc.stdout, child.stdout), daemon=True),
            threading.Thread(target=_read_lines, args=(proc.stderr, child.stderr), daemon=True),
        ]
    for t in readers:
        t.start()
    bar = ShardBar(progress, n)
    interrupted = False
    try:
        while any(c.proc.poll() is None for c in children):
            for c in children:
                c.running = c.proc.poll() is None
            bar.show(children)
            time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        for c in children:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGINT)
        print(f"stopping {sum(c.proc.poll() is None for c in children)} shard(s) cleanly ...", file=sys.stderr)
        for c in children:
            _wait(c.proc)
    for t in readers:
        t.join(timeout=5)
    for c in children:
        c.running = False
    bar.show(children)
    bar.stop()
    failed = 0
    for c in children:
        code = c.proc.returncode
        name = f"shard {c.index}/{n} ({c.device})"
        if code in (0, 130):
            print(f"{name}: {c.stdout[0] if c.stdout else 'no summary'}")
        else:
            failed += 1
            last = next((line for line in reversed(c.stderr) if line.strip()), f"exit code {code}")
            print(f"{name} failed: {last}", file=sys.stderr)
    return shards_outcome(n, failed, interrupted or any(c.proc.returncode == 130 for c in children))


def shards_outcome(n: int, failed: int, interrupted: bool) -> int:
    """The exit code of an ingest run as n shards (130 interrupted, 2 some failed), said on stderr."""
    if interrupted:
        print("interrupted: what was finished is kept; run the same command to resume", file=sys.stderr)
        return 130
    if failed:
        print(f"{failed} of {n} shards failed; the others' work is kept: run the same command to resume",
              file=sys.stderr)
        return 2
    return 0


def _stop_with_parent() -> None:
    """In the child, before exec: get SIGINT if the launcher dies, so no shard runs on unwatched (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait(proc: subprocess.Popen) -> None:
    """Wait for a child stopping after SIGINT; a second Ctrl-C kills it (its committed work is kept)."""
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()


def _read_progress(child: _Child, fd: int) -> None:
    with os.fdopen(fd, "r") as f:
        for line in f:
            try:
                child.apply(json.loads(line))
            except (ValueError, TypeError):
                continue


def _read_lines(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))


class ShardBar:
    """One bar over all shards: samples done of the sum of the shards' pending samples."""

    def __init__(self, enabled: bool, n: int):
        self._bar = None
        self.t0 = time.time()
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(f"ingest ({n} shards)"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._task = self._bar.add_task("ingest", total=None, rate="")
            self._bar.start()

    def show(self, shards: Sequence[ShardProgress]) -> None:
        if self._bar is None:
            return
        totals = [s.total for s in shards]
        total = sum(t for t in totals if t is not None) if all(t is not None for t in totals) else None
        done = sum(s.done for s in shards)
        dt = max(time.time() - self.t0, 1e-9)
        running = sum(s.running for s in shards)
        rate = f"{done / dt:.2f} samples/s  {sum(s.keys for s in shards) / dt:,.0f} keys/s  {running} running"
        self._bar.update(self._task, total=total, completed=done, rate=rate)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
