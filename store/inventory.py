"""Which key files a store holds and which of them readers may see.

Why this exists: a key file counts only once the commit marker of its flush (``samples/part-<run>-<flush>``)
exists, so readers never see keys of a sample that is not committed (a running ingest, a killed one, a full
disk). The marker also carries the flush's file list with row counts, dims and dtypes (its Parquet metadata,
written by :class:`store.writer.KeyWriter`), so learning what a study holds costs one directory listing and
one small footer per flush instead of opening every key file. A file the marker does not describe (a store
written before markers carried the list) or describes differently (size or modification time changed) is
read from its own footer: the index is a shortcut, never trusted over the files. A file that cannot be read
is left out and reported in
:attr:`Inventory.problems`, so one damaged file cannot break every query.

Compaction (store/compact.py) merges a run's files: for a group of partitions it writes the merged files,
then a marker that commits them and whose metadata ``keygap.replaces`` names the key files (relative
paths) they replace and, in the last group's marker, the old markers (names) too; then it deletes what it
replaced. From the instant such a marker exists, what it names is invisible, so a reader sees either the
old files or the new ones, never both and never neither. A scan is a consistent snapshot: it lists the
markers again at the end and starts over when one vanished or a replacing one appeared meanwhile.

pyarrow only: GPU servers and the analysis code use it without duckdb.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import StoreError, first_line
from .schema import (
    ATTENTION_DIR,
    ATTENTION_PARTITIONS,
    KEY_DTYPES,
    KEYS_DIR,
    PARTITIONS,
    QUERIES_DIR,
    SAMPLES_DIR,
    VECTOR_COLUMN,
)

#: Key-value metadata of a commit marker: JSON {key file path relative to the store: {rows, bytes, mtime_ns, dim,
#: dtype, segments}}.
MARKER_FILES_KEY = b"keygap.files"
#: ... and of a compaction's marker: JSON list of what it replaces: key files (paths relative to the store)
#: and markers (file names, which hide their whole flush).
MARKER_REPLACES_KEY = b"keygap.replaces"
#: how many times a scan starts over while compactions keep changing the store under it
SCAN_ATTEMPTS = 8
PART_NAME = re.compile(r"^part-(?P<run>.+)-(?P<flush>\d{5})\.parquet$")


@dataclass(frozen=True)
class KeyFile:
    """One committed key file and what a reader needs to know about it without opening it."""

    path: str  # filesystem path (absolute for a local store)
    rel: str  # path relative to the store root: the name the marker and the results cache use
    partition: tuple  # (model, benchmark, layer, rope, modality); (model, benchmark, layer) for attention
    run_id: str
    flush: int
    rows: int
    size: int
    mtime_ns: int
    dim: int  # 0 for attention files (no vectors)
    dtype: str  # "" for attention files
    segments: tuple[str, ...] | None = None  # prompt segments it holds, when its marker says (None: ask the file)


@dataclass(frozen=True)
class Marker:
    """One commit marker (samples file): the flush it commits and the samples it lists."""

    path: str
    run_id: str
    flush: int
    rows: int
    replaces: tuple[str, ...] = ()  # what a compaction's marker supersedes: key file paths, marker names


@dataclass
class Inventory:
    """The committed content of a store; ``problems`` says what was left out and why (one line each)."""

    files: dict[tuple, list[KeyFile]] = field(default_factory=dict)
    queries: dict[tuple, list[KeyFile]] = field(default_factory=dict)  # the queries tree, keyed like files
    attention: dict[tuple, list[KeyFile]] = field(default_factory=dict)  # keyed (model, benchmark, layer)
    markers: list[Marker] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    uncommitted: int = 0  # key files without a marker: a running ingest, or a crashed one until its rerun
    # what a compaction superseded and has not deleted yet (relative paths): markers, and data files
    replaced: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    marker_names: frozenset[str] = frozenset()  # the samples/ listing this snapshot was built from

    def all_files(self) -> list[KeyFile]:
        return [f for files in self.files.values() for f in files]

    def data_files(self) -> list[KeyFile]:
        """Key, query and attention files: everything a flush commits besides its marker."""
        return [f for tree in (self.files, self.queries, self.attention) for files in tree.values() for f in files]


def scan(fs: pafs.FileSystem, root: str) -> Inventory:
    """Build the inventory of the store at ``root`` on ``fs`` (see the module docstring)."""
    for attempt in range(SCAN_ATTEMPTS):
        try:
            inv, seen = _scan_once(fs, root)
        except FileNotFoundError:
            inv, seen = None, set()  # a marker or key file went away while we read it: a compaction
        if inv is not None and _still_consistent(fs, root, seen):
            inv.marker_names = frozenset(seen)
            return inv
        time.sleep(0.05 * (attempt + 1))
    raise StoreError(
        f"{root} kept changing while it was read (a compaction or another writer is replacing files): try again"
    )


def marker_listing(fs: pafs.FileSystem, root: str) -> frozenset[str]:
    """The names in samples/ now: when they differ from an inventory's ``marker_names``, the store changed."""
    return frozenset(i.base_name for i in list_parquet(fs, posixpath.join(root, SAMPLES_DIR), recursive=False))


