"""Hostile and careless input to every command: each is refused or answered, never a traceback, and the
store is byte-for-byte what it was.

Every case runs the real CLI in-process (keygap_tui.cli.main) on its own copy of a real store (written by
the real KeyWriter), damaged first where the case says so. It asserts the exit code, that every line on
stderr is one of keygap's one-line messages (``keygap CMD: error|warning|note: ...``), that an error names
its cause (the expected text), and that no file of the store changed (a hash of every file, hidden ones
included). Cases that need a real read-only or full file system mount one where the machine allows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_helpers import write_synthetic_store

from keygap_tui.cli import main as keygap


# -- the store and its damage --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "store"
    write_synthetic_store(root, model="m", benchmark="b", layers=(1, 2), samples=12, tokens=6, dim=8)
    return root


def _key_file(store: Path) -> Path:
    return sorted((store / "keys").rglob("part-*.parquet"))[0]


def _marker(store: Path) -> Path:
    return sorted((store / "samples").glob("part-*.parquet"))[0]


def _rows(store: Path) -> int:
    return pq.read_metadata(_key_file(store)).num_rows


def _run_manifest(store: Path) -> Path:
    return next((store / "runs").glob("*.json"))


DAMAGE = {
    "manifest-list": lambda s: (s / "keygap.json").write_text("[1, 2]"),
    "manifest-garbage": lambda s: (s / "keygap.json").write_text("{not json"),
    "manifest-version": lambda s: (s / "keygap.json").write_text('{"schema_version": 99}'),
    "manifest-folder": lambda s: ((s / "keygap.json").unlink(), (s / "keygap.json").mkdir()),
    "manifest-nan": lambda s: (s / "keygap.json").write_text('{"schema_version": 1, "created": NaN}'),
    "run-list": lambda s: _run_manifest(s).write_text("[]"),
    "run-garbage": lambda s: _run_manifest(s).write_text("\x00\x01"),
    "run-nan": lambda s: _run_manifest(s).write_text(json.dumps(
        json.loads(_run_manifest(s).read_text()) | {"ended": float("nan")})),
    "run-settings-list": lambda s: _run_manifest(s).write_text(json.dumps(
        json.loads(_run_manifest(s).read_text()) | {"settings": [1], "status": "running"})),
    "key-garbage": lambda s: _key_file(s).write_bytes(b"PAR1 not parquet at all PAR1"),
    "key-truncated": lambda s: _key_file(s).write_bytes(_key_file(s).read_bytes()[:100]),
    "key-empty": lambda s: _key_file(s).write_bytes(b""),
    "key-wrong-schema": lambda s: pq.write_table(pa.table({"x": [1, 2, 3]}), _key_file(s)),
    "key-unknown-dtype": lambda s: pq.write_table(
        pq.read_table(_key_file(s)).set_column(10, "dtype", pa.array(["float8"] * _rows(s)).dictionary_encode()),
        _key_file(s)),
    "key-odd-length": lambda s: pq.write_table(
        pq.read_table(_key_file(s)).set_column(11, "key", pa.array([b"\x01\x02\x03"] * _rows(s), pa.binary())),
        _key_file(s)),
    "stray-parquet": lambda s: (s / "keys" / "stray.parquet").write_bytes(b"junk"),
    "stray-partition": lambda s: ((s / "keys" / "model=m" / "benchmark=b" / "layer=x").mkdir(),
                                  (s / "keys" / "model=m" / "benchmark=b" / "layer=x" / "part-r-00000.parquet")
                                  .write_bytes(b"junk")),
    "marker-garbage": lambda s: _marker(s).write_bytes(b"not parquet"),
    "results-garbage": lambda s: ((s / "results").mkdir(exist_ok=True),
                                  (s / "results" / "part-0123.parquet").write_bytes(b"junk")),
    "bracket-path": None,  # the store lives under a folder named "odd [1] [bold] {x}" (see _copy)
}


def _copy(pristine: Path, tmp_path: Path, damage: str | None) -> Path:
    parent = tmp_path / ("odd [1] [bold] {x}" if damage == "bracket-path" else "s")
    parent.mkdir()
    store = parent / "store"
    shutil.copytree(pristine, store)
    if damage and DAMAGE[damage] is not None:
        DAMAGE[damage](store)
    return store


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = keygap(argv)
    except SystemExit as exc:  # argparse refusals
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_messages(err: str, code: int, expect: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    for line in lines:
        assert line.startswith("keygap") and (": error: " in line or ": warning: " in line or ": note: " in line
                                               or ": waiting " in line), line
    errors = [line for line in lines if ": error: " in line]
    if code == 0:
        assert not errors, err
    else:
        assert len(errors) == 1, err
    if expect:
        assert expect in err, err


# -- the cases ---------------------------------------------------------------------------------------------
# (id, argv, damage, exit code, text stderr must contain). {store} and {tmp} are filled in.
C = "compare --store {store} --model m --benchmark b --layer 1"
R = ("report --store {store} --out {tmp}/rep --models m --layers 1 --no-png --permutations 9 --replicates 1 "
     "--projection pca")
ING = "ingest --store {store} --model tiny:llava --benchmark sample --limit 2 --no-progress"
FILE_STORE = "is a file: pass the folder that holds keygap.json"
CASES = [
    # --param: unknown metrics and names, values of the wrong kind
    ("param-unknown-metric", C + " --param bogus.x=1", None, 2, "unknown metric 'bogus'; choose from"),
    ("param-unknown-name", C + " --param mmd.nope=1", None, 2, "mmd has no parameter 'nope'; its parameters:"),
    ("param-seed", C + " --param mmd.seed=3", None, 2, "the seed is --seed"),
    ("param-groups", C + " --param mmd.groups_x=1", None, 2, "mmd has no parameter 'groups_x'"),
    ("param-no-dot", C + " --param mmd=1", None, 2, "write METRIC.NAME=VALUE"),
    ("param-no-equals", C + " --param mmd.estimator", None, 2, "write METRIC.NAME=VALUE"),
    ("param-empty-name", C + " --param .x=1", None, 2, "write METRIC.NAME=VALUE"),
    ("param-bad-estimator", C + " --param mmd.estimator=nope", None, 2, "estimator"),
    ("param-bad-scales", C + " --param mmd.scales=abc --metrics mmd", None, 2,
     "mmd cannot use --param mmd.scales='abc'"),
    ("param-negative-bins", C + " --param js.bins=-3 --metrics js", None, 2, "bins=-3; pass an integer >= 2"),
    ("param-huge-bins", C + " --param js.bins=1e400 --metrics js", None, 2, "bins=inf"),
    ("param-nan-bandwidth", C + " --param mmd.bandwidth=NaN --metrics mmd", None, 2, "bandwidth"),
    ("report-param-unknown", R + " --param mmd.nope=2", None, 2, "mmd has no parameter 'nope'"),
    ("report-param-metric", R + " --param bogus.x=1", None, 2, "unknown metric 'bogus'"),
    # counts
    ("permutations-huge", C + " --permutations 1000000000000", None, 2,
     "--permutations 1,000,000,000,000 would need about"),
    ("permutations-huge-all", C + " --permutations 100000000000 --n all", None, 2, "would need about"),
    ("permutations-negative", C + " --permutations -5", None, 2, "--permutations must be 0 or more"),
    ("permutations-text", C + " --permutations many", None, 2, "argument --permutations: invalid int value"),
    ("permutations-float", C + " --permutations 1e9", None, 2, "invalid int value: '1e9'"),
    ("report-permutations-huge", R.replace("--permutations 9", "--permutations 999999999999"), None, 2,
     "would need about"),
    ("replicates-negative", C + " --controls --replicates -1", None, 2, "--replicates must be at least 1"),
    ("replicates-zero", C + " --controls --replicates 0", None, 2, "--replicates must be at least 1"),
    ("n-zero", C + " --n 0", None, 2, "--n must be at least 2"),
    ("n-one", C + " --n 1", None, 2, "--n must be at least 2"),
    ("n-float", C + " --n 1e9", None, 2, "--n must be an integer or 'all'"),
    ("n-text", C + " --n lots", None, 2, "--n must be an integer or 'all'"),
    ("threads-zero", C + " --threads 0", None, 2, "--threads must be a positive integer or auto"),
    ("threads-text", C + " --threads many", None, 2, "--threads must be a positive integer or auto"),
    ("seed-text", C + " --seed x", None, 2, "argument --seed: invalid int value"),
    ("ci-percent", C + " --ci 95", None, 2, "--ci must be a confidence level such as 0.95"),
    ("ci-nan", C + " --ci nan", None, 2, "--ci must be a confidence level such as 0.95"),
    ("ci-text", C + " --ci high", None, 2, "argument --ci: invalid float value"),
    ("report-ci", R + " --ci 1", None, 2, "--ci must be a confidence level such as 0.95"),
    # what to compare
    ("metric-unknown", C + " --metrics nope", None, 2, "unknown metric nope"),
    ("metric-empty", C + " --metrics ,", None, 2, "no metric given"),
    ("side-unknown", C + " --a nosuch", None, 2, "unknown side 'nosuch'"),
    ("side-segment", C + " --b text:nosuchsegment", None, 2, "only 0 text keys in segments nosuchsegment"),
    ("side-markup", C + " --b text:[/x]", None, 2, "[/x]"),
    ("layer-missing", "compare --store {store} --model m --benchmark b --layer 99", None, 2,
     "layer must be one of: 1, 2"),
    ("layer-text", "compare --store {store} --model m --benchmark b --layer nosuch", None, 2, "nosuch"),
    ("layer-percent", "compare --store {store} --model m --benchmark b --layer 250%", None, 2, "250%"),
    ("layer-negative", "compare --store {store} --model m --benchmark b --layer -1", None, 2, "layer"),
    ("model-unknown", "compare --store {store} --model nosuch --benchmark b --layer 1", None, 2,
     "model must be one of: m"),
    ("benchmark-unknown", "compare --store {store} --model m --benchmark nosuch --layer 1", None, 2, "nosuch"),
    ("rope-unknown", C + " --rope middle", None, 2, "argument --rope: invalid choice: 'middle'"),
    ("compare-no-layer", "compare --store {store} --model m", None, 2, "the following arguments are required: --layer"),
    # report --out and options
    ("report-out-dev-full", R.replace("{tmp}/rep", "/dev/full"), None, 2, "--out /dev/full exists and is not a folder"),
    ("report-out-file", R.replace("{tmp}/rep", "{store}/keygap.json"), None, 2, "exists and is not a folder"),
    ("report-out-no-parent", R.replace("{tmp}/rep", "{tmp}/no/such/rep"), None, 2, "its parent folder"),
    ("report-layers", R.replace("--layers 1", "--layers nosuch"), None, 2, "unknown layer 'nosuch'"),
    ("report-model", R.replace("--models m", "--models nosuch"), None, 2, "nosuch"),
    ("report-tsne-iterations", R + " --tsne-iterations 5", None, 2, "--tsne-iterations wants EARLY,MAIN"),
    ("report-projection-n", R + " --projection-n 1", None, 2, "--n must be at least 2"),
    ("report-projection", R.replace("--projection pca", "--projection umap"), None, 2, "invalid choice: 'umap'"),
    # --store that is not a store
    ("store-file-compare", "compare --store {store}/keygap.json --model m --layer 1", None, 2, FILE_STORE),
    ("store-missing-info", "info --store {tmp}/nowhere", None, 2, "no store at"),
    ("store-file-info", "info --store {store}/keygap.json", None, 2, FILE_STORE),
    ("store-file-sql", "sql --store {store}/keygap.json 'SELECT 1'", None, 2, FILE_STORE),
    ("store-file-tui", "tui --store {store}/keygap.json", None, 2, FILE_STORE),
    ("store-file-report", R.replace("--store {store}", "--store {store}/keygap.json"), None, 2, FILE_STORE),
    ("store-file-ingest", ING.replace("--store {store}", "--store {store}/keygap.json"), None, 2,
     "is a file, not a folder"),
    ("store-file-demo", "demo --store {store}/keygap.json --no-tui", None, 2, "is a file, not a folder"),
    ("store-foreign-ingest", ING.replace("--store {store}", "--store {store}/keys"), None, 2, "is not a keygap store"),
    # a damaged keygap.json: every command names the file and the remedy
    ("manifest-list-info", "info --store {store}", "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-sql", "sql --store {store} 'SELECT 1'", "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-compare", C, "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-report", R, "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-tui", "tui --store {store}", "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-ingest", ING, "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-list-demo", "demo --store {store} --no-tui", "manifest-list", 2, "keygap.json is not a JSON object"),
    ("manifest-garbage-info", "info --store {store}", "manifest-garbage", 2, "keygap.json is unreadable"),
    ("manifest-garbage-ingest", ING, "manifest-garbage", 2, "keygap.json is unreadable"),
    ("manifest-version-info", "info --store {store}", "manifest-version", 2, "schema version 99"),
    ("manifest-version-ingest", ING, "manifest-version", 2, "schema version 99"),
    ("manifest-folder-info", "info --store {store}", "manifest-folder", 2, "keygap.json is not a file"),
    ("manifest-folder-ingest", ING, "manifest-folder", 2, "keygap.json"),
    ("manifest-nan-info", "info --store {store} --json", "manifest-nan", 0, ""),
    # a damaged run manifest: left out with a warning, everything else answers
    ("run-list-info", "info --store {store}", "run-list", 0, "is damaged and was left out"),
    ("run-list-sql", "sql --store {store} 'SELECT count(*) FROM runs'", "run-list", 0, "is damaged and was left out"),
    ("run-list-compare", C + " --metrics centroid --permutations 0 --no-cache", "run-list", 0, ""),
    ("run-garbage-info", "info --store {store} --json", "run-garbage", 0, "is damaged and was left out"),
    ("run-nan-info-json", "info --store {store} --json", "run-nan", 0, ""),
    ("run-nan-sql-json", "sql --store {store} --format json 'SELECT * FROM runs'", "run-nan", 0, ""),
    ("run-settings-list-info", "info --store {store}", "run-settings-list", 0, ""),
    # damaged key files: reported, left out, the rest answers
    ("key-garbage-info", "info --store {store}", "key-garbage", 0, "is damaged"),
    ("key-garbage-sql", "sql --store {store} 'SELECT count(*) FROM keys'", "key-garbage", 0, "is damaged"),
    ("key-garbage-sql-one", "sql --store {store} 'SELECT 1'", "key-garbage", 0, "is damaged"),
    ("key-garbage-compare", C + " --metrics centroid --permutations 0 --no-cache", "key-garbage", 0, "was left out"),
    ("key-garbage-compare-other-layer",
     C.replace("--layer 1", "--layer 2") + " --metrics centroid --permutations 0 --no-cache",
     "key-garbage", 0, "was left out"),
    ("key-truncated-info", "info --store {store}", "key-truncated", 0, "is damaged"),
    ("key-truncated-compare", C + " --metrics centroid --permutations 0 --no-cache", "key-truncated", 0,
     "was left out"),
    ("key-empty-sql", "sql --store {store} 'SELECT count(*) FROM keys'", "key-empty", 0, "is damaged"),
    ("key-wrong-schema-info", "info --store {store}", "key-wrong-schema", 0, "is damaged"),
    ("key-wrong-schema-sql", "sql --store {store} 'SELECT count(*) FROM keys'", "key-wrong-schema", 0, ""),
    ("key-wrong-schema-compare", C + " --metrics centroid --permutations 0 --no-cache", "key-wrong-schema", 0,
     "was left out"),
    ("key-unknown-dtype-info", "info --store {store}", "key-unknown-dtype", 0, ""),
    ("key-unknown-dtype-compare", C + " --metrics centroid --permutations 0 --no-cache", "key-unknown-dtype", 0,
     "was left out"),
    ("key-unknown-dtype-sql-vec", "sql --store {store} 'SELECT vec FROM keys'", "key-unknown-dtype", 0, "was left out"),
    ("key-odd-length-compare", C + " --metrics centroid --permutations 0 --no-cache", "key-odd-length", 0,
     "was left out"),
    ("key-odd-length-sql-vec", "sql --store {store} 'SELECT vec FROM keys'", "key-odd-length", 0, "was left out"),
    ("stray-parquet-sql", "sql --store {store} 'SELECT count(*) FROM keys'", "stray-parquet", 0, ""),
    ("stray-partition-info", "info --store {store}", "stray-partition", 0, ""),
    ("marker-garbage-info", "info --store {store}", "marker-garbage", 0, "is damaged"),
    ("marker-garbage-sql", "sql --store {store} 'SELECT count(*) FROM samples'", "marker-garbage", 0, "is damaged"),
    ("results-garbage-sql", "sql --store {store} 'SELECT count(*) FROM results'", "results-garbage", 0, ""),
    ("bracket-path-sql", "sql --store {store} 'SELECT count(*) FROM keys'", "bracket-path", 0, ""),
    ("bracket-path-info", "info --store {store}", "bracket-path", 0, ""),
    ("bracket-path-compare", C + " --metrics centroid --permutations 0 --no-cache", "bracket-path", 0, ""),
    # SQL: nothing that writes, reads files or breaks the output
    ("sql-explain-analyze-copy", "sql --store {store} \"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{store}/keys' "
     "(FORMAT parquet, PARTITION_BY (a), OVERWRITE)\"", None, 2, "EXPLAIN ANALYZE takes a SELECT only"),
    ("sql-copy", "sql --store {store} \"COPY (SELECT 1) TO '{store}/keygap.json'\"", None, 2, "refused"),
    ("sql-create", "sql --store {store} 'CREATE TABLE t AS SELECT 1'", None, 2, "refused"),
    ("sql-drop", "sql --store {store} 'DROP VIEW keys'", None, 2, "refused"),
    ("sql-attach", "sql --store {store} \"ATTACH '{store}/x.db'\"", None, 2, "refused"),
    ("sql-export", "sql --store {store} \"EXPORT DATABASE '{store}/x'\"", None, 2, "refused"),
    ("sql-multi", "sql --store {store} 'SELECT 1; DROP VIEW keys'", None, 2, "refused"),
    ("sql-read-text", "sql --store {store} \"SELECT * FROM read_text('/etc/passwd')\"", None, 2, ""),
    ("sql-read-parquet", "sql --store {store} \"SELECT * FROM read_parquet('{store}/keys/**/*.parquet')\"", None, 2,
     ""),
    ("sql-set", "sql --store {store} \"SET temp_directory='{store}'\"", None, 2, "refused"),
    ("sql-empty", "sql --store {store} ''", None, 2, "empty query"),
    ("sql-syntax", "sql --store {store} 'SELEKT 1'", None, 2, "syntax error"),
    ("sql-markup-value", "sql --store {store} \"SELECT '[/x]' AS a, '[bold]b' AS \\\"[/y]\\\"\"", None, 0, ""),
    ("sql-markup-error", "sql --store {store} 'SELECT [/x] FROM keys'", None, 2, ""),
    ("sql-nan-json", "sql --store {store} --format json \"SELECT 'nan'::DOUBLE AS x, 'inf'::DOUBLE AS y\"", None, 0,
     ""),
    ("sql-out-folder", "sql --store {store} 'SELECT 1' --out {tmp}", None, 2, "is a folder: give a file name"),
    ("sql-out-dev-full", "sql --store {store} 'SELECT 1' --out /dev/full", None, 2, "No space left on device"),
    ("sql-out-no-parent", "sql --store {store} 'SELECT 1' --out {tmp}/no/such.csv", None, 2, "does not exist"),
    ("sql-parquet-stdout", "sql --store {store} 'SELECT 1' --format parquet", None, 2, "--format parquet needs --out"),
    ("sql-timeout-negative", "sql --store {store} 'SELECT 1' --timeout -1", None, 2, "must be between 0 and"),
    ("sql-timeout-text", "sql --store {store} 'SELECT 1' --timeout soon", None, 2, "is not a number of seconds"),
    ("sql-memory-limit", "sql --store {store} 'SELECT 1' --memory-limit lots", None, 2, "memory"),
    ("sql-format", "sql --store {store} 'SELECT 1' --format xml", None, 2, "invalid choice: 'xml'"),
    # ingest: refused before any model loads or any file is written
    ("ingest-segments", ING + " --segments nonsense", None, 2, "--segments: unknown text segment 'nonsense'"),
    ("ingest-segments-empty", ING + " --segments ,", None, 2, "--segments is empty"),
    ("ingest-segments-image", ING + " --segments image", None, 2, "unknown text segment 'image'"),
    ("ingest-split", ING + " --split nosuch", None, 2, "--split 'nosuch':"),
    ("ingest-split-mmmu", ING.replace("--benchmark sample", "--benchmark sample-mmmu") + " --split nosuch", None, 2,
     "no 'nosuch' files"),
    ("ingest-tokens", ING + " --tokens a:b", None, 2, "--tokens 'a:b' is not understood"),
    ("ingest-tokens-negative", ING + " --tokens=-1:4", None, 2, "is not understood"),
    ("ingest-shard", ING + " --shard 2/2", None, 2, "shards are numbered from 0"),
    ("ingest-shard-text", ING + " --shard half", None, 2, "is not I/N"),
    ("ingest-batch", ING + " --batch-size 0", None, 2, "--batch-size must be at least 1"),
    ("ingest-limit", ING + " --limit 0", None, 2, "--limit must be at least 1"),
    ("ingest-keys", ING + " --keys sideways", None, 2, "invalid choice: 'sideways'"),
    ("ingest-harness", ING + " --harness mine", None, 2, "invalid choice: 'mine'"),
    ("ingest-model", ING.replace("tiny:llava", "tiny:gpt"), None, 2, "unknown built-in model 'tiny:gpt'"),
    ("ingest-benchmark", ING.replace("--benchmark sample", "--benchmark {tmp}/none.tsv"), None, 2, "no such file"),
    ("ingest-benchmark-name", ING.replace("--benchmark sample", "--benchmark mmbench-xx"), None, 2,
     "unknown benchmark"),
    ("ingest-benchmark-folder", ING.replace("--benchmark sample", "--benchmark {store}/keys"), None, 2, ""),
    ("ingest-benchmark-not-tsv", ING.replace("--benchmark sample", "--benchmark {store}/keygap.json"), None, 2,
     "is neither a .tsv"),
    # tui and demo
    ("tui-redirected", "tui --store {store}", None, 2, "the explorer needs a terminal"),
    ("unknown-command", "frobnicate", None, 2, "invalid choice: 'frobnicate'"),
    ("unknown-option", "info --store {store} --colour", None, 2, "unrecognized arguments: --colour"),
]


@pytest.mark.parametrize(("case_id", "argv", "damage", "code", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_in_one_line_and_the_store_is_untouched(
        pristine, tmp_path, capsys, monkeypatch, case_id, argv, damage, code, expect):
    import shlex

    store = _copy(pristine, tmp_path, damage)
    monkeypatch.chdir(tmp_path)
    before = _digest(store)
    args = [a.replace("{store}", str(store)).replace("{tmp}", str(tmp_path)) for a in shlex.split(argv)]
    got, out, err = _run(args, capsys)
    assert "Traceback" not in out
    assert got == code, (got, err)
    _assert_one_line_messages(err, got, expect)
    if got == 0 and ("--json" in args or "json" in args):
        assert "NaN" not in out and "Infinity" not in out
    assert _digest(store) == before


def test_there_are_at_least_a_hundred_cases():
    assert len(CASES) + len(SERVED) >= 100


# -- input that is served: a benchmark row with a hostile index is skipped with its reason ----------------------
SERVED = ["inf", "1e400", "-inf", "nan", "-3", "1.5", "0x10", ""]


@pytest.mark.parametrize("index", SERVED)
def test_a_tsv_row_with_a_bad_index_is_skipped_with_its_reason(tmp_path, index):
    import csv

    from ingest.benchmarks import SAMPLE_TSV, open_benchmark

    with open(SAMPLE_TSV, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header = rows[0]
    body = [r for r in rows[1:] if r and len(r[header.index("image")]) > 64][:4]  # rows with their own image
    body[1][header.index("index")] = index
    body[2][header.index("image")] = index or "x"  # an image cell that is a hostile reference
    tsv = tmp_path / "bad.tsv"
    with open(tsv, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows([header, *body])
    source = open_benchmark(str(tsv))
    ids = [item.sample_id for item in source]
    assert ids == [body[0][0], body[3][0]]
    reasons = [reason for _, reason in source.skipped]
    assert f"index {index!r} is not a whole number" in reasons
    assert any("is neither base64 nor a row index" in r or "has no image" in r for r in reasons)


# -- a real read-only store and a real full disk ---------------------------------------------------------------
@contextlib.contextmanager
def _mounted(kind: str, source: Path | None, target: Path):
    """A read-only bind mount of ``source`` (or a 1 MiB tmpfs) at ``target``; skip where mounting is not
    allowed. Without root, a read-only store is made with chmod instead (root ignores file modes)."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        if kind != "ro":
            pytest.skip("a full file system needs a tmpfs mount (root)")
        shutil.copytree(source, target, dirs_exist_ok=True)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield target
        finally:
            for path in [target, *target.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    if kind == "ro":
        cmds = [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,ro,bind", str(target)]]
    else:
        cmds = [["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)]]
    for i, cmd in enumerate(cmds):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            if i:
                subprocess.run(["umount", str(target)], capture_output=True)
            pytest.skip(f"cannot mount here ({done.stderr.strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.slow
def test_compare_and_report_answer_from_a_read_only_store_and_say_nothing_was_cached(pristine, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(pristine, source)
    with _mounted("ro", source, tmp_path / "ro") as store:
        before = _digest(store)
        code, out, err = _run(["compare", "--store", str(store), "--model", "m", "--layer", "1",
                               "--permutations", "9", "--json"], capsys)
        assert code == 0, err
        assert [r["metric"] for r in json.loads(out)] == ["mmd", "js"]
        _assert_one_line_messages(err, code, "keygap compare: note: answers not cached: cannot write")
        code, out, err = _run(["report", "--store", str(store), "--out", str(tmp_path / "rep"), "--models", "m",
                               "--layers", "1", "--no-png", "--permutations", "9", "--replicates", "1",
                               "--projection", "pca"], capsys)
        assert code == 0, err
        assert "report written to" in out
        _assert_one_line_messages(err, code, "keygap report: note: answers not cached")
        code, out, err = _run(["ingest", "--store", str(store), "--model", "tiny:llava", "--benchmark", "sample",
                               "--limit", "1", "--no-progress"], capsys)
        assert code == 2
        _assert_one_line_messages(err, code, "writing needs a writable --store")
        assert _digest(store) == before


def test_a_full_disk_is_one_line_for_every_writing_command(pristine, tmp_path, capsys):
    with _mounted("tmpfs", None, tmp_path / "full") as disk:
        store = disk / "store"
        shutil.copytree(pristine, store)
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:  # fill it to the last byte
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        before = _digest(store)
        code, out, err = _run(["compare", "--store", str(store), "--model", "m", "--layer", "1",
                               "--permutations", "9"], capsys)
        assert code == 0 and "mmd" in out, err
        _assert_one_line_messages(err, code, "note: answers not cached: cannot write")
        code, out, err = _run(["report", "--store", str(store), "--out", str(disk / "rep"), "--models", "m",
                               "--layers", "1", "--no-png", "--permutations", "9", "--replicates", "1",
                               "--projection", "pca", "--no-cache"], capsys)
        assert code == 2
        _assert_one_line_messages(err, code, "No space left on device")
        code, out, err = _run(["sql", "--store", str(store), "SELECT 1 AS a", "--out", str(disk / "a.csv")], capsys)
        assert code == 2
        _assert_one_line_messages(err, code, "free space")
        code, out, err = _run(["ingest", "--store", str(store), "--model", "tiny:llava", "--benchmark", "sample",
                               "--limit", "1", "--no-progress"], capsys)
        assert code == 2
        _assert_one_line_messages(err, code, "No space left on device")
        assert _digest(store) == before
