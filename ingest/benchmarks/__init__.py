"""Benchmark readers: turn a name or a path into a stream of Items.

Users bring their own copies of MMBench-CN and MMMU (nothing is downloaded); `sample` and
`sample-mmmu` are a small bundled benchmark built from real images (see make_sample.py) in
exactly the two published formats, so every reader path runs offline.
"""

from __future__ import annotations

from pathlib import Path

from .base import BenchmarkError, BenchmarkSource, Item, decode_image
from .mmbench import MMBenchParquet, MMBenchTsv, _parquet_file
from .mmmu import DEFAULT_SPLIT as MMMU_DEFAULT_SPLIT
from .mmmu import REQUIRED_COLUMNS as MMMU_COLUMNS
from .mmmu import MMMUTree, split_of

__all__ = ["BENCHMARKS", "BenchmarkError", "BenchmarkSource", "Item", "decode_image",
           "open_benchmark", "SAMPLE_DIR"]

BENCHMARKS = ("sample", "sample-mmmu", "mmbench-cn", "mmbench-en", "mmmu")
SAMPLE_DIR = Path(__file__).parent / "data"
SAMPLE_TSV = SAMPLE_DIR / "sample_mmbench_cn.tsv"
SAMPLE_MMMU = SAMPLE_DIR / "sample_mmmu"
# MMBench's Parquet copies hold a dev and a test split; only dev has answers.
MMBENCH_DEFAULT_SPLIT = "dev"

_ACCEPTED = ("give 'sample', 'sample-mmmu', a path to an MMBench TSV, an MMBench Parquet file or "
             "folder, or an MMMU folder (<Subject>/validation-*.parquet), optionally prefixed "
             "'mmbench-cn:', 'mmbench-en:' or 'mmmu:'")


def open_benchmark(spec: str, *, split: str | None = None, name: str | None = None) -> BenchmarkSource:
    """Open a benchmark by name or path; `name` overrides the label the store files it under."""
    spec = str(spec).strip()
    if spec == "sample":
        return MMBenchTsv(SAMPLE_TSV, name=name or "sample", split=split, prompt_style="mmbench-cn")
    if spec == "sample-mmmu":
        return _open_parquet(SAMPLE_MMMU, "mmmu", split, name or "sample-mmmu", None)

    forced = None
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("mmbench-cn", "mmbench-en", "mmmu"):
        forced, spec = prefix, rest.strip()
    if not spec:
        raise BenchmarkError(f"'{prefix}:' needs a path after the colon; {_ACCEPTED}")
    if forced is None and spec in BENCHMARKS and not Path(spec).exists():
        raise BenchmarkError(f"'{spec}' is not bundled: download it yourself and pass its path "
                             f"(e.g. {spec}:/data/{spec}); {_ACCEPTED}")

    path = Path(spec).expanduser()
    if not path.exists():
        if forced is None and "/" not in spec and "." not in spec:
            raise BenchmarkError(f"unknown benchmark '{spec}'; {_ACCEPTED}")
        raise BenchmarkError(f"no such file or folder: {path}; {_ACCEPTED}")

    style = forced if forced in ("mmbench-cn", "mmbench-en") else None
    label = name or forced
    if path.is_file() and path.suffix.lower() == ".tsv":
        if forced == "mmmu":
            raise BenchmarkError(f"{path} is a TSV but 'mmmu:' expects the Parquet folder; {_ACCEPTED}")
        return MMBenchTsv(path, name=label, split=split, prompt_style=style)
    if path.is_file() and path.suffix.lower() == ".parquet":
        return _open_parquet(path, forced, split, label, style)
    if path.is_dir():
        return _open_parquet(path, forced, split, label, style)
    raise BenchmarkError(f"{path} is neither a .tsv, a .parquet nor a folder; {_ACCEPTED}")


def _open_parquet(path: Path, forced: str | None, split: str | None, name: str | None,
                  style: str | None) -> BenchmarkSource:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        hint = " (it holds .tsv files: pass the .tsv itself)" if path.is_dir() and any(
            path.glob("*.tsv")) else ""
        raise BenchmarkError(f"{path} holds no .parquet files{hint}; {_ACCEPTED}")

    columns = set(_parquet_file(files[0]).schema_arrow.names)
    kind = forced or ("mmmu" if all(c in columns for c in MMMU_COLUMNS) else "mmbench")
    if kind.startswith("mmbench") and "index" not in columns:
        raise BenchmarkError(f"{files[0]} has neither MMBench columns (index, question, image) nor "
                             f"MMMU columns ({', '.join(MMMU_COLUMNS)}); {_ACCEPTED}")

    if path.is_dir():
        files, split = _files_of_split(path, files, split, kind)
    if kind == "mmmu":
        return MMMUTree(files, path, name=name, split=split)
    return MMBenchParquet(files, path, name=name, split=split, prompt_style=style)


def _files_of_split(root: Path, files: list[Path], split: str | None, kind: str):
    """Pick the files of one split by their published names (validation-00000-of-00001.parquet)."""
    splits = sorted({s for s in (split_of(f) for f in files) if s})
    if not splits:
        return files, split  # unsplit names: MMBench may still filter rows by its `split` column
    if split is None:
        split = MMMU_DEFAULT_SPLIT if kind == "mmmu" else MMBENCH_DEFAULT_SPLIT
        if split not in splits:
            if kind == "mmmu":
                raise BenchmarkError(f"{root} has no '{split}' files (found splits: "
                                     f"{', '.join(splits)}); pass split=... to choose one")
            return files, None
    chosen = [f for f in files if split_of(f) == split]
    if not chosen:
        raise BenchmarkError(f"{root} has no '{split}' files; found splits: {', '.join(splits)}")
    return chosen, split
