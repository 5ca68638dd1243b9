"""SQL completion for the editor: tables, columns and the catalog's functions and macros, zsh style.

Tab after a word completes it: the longest common prefix of the candidates at once, then each candidate
in turn on further presses. Candidates come from the catalog itself (Schema, read once per session in a
worker), so keygap's views, their columns and whatever vector functions or macros the catalog defines
complete without a list kept here. Stdlib only: the editor calls it on every Tab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = ("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "LIMIT", "JOIN", "USING", "HAVING", "DISTINCT",
            "COUNT", "AVG", "DESCRIBE", "SUMMARIZE", "WITH", "AND", "OR", "NOT", "ASC", "DESC", "ALL")
#: DuckDB's own list functions for key vectors (vec is FLOAT[]): offered beside keygap's functions and macros
VECTOR_FUNCTIONS = ("list_cosine_similarity", "list_distance", "list_inner_product", "list_aggregate", "list_slice")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Schema:
    """What the SQL catalog offers: view -> [(column, type)], and its non-built-in functions and macros."""

    tables: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)

    def words(self) -> list[str]:
        cols = sorted({c for cs in self.tables.values() for c, _ in cs})
        return list(dict.fromkeys(list(self.tables) + cols + self.functions + list(KEYWORDS)))


def word_before(text: str) -> str:
    m = WORD.search(text)
    return m.group(0) if m else ""


def candidates(schema: Schema, prefix: str) -> list[str]:
    """Words starting with ``prefix`` (case-insensitive), tables and columns first."""
    if not prefix:
        return []
    low = prefix.lower()
    return [w for w in schema.words() if w.lower().startswith(low) and w.lower() != low]


def common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    first, last = min(w.lower() for w in words), max(w.lower() for w in words)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return words[0][:n]


def read_schema(con) -> Schema:
    """The views' columns and the functions/macros defined beyond DuckDB's own (a fresh catalog connection)."""
    schema = Schema()
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name NOT LIKE '\\_keygap\\_%' ESCAPE '\\' "
        "ORDER BY table_name, ordinal_position"
    ).fetchall()
    for table, column, kind in rows:
        schema.tables.setdefault(table, []).append((column, kind))
    fns = con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE NOT internal OR function_name LIKE 'keygap%' "
        "OR function_name IN (" + ", ".join(f"'{f}'" for f in VECTOR_FUNCTIONS) + ") ORDER BY 1"
    ).fetchall()
    schema.functions = [f for (f,) in fns]
    return schema
