"""One writer per (model, benchmark): a lock file in ``STORE/locks/`` that says who holds it.

Why: two processes writing the same partitions interleave (duplicate rows, one run's recovery deleting the
other's in-flight files, mixed settings). Every command that writes or rewrites the keys of a (model,
benchmark) takes this lock first: ``keygap ingest`` (one lock per shard) and compaction (the whole pair).

Protocol. A lock is a small JSON file created exclusively (``O_CREAT | O_EXCL`` on local and NFS file
systems, a conditional PUT on S3: store/lockfiles.py has the primitives of both) named
``<model>@<benchmark>.lock`` for the whole pair, or ``<model>@<benchmark>@<part>.lock`` for a part (an
ingest shard). After creating its file, a taker lists the pair's other lock files and backs off
if one of them conflicts; since every taker creates before it looks, two conflicting takers can never both
succeed. On a folder, taking is also serialised by an advisory ``flock`` on ``locks/.guard`` (held for
milliseconds, released by the kernel if the taker dies), so two takers starting together do not both back
off: exactly one wins. Two locks of one pair conflict unless both are parts with the same ``tag`` (the ingest's
settings, shard count and limit: the shards of one run).

Stale locks. A lock whose holder is gone is taken over, with a warning:
- same host: its pid is not running, or runs a process started at another time (a reused pid);
- another host: its holder has not refreshed the file's modification time for ``STALE_SECONDS`` (the
  holder touches it, or rewrites the object, every ``HEARTBEAT_SECONDS``; the age is measured against a
  file written now, so the clocks of the two hosts do not matter).
Breaking a stale lock is serialised by a ``.breaking`` guard file, so two takers cannot both break it and
then remove each other's fresh locks. A holder that finds its lock taken over (``verify``) stops writing.

No duckdb or textual (store/ must run on GPU servers without them).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import re
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError
from .lockfiles import LOCKS_DIR, LockFolder, lock_folder

#: how often a holder refreshes its lock file's modification time
HEARTBEAT_SECONDS = 30.0
#: a lock of another host not refreshed for this long is stale (20 missed heartbeats)
STALE_SECONDS = 600.0
#: a lock file still empty after this long was left by a taker killed between create and write
_EMPTY_STALE_SECONDS = 60.0
_LABEL = re.compile(r"[A-Za-z0-9._-]+")


class LockHeld(StoreError):
    """Another live process holds a conflicting lock; the message names it and says how to clear it."""


class LockLost(StoreError):
    """This process's lock was removed or taken over by another process: it must stop writing."""


