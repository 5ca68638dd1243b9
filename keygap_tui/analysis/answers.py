"""Ask the results cache, compute what it lacks, store it: the one path every cached analysis takes.

An analysis splits its work into parts (compare and controls: one part per metric), describes each part
as a question (a dict of every parameter the numbers depend on) and supplies a ``compute`` generator that
produces the rows of the missing parts. ``answer`` looks every part up, runs ``compute`` once for the
parts the cache lacks, and stores each part as soon as it is done, so a cancelled run keeps what it
finished. A new analysis (per-head gaps, bootstrap intervals, ...) plugs in with its own ``kind``, question
and compute; the key, the data identity, storage and invalidation come from here and store.results.

A question's key hashes the question, CACHE_VERSION and the fingerprints of the key files the sides read
(store.results), so re-ingesting a slice makes its old answers unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from store.reader import KeyStore
from store.results import ResultsCache, question_key

from .progress import Steps
from .rows import ComparisonRow
from .sides import Side, depends

#: Bump when a change in the analysis code changes what a cached number means. 3: a seeded sample is a
#: window of the stored random order; 4: design-aware permutations, JS takes --permutations, intervals.
CACHE_VERSION = 4

Compute = Callable[[list[str]], Iterator[tuple[str, list[ComparisonRow]]]]


class CachedQuestions:
    """The results cache as one analysis call sees it: the data identity of its sides, keys, get and put.

    With ``use_cache=False`` nothing is read or written. The cache lives in the store, local or on S3."""

    def __init__(self, ks: KeyStore, sides: Iterable[Side], use_cache: bool = True):
        if ks.changed():  # a long-lived KeyStore (the TUI's) looks again after an ingest or a compaction
            ks.refresh()
        self.depends = depends(ks, sides)
        self.data_id = ResultsCache.data_id(self.depends)
        self.cache = ResultsCache(ks.location) if use_cache else None

    def key(self, question: Mapping[str, Any]) -> str:
        return question_key(question, self.data_id)

    def rows(self, key: str) -> list[ComparisonRow] | None:
        """The cached rows of an answer (``cached=True``), or None."""
        stored = self.cache.get(key) if self.cache is not None else None
        return None if stored is None else [ComparisonRow.from_dict(r, cached=True) for r in stored]

    def put_rows(self, key: str, rows: Sequence[ComparisonRow]) -> None:
        if self.cache is not None and rows:
            self.cache.put(key, [row.to_dict() for row in rows], depends=self.depends)


def answer(
    ks: KeyStore,
    sides: Iterable[Side],
    parts: Sequence[str],
    question: Callable[[str], Mapping[str, Any]],
    compute: Compute,
    *,
    use_cache: bool = True,
    steps: Steps | None = None,
) -> list[ComparisonRow]:
    """Rows of every part, in the order of ``parts``: from the cache where it has them, else from one call
    of ``compute(missing_parts)``, which yields ``(part, rows)`` as each part is done."""
    cached = CachedQuestions(ks, sides, use_cache)
    keys = {part: cached.key({**question(part), "version": CACHE_VERSION}) for part in parts}
    answers: dict[str, list[ComparisonRow]] = {}
    for part in parts:
        rows = cached.rows(keys[part])
        if rows is not None:
            answers[part] = rows
    missing = [part for part in parts if part not in answers]
    if missing:
        for part, rows in compute(missing):
            cached.put_rows(keys[part], rows)
            answers[part] = rows
    elif steps is not None:
        steps.done = steps.total
        steps.report("answered from the results cache")
    return [row for part in parts for row in answers[part]]