def _still_consistent(fs: pafs.FileSystem, root: str, seen: set[str]) -> bool:
    """True unless, since the scan listed the markers, one vanished or a replacing one appeared."""
    now = {i.base_name: i for i in list_parquet(fs, posixpath.join(root, SAMPLES_DIR), recursive=False)}
    if not seen <= set(now):
        return False
    for name in set(now) - seen:  # a new flush of a writer is harmless; a compaction's marker is not
        try:
            meta = pq.read_metadata(fs.open_input_file(now[name].path)).metadata or {}
        except FileNotFoundError:
            return False
        except (OSError, pa.ArrowInvalid):
            continue
        if meta.get(MARKER_REPLACES_KEY):
            return False
    return True


def _scan_once(fs: pafs.FileSystem, root: str) -> tuple[Inventory, set[str]]:
    inv = Inventory()
    described: dict[str, dict] = {}
    committed: set[tuple[str, int]] = set()
    markers: list[Marker] = []
    listed = list_parquet(fs, posixpath.join(root, SAMPLES_DIR), recursive=False)
    for info in listed:
        m = PART_NAME.match(info.base_name)
        if not m:
            continue  # not a marker of ours: ignore it, as SQL and the writer do
        try:
            meta = pq.read_metadata(fs.open_input_file(info.path))
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowInvalid) as exc:
            inv.problems.append(
                f"{_rel(root, info.path)} is damaged ({first_line(exc)}) and was left out with the keys of its "
                "flush: delete it and re-run the ingest that wrote it"
            )
            continue
        kv = meta.metadata or {}
        replaces = tuple(_json_list(kv.get(MARKER_REPLACES_KEY)))
        markers.append(Marker(info.path, m["run"], int(m["flush"]), meta.num_rows, replaces))
        files = kv.get(MARKER_FILES_KEY)
        if files:
            try:
                described.update({rel: entry | {"_marker": info.base_name} for rel, entry in json.loads(files).items()})
            except (ValueError, TypeError, AttributeError):
                pass  # a marker whose list is unreadable: fall back to the files' own footers
    replaced = {name for mk in markers for name in mk.replaces}
    for mk in markers:
        name = posixpath.basename(mk.path)
        if name in replaced:
            inv.replaced.append(_rel(root, mk.path))
        else:
            inv.markers.append(mk)
            committed.add((mk.run_id, mk.flush))
    hidden = {(mk.run_id, mk.flush) for mk in markers if posixpath.basename(mk.path) in replaced}
    view = _Commits(committed, hidden, replaced, described)
    inv.files = _scan_tree(fs, root, KEYS_DIR, PARTITIONS, view, inv)
    inv.queries = _scan_tree(fs, root, QUERIES_DIR, PARTITIONS, view, inv)
    inv.attention = _scan_tree(fs, root, ATTENTION_DIR, ATTENTION_PARTITIONS, view, inv)
    for rel, entry in described.items():
        if rel not in view.present and rel not in replaced and entry["_marker"] not in replaced:
            inv.problems.append(f"{rel} is listed by its commit marker but missing: re-ingest that model and benchmark")
    inv.markers.sort(key=lambda mk: mk.path)
    return inv, {i.base_name for i in listed}


@dataclass
class _Commits:
    """What the markers of one scan say: which flushes count, which are hidden by a compaction, what they list."""

    committed: set[tuple[str, int]]
    hidden: set[tuple[str, int]]
    replaced: set[str]
    described: dict[str, dict]
    present: set[str] = field(default_factory=set)  # relative paths of the data files listed, visible or not