@dataclass
class StoreLock:
    """A held lock; release it with ``release()`` or by leaving its ``with`` block."""

    folder: LockFolder
    name: str
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # stale locks taken over while acquiring, one line each
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _beat: threading.Thread | None = field(default=None, repr=False)

    @property
    def path(self) -> Path | str:
        """The lock file (a path, or the object's URI on S3)."""
        return self.folder.where(self.name)

    def verify(self) -> None:
        """Raise LockLost unless the lock file is still this holder's (call before writing)."""
        current = _read(self.folder, self.name)
        if current is None or current.get("token") != self.info["token"]:
            holder = describe(current) if current else "nobody (the lock file was deleted)"
            raise LockLost(
                f"the lock {self.path} of {self.info['model']} on {self.info['benchmark']} is now held by "
                f"{holder}: this process stopped writing; rerun the same command to resume"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file if it is still ours."""
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        try:
            self.folder.remove_if(self.name, _holds(self.info["token"]))
        except (OSError, StoreError):
            pass  # left behind, it is judged stale and taken over by the next taker

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _heartbeat(self, every: float) -> None:
        data = _encode(self.info)
        while not self._stop.wait(every):
            current = _read(self.folder, self.name)
            if current is None or current.get("token") != self.info["token"]:
                return  # lost: verify() reports it before the next write
            try:
                self.folder.touch(self.name, data)
            except (OSError, StoreError):
                pass  # a transient storage error: the next beat tries again


def lock_path(root: str | os.PathLike, model: str, benchmark: str, part: str | None = None) -> Path:
    """The lock file of (model, benchmark) or of one part of it, in a local store."""
    return Path(root) / LOCKS_DIR / lock_name(model, benchmark, part)


def lock_name(model: str, benchmark: str, part: str | None = None) -> str:
    """The file name of the lock of (model, benchmark) or of one part of it."""
    for name, value in (("model", model), ("benchmark", benchmark), ("part", part)):
        if value is not None and not _LABEL.fullmatch(value):
            raise ValueError(f"lock {name} {value!r} must be letters, digits, '.', '_' or '-'")
    return "@".join(x for x in (model, benchmark, part) if x is not None) + ".lock"


def acquire(
    root: str | os.PathLike,
    model: str,
    benchmark: str,
    *,
    part: str | None = None,
    tag: str = "",
    command: str | None = None,
    wait: float | None = 0.0,
    heartbeat: float = HEARTBEAT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> StoreLock:
    """Take the lock of (model, benchmark), or of one ``part`` of it (see the module docstring).

    ``root`` is the store: a folder or an ``s3://`` URI. ``wait``: 0 refuses at once (LockHeld), ``None``
    waits as long as it takes, a number waits that many seconds. ``on_wait`` is called once with the
    holder's description when waiting starts. ``command`` (default: this process's command line) is shown
    to whoever finds the lock held.
    """
    folder = lock_folder(root)
    name = lock_name(model, benchmark, part)
    # a local lock folder this call creates is removed again when taking fails (a full disk)
    fresh = folder.dir if type(folder) is LockFolder and not folder.dir.exists() else None
    try:
        folder.ensure()
    except OSError as exc:
        raise StoreError(
            f"cannot create {folder.where('')} ({exc.strerror or exc}): writing needs a writable --store"
        ) from None
    info = {
        "model": model, "benchmark": benchmark, "part": part, "tag": tag,
        "command": (command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]))[:500],
        "user": _user(), "host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex,
    }
    deadline = None if wait is None else time.monotonic() + max(0.0, wait)
    notes: list[str] = []
    told = False
    while True:
        try:
            with folder.serialised():
                blocker = _try_take(folder, name, info, notes)
        except OSError as exc:
            if fresh is not None:  # leave the store as it was (a full disk still creates empty files and folders)
                with contextlib.suppress(OSError):
                    (fresh / ".guard").unlink()
                    fresh.rmdir()
            raise StoreError(f"cannot create the lock {folder.where(name)} ({exc.strerror or exc}): writing needs a "
                             "writable --store with free space") from None
        if blocker is None:
            lock = StoreLock(folder, name, info, notes)
            if heartbeat > 0:
                lock._beat = threading.Thread(target=lock._heartbeat, args=(heartbeat,), daemon=True,
                                              name="keygap-lock-heartbeat")
                lock._beat.start()
            return lock
        if deadline is not None and time.monotonic() >= deadline:
            raise LockHeld(_held_message(root, folder, info, blocker))
        if on_wait is not None and not told:
            on_wait(describe(blocker))
            told = True
        time.sleep(random.uniform(0.2, 1.0))  # jitter: two takers that backed off retry at different times


def held_locks(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The live locks of a store (stale ones are left out), for `keygap info`; writes nothing (the other
    host's heartbeat is judged by this host's clock)."""
    folder = lock_folder(root)
    now = time.time()
    out = []
    for name in folder.names():
        info = _read(folder, name)
        if info is not None and not _stale(folder, name, info, now):
            fields = ("model", "benchmark", "part", "command", "user", "host", "pid", "started")
            out.append({k: info.get(k) for k in fields})
    return out


def describe(info: dict[str, Any] | None) -> str:
    """'`CMD` (pid P on host H, user U, since T)': who holds a lock, on one line."""
    if not info or "pid" not in info:
        return "a process that is still writing its lock file"
    return (f"`{info.get('command')}` (pid {info.get('pid')} on host {info.get('host')}, user {info.get('user')}, "
            f"since {info.get('started')})")


