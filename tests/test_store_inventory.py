"""The writer-kept index (commit markers' file lists): used when it matches the files, never trusted over them."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
from store_helpers import write_synthetic_store

from store.inventory import MARKER_FILES_KEY
from store.reader import KeyStore


def _rewrite_marker(marker, change) -> None:
    """Rewrite a marker's file list through ``change(dict)``, keeping its rows (as an old or odd writer might)."""
    table = pq.read_table(marker)
    meta = dict(table.schema.metadata)
    listed = json.loads(meta[MARKER_FILES_KEY])
    change(listed)
    meta[MARKER_FILES_KEY] = json.dumps(listed).encode()
    pq.write_table(table.replace_schema_metadata(meta), marker)


def test_an_index_that_disagrees_with_the_files_is_read_from_the_files(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=10, tokens=6, dim=8, flush_every=5, text_segments=("question", "options"))
    truth = {(p["layer"], p["modality"]): (p["rows"], p["dim"]) for p in KeyStore(root).partitions()}
    assert truth == {(1, "image"): (60, 8), (1, "text"): (60, 8)}
    marker = sorted((root / "samples").glob("part-*.parquet"))[0]
    victim = sorted(json.loads(pq.read_schema(marker).metadata[MARKER_FILES_KEY]))[0]
    _rewrite_marker(marker, lambda listed: listed[victim].update(rows=999, dim=3, segments=["nonsense"]))
    # the entry is believed only while size and mtime match the file it describes: touch that file
    st = os.stat(root / victim)
    os.utime(root / victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    ks = KeyStore(root)
    by_rel = {f.rel: f for f in ks.inventory.all_files()}
    assert by_rel[victim].rows == 30 and by_rel[victim].dim == 8 and by_rel[victim].segments is None
    assert ks.problems == []
    # without any list (a store from before markers carried one) every file is read from its own footer
    _rewrite_marker(marker, lambda listed: listed.clear())
    ks = KeyStore(root)
    assert {(p["layer"], p["modality"]): (p["rows"], p["dim"]) for p in ks.partitions()} == truth
    assert ks.segments("m", "b", "text") == ["options", "question"]  # read from the files where no list says


def test_segments_come_from_the_markers_without_opening_key_files(tmp_path):
    root = tmp_path / "s"
    write_synthetic_store(root, samples=10, tokens=6, dim=8, flush_every=5, layers=(1, 2),
                          text_segments=("system", "question", "options"))
    for path in (root / "keys").rglob("*.parquet"):  # key files unreadable, sizes and mtimes kept
        st = path.stat()
        path.write_bytes(b"\0" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    ks = KeyStore(root)
    assert ks.segments("m", "b", "text") == ["options", "question", "system"]
    assert ks.segments("m", "b", "image", layer=2, rope="post") == ["image"]
    assert ks.segments("m", "b", "video") == []