def _scan_tree(fs: pafs.FileSystem, root: str, tree: str, names: tuple, commits: _Commits,
               inv: Inventory) -> dict[tuple, list[KeyFile]]:
    """The committed files of one tree (keys, queries or attention), by partition, each list sorted by path."""
    out: dict[tuple, list[KeyFile]] = {}
    tree_root = posixpath.join(root, tree)
    for info in list_parquet(fs, tree_root, recursive=True):
        m = PART_NAME.match(info.base_name)
        partition = _partition(posixpath.relpath(posixpath.dirname(info.path), tree_root), names)
        if not m or partition is None:
            continue  # a stray file: not part of the store
        rel = _rel(root, info.path)
        commits.present.add(rel)
        flush = (m["run"], int(m["flush"]))
        if flush in commits.hidden or rel in commits.replaced:
            inv.hidden.append(rel)  # merged into a compaction's files, waiting to be deleted
            continue
        if flush not in commits.committed:
            inv.uncommitted += 1
            continue
        entry = commits.described.get(rel)
        segments = None
        if entry is not None and entry.get("bytes") == info.size \
                and entry.get("mtime_ns", info.mtime_ns) == info.mtime_ns:
            rows, dim, dtype = int(entry["rows"]), int(entry.get("dim", 0)), str(entry.get("dtype", ""))
            if isinstance(entry.get("segments"), list):
                segments = tuple(str(v) for v in entry["segments"])
        else:
            try:
                rows, dim, dtype = read_file_shape(fs, info.path, VECTOR_COLUMN.get(tree))
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowInvalid, ValueError, KeyError) as exc:
                inv.problems.append(
                    f"{rel} is damaged ({first_line(exc)}) and was left out: "
                    "delete it and re-run the ingest that wrote it"
                )
                continue
        out.setdefault(partition, []).append(
            KeyFile(info.path, rel, partition, m["run"], int(m["flush"]), rows, info.size, info.mtime_ns or 0, dim,
                    dtype, segments)
        )
    for files in out.values():
        files.sort(key=lambda f: f.path)
        _leave_out_odd_dims(files, inv.problems)
    return out


def _leave_out_odd_dims(files: list[KeyFile], problems: list[str]) -> None:
    """Vectors of one partition share one length; a file that disagrees with the most rows is damaged."""
    rows_by_dim: dict[int, int] = {}
    for f in files:
        rows_by_dim[f.dim] = rows_by_dim.get(f.dim, 0) + f.rows
    if len(rows_by_dim) < 2:
        return
    dim = max(rows_by_dim, key=lambda d: (rows_by_dim[d], d))
    for f in [f for f in files if f.dim != dim]:
        files.remove(f)
        problems.append(f"{f.rel} holds keys of {f.dim} values where its partition's other files hold {dim} and "
                        "was left out: delete it and re-run the ingest that wrote it")


def _json_list(raw: bytes | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def read_file_shape(fs: pafs.FileSystem, path: str, vector: str | None = "key") -> tuple[int, int, str]:
    """(rows, dim, dtype) of a key (query) file from its footer and first row: the slow path the marker list
    avoids. ``vector=None`` (attention files) reads the footer only: (rows, 0, "")."""
    pf = pq.ParquetFile(fs.open_input_file(path))
    rows = pf.metadata.num_rows
    if vector is None:
        return rows, 0, ""
    if rows == 0:
        return 0, 0, "float16"
    t = pf.read_row_group(0, columns=["dtype", vector]).slice(0, 1)
    dtype = str(t["dtype"][0])
    if dtype not in KEY_DTYPES:
        raise ValueError(f"unknown key dtype {dtype!r}")
    nbytes = len(t[vector][0].as_py())
    if nbytes % KEY_DTYPES[dtype]:
        raise ValueError(f"a key of {nbytes} bytes is no whole number of {dtype} values")
    return rows, nbytes // KEY_DTYPES[dtype], dtype


def list_parquet(fs: pafs.FileSystem, base: str, recursive: bool) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
    except (OSError, pa.ArrowInvalid):
        return []
    return [
        i for i in infos
        if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith((".", "_"))
    ]


def _partition(rel_dir: str, names: tuple = PARTITIONS) -> tuple | None:
    try:
        values = dict(part.split("=", 1) for part in rel_dir.split("/"))
        return tuple(int(values[k]) if k == "layer" else values[k] for k in names)
    except (ValueError, KeyError):
        return None


def _rel(root: str, path: str) -> str:
    return posixpath.relpath(path, root)