# -- internals ---------------------------------------------------------------------------------------------
def _encode(info: dict[str, Any]) -> bytes:
    return json.dumps(info, indent=1).encode()


def _try_take(folder: LockFolder, name: str, info: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """Take the lock now; return None on success, else the holder's info (``{}`` if not yet readable)."""
    where = str(folder.where(name))
    if not folder.create(name, _encode(info)):
        holder = _read(folder, name)
        if holder is None:
            if _age(folder, name) > _EMPTY_STALE_SECONDS:  # a taker killed between create and write
                _break(folder, name, None)
            return {"_path": where}
        if _stale(folder, name, holder, folder.now()):
            if _break(folder, name, holder):
                notes.append(f"took over the stale lock of {describe(holder)}")
                return _try_take(folder, name, info, notes)
        return holder | {"_path": where}
    blocker = _conflict(folder, name, info, notes)
    if blocker is not None:
        folder.remove_if(name, _holds(info["token"]))
    return blocker


def _conflict(folder: LockFolder, mine: str, info: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """The holder of a live lock of the same pair that conflicts with ``info``, else None."""
    now = None
    for other in folder.names():
        parts = other[: -len(".lock")].split("@")
        if other == mine or parts[:2] != [info["model"], info["benchmark"]]:
            continue
        holder = _read(folder, other)
        if holder is None:
            if _age(folder, other) <= _EMPTY_STALE_SECONDS:
                return {"_path": str(folder.where(other))}  # being written right now: assume the worst
            _break(folder, other, None)
            continue
        now = folder.now() if now is None else now
        if _stale(folder, other, holder, now):
            if _break(folder, other, holder):
                notes.append(f"took over the stale lock of {describe(holder)}")
            continue
        if info["part"] is None or holder.get("part") is None or holder.get("tag") != info["tag"]:
            return holder | {"_path": str(folder.where(other))}
    return None


def _stale(folder: LockFolder, name: str, info: dict[str, Any], now: float) -> bool:
    if info.get("host") == socket.gethostname():
        pid = info.get("pid")
        if not isinstance(pid, int) or not _alive(pid):
            return True
        started = info.get("proc_start")
        return started is not None and _proc_start(pid) not in (None, started)
    try:
        return now - folder.mtime(name) > STALE_SECONDS
    except (FileNotFoundError, StoreError):
        return False  # released meanwhile: the caller retries


def _break(folder: LockFolder, name: str, judged: dict[str, Any] | None) -> bool:
    """Delete the stale lock ``judged`` (None: an empty one) unless it changed meanwhile; True if deleted."""
    guard = name + ".breaking"
    if not folder.create(guard, b""):
        if _age(folder, guard) > _EMPTY_STALE_SECONDS:  # a breaker killed within these few lines
            folder.delete(guard)
        return False
    try:
        if judged is None:
            return folder.remove_if(name, lambda raw: _parse(raw) is None and _age(folder, name) > _EMPTY_STALE_SECONDS)
        return folder.remove_if(name, _holds(judged.get("token")))
    finally:
        folder.delete(guard)


def _held_message(root: str | os.PathLike, folder: LockFolder, mine: dict[str, Any], holder: dict[str, Any]) -> str:
    where = holder.get("_path") or folder.where(lock_name(mine["model"], mine["benchmark"], mine["part"]))
    clash = mine["part"] and holder.get("part") and holder.get("tag") != mine["tag"]
    what = "with other settings (or another --shard N or --limit) " if clash else ""
    return (f"{mine['model']} on {mine['benchmark']} in {root} is being written {what}by {describe(holder)}: "
            f"wait for it to finish (or pass --wait); if that process is gone for good, delete {where}")


def _read(folder: LockFolder, name: str) -> dict[str, Any] | None:
    return _parse(folder.read(name))


def _holds(token: Any) -> Callable[[bytes | None], bool]:
    """A test of a lock file's content: does it still hold ``token``?"""
    return lambda raw: (_parse(raw) or {}).get("token") == token


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _age(folder: LockFolder, name: str) -> float:
    try:
        return time.time() - folder.mtime(name)
    except (OSError, StoreError):
        return 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
