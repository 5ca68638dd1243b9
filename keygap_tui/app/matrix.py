"""The results matrix: every comparison of the session, one row per model x layer x sides (x segment).

Kept free of Textual (and of numpy: it reads plain result dicts) so the rules are plain functions a test
can check: which value a cell shows (bias-corrected JS by default, raw on demand), where a p-value sits at
its floor 1/(B+1), the control groups and the inter/intra ratio (the same definition as `keygap report`'s
Table: mean(A-vs-B across the halves) / mean(A-vs-A, B-vs-B)), the logit decomposition's columns (mean
logit gap, centroid term, remainder, share explained; no argmax: its sign matters), the argmax per model and
column, sorting and pins. Rows are added as they are computed and are never cleared by a picker change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .formatting import fmt_number as _fmt

#: the control groups as analysis names them, and their short labels in the matrix
CONTROL_GROUPS = ("image-vs-image", "text-vs-text", "image-vs-text")


@dataclass
class MatrixRow:
    """One slice: its sides, and per measure the comparison (a ComparisonRow.to_dict) and control rows."""

    model: str
    benchmark: str
    layer: int
    rope: str
    a: str  # side specs as the picker writes them, e.g. "image", "text:question"
    b: str
    depth: float | None = None
    measures: dict[str, dict] = field(default_factory=dict)
    controls: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # metric -> group -> rows
    logits: dict | None = None  # the logit decomposition's row, or {"error": one line, "cell": short text}
    pinned: bool = False

    @property
    def key(self) -> tuple:
        return (self.model, self.benchmark, self.layer, self.rope, self.a, self.b)


def corrected(r: dict) -> float | None:
    """The bias-corrected value where the measure has one (JS), else the value itself."""
    bc = (r.get("extra") or {}).get("bias_corrected")
    return _num(bc) if bc is not None else _num(r.get("value"))


def shown_value(r: dict | None, raw: bool) -> float | None:
    if r is None:
        return None
    return _num(r.get("value")) if raw else corrected(r)


def p_floor(r: dict) -> float | None:
    """1 / (B + 1) for a permutation p-value with B draws (permutations, or JS's shuffles), else None."""
    params = r.get("params") or {}
    for name in ("permutations", "shuffles"):
        b = params.get(name)
        if isinstance(b, (int, float)) and b > 0:
            return 1.0 / (int(b) + 1)
    return None


def p_text(r: dict | None) -> str:
    """The p-value as shown: "<=0.0476" where it sits at its floor 1/(B+1) (more draws would lower it)."""
    if r is None or r.get("p_value") is None:
        return "-"
    p = float(r["p_value"])
    floor = p_floor(r)
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"≤{floor:.2g}"
    return f"{p:.3g}"


def control_means(row: MatrixRow, metric: str, raw: bool) -> dict[str, float | None]:
    """Mean over replicates of each control group, and the inter/intra ratio (None where undefined)."""
    groups = row.controls.get(metric, {})
    means = {g: _mean(shown_value(r, raw) for r in groups.get(g, [])) for g in CONTROL_GROUPS}
    intra = _mean([means["image-vs-image"], means["text-vs-text"]])
    ivt = means["image-vs-text"]
    means["ratio"] = None if ivt is None or intra is None or intra <= 0 else ivt / intra
    return means


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


#: the logit decomposition's columns: label -> where the number sits in its row ("value" or an ``extra`` key)
LOGIT_COLUMNS = {"logit gap": "value", "logit centroid": "centroid", "logit remainder": "remainder",
                 "logit share": "share_explained"}


def logit_number(r: dict | None, name: str) -> float | None:
    """One number of a logit decomposition row: the mean gap (``value``) or one of its ``extra`` terms."""
    if r is None or "error" in r:
        return None
    return _num(r.get("value") if name == "value" else (r.get("extra") or {}).get(name))


@dataclass(frozen=True)
class Column:
    """A matrix column: ``kind`` says how to read a row (a slice field, a measure, its p, a control)."""

    label: str
    kind: str  # "field", "value", "p", "ci", "control", "logits"
    name: str  # field name, metric, or metric for control columns
    group: str = ""  # control group or "ratio"


class Matrix:
    """The rows of the session, in the order computed, with sorting, pins and the argmax per model."""

    def __init__(self, metrics: tuple[str, ...]) -> None:
        self.metrics = tuple(metrics)
        self.rows: dict[tuple, MatrixRow] = {}
        self.raw = False  # show raw JS instead of the bias-corrected value
        self.sort_by: tuple[Column, bool] | None = None  # column, descending

    # --- content ---------------------------------------------------------------------------------------
    def row_for(self, model: str, benchmark: str, layer: int, rope: str, a: str, b: str, depth=None) -> MatrixRow:
        key = (model, benchmark, int(layer), rope, a, b)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = MatrixRow(model, benchmark, int(layer), rope, a, b, depth)
        elif depth is not None:
            row.depth = depth
        return row

    def add_measures(self, row: MatrixRow, results: list[dict]) -> None:
        for r in results:
            row.measures[r["metric"]] = r
            if row.depth is None and r.get("depth") is not None:
                row.depth = r["depth"]

    def add_logits(self, row: MatrixRow, result: dict) -> None:
        """The row's logit decomposition (a ComparisonRow dict), or {"error": ..., "cell": ...} when the slice
        cannot have one (no queries stored): the cell says so."""
        row.logits = result
        if row.depth is None and result.get("depth") is not None:
            row.depth = result["depth"]

    def add_controls(self, row: MatrixRow, results: list[dict]) -> None:
        by_metric: dict[str, dict[str, list[dict]]] = {}
        for r in results:
            by_metric.setdefault(r["metric"], {}).setdefault(r["group"], []).append(r)
        row.controls.update(by_metric)

    def clear(self, keep_pinned: bool = True) -> None:
        self.rows = {k: r for k, r in self.rows.items() if keep_pinned and r.pinned}

    def toggle_pin(self, key: tuple) -> bool:
        row = self.rows[key]
        row.pinned = not row.pinned
        return row.pinned

    # --- columns and cells ---------------------------------------------------------------------------------
    def columns(self) -> list[Column]:
        cols = [Column("model", "field", "model"), Column("L", "field", "layer"), Column("depth", "field", "depth"),
                Column("rope", "field", "rope"), Column("A", "field", "a"), Column("B", "field", "b")]
        with_ci = any(r.measures.get(m, {}).get("ci_low") is not None for r in self.rows.values() for m in self.metrics)
        classic = all(r.a.split(":")[0] == "image" and r.b.split(":")[0] == "text" for r in self.rows.values())
        aa, bb = ("I-I", "T-T") if classic else ("A-A", "B-B")
        for m in self.metrics:
            label = m if (m != "js" or self.raw) else "js bc"  # bc: bias-corrected
            cols.append(Column(label, "value", m))
            if with_ci:
                cols.append(Column(f"{m} CI", "ci", m))
            cols.append(Column(f"{m} p", "p", m))
        if any(r.logits is not None for r in self.rows.values()):
            cols += [Column(label, "logits", name) for label, name in LOGIT_COLUMNS.items()]
        for m in self.metrics:
            cols += [Column(f"{m} {aa}", "control", m, "image-vs-image"),
                     Column(f"{m} {bb}", "control", m, "text-vs-text"),
                     Column(f"{m} ratio", "control", m, "ratio")]
        return cols

    def value(self, row: MatrixRow, col: Column) -> Any:
        """The number (or text) behind a cell, for sorting, argmax and export."""
        if col.kind == "field":
            return getattr(row, col.name)
        r = row.measures.get(col.name)
        if col.kind == "value":
            return shown_value(r, self.raw)
        if col.kind == "p":
            return None if r is None else _num(r.get("p_value"))
        if col.kind == "ci":
            return None if r is None or r.get("ci_low") is None else (_num(r.get("ci_low")), _num(r.get("ci_high")))
        if col.kind == "control":
            if col.name not in row.controls:
                return None
            return control_means(row, col.name, self.raw)[col.group]
        if col.kind == "logits":
            return logit_number(row.logits, col.name)
        raise ValueError(col.kind)

    def text(self, row: MatrixRow, col: Column) -> str:
        if col.kind == "logits" and row.logits is not None and "error" in row.logits:
            return row.logits["cell"] if col.name == "value" else "-"
        if col.kind == "p":
            return p_text(row.measures.get(col.name))
        v = self.value(row, col)
        if col.kind == "ci":
            return "-" if v is None else f"[{_fmt(v[0])}, {_fmt(v[1])}]"
        if col.name == "depth":
            return "-" if v is None else f"{v:.2f}"
        if isinstance(v, float) or v is None:
            return _fmt(v)
        return str(v)

    # --- order -----------------------------------------------------------------------------------------
    def ordered(self) -> list[MatrixRow]:
        """Pinned rows first; then by the sort column (missing values last), else by model, sides and layer."""
        rows = sorted(self.rows.values(), key=lambda r: (r.model, r.benchmark, r.rope, r.a, r.b, r.layer))
        if self.sort_by is not None:
            col, desc = self.sort_by
            present = [r for r in rows if self.value(r, col) is not None]
            missing = [r for r in rows if self.value(r, col) is None]
            present.sort(key=lambda r: _sort_key(self.value(r, col)), reverse=desc)
            rows = present + missing
        return [r for r in rows if r.pinned] + [r for r in rows if not r.pinned]

    def sort_on(self, col: Column) -> None:
        """First press sorts descending (largest gap first), the second ascending, the third restores the
        model / layer order."""
        if self.sort_by is None or self.sort_by[0] != col:
            self.sort_by = (col, True)
        elif self.sort_by[1]:
            self.sort_by = (col, False)
        else:
            self.sort_by = None

    def argmax(self) -> set[tuple[tuple, str]]:
        """(row key, column label) of the largest value of each measure and control column, per model,
        benchmark, RoPE stage and pair of sides: "at which layer is the gap largest, per model"."""
        best: dict[tuple, tuple[float, tuple]] = {}
        for col in self.columns():
            if col.kind not in ("value", "control"):
                continue
            for row in self.rows.values():
                v = self.value(row, col)
                if v is None:
                    continue
                group = (col.label, row.model, row.benchmark, row.rope, row.a, row.b)
                if group not in best or v > best[group][0]:
                    best[group] = (v, row.key)
        counts: dict[tuple, int] = {}
        for group in best:
            counts[group] = sum(1 for r in self.rows.values() if (r.model, r.benchmark, r.rope, r.a, r.b) == group[1:])
        return {(key, group[0]) for group, (_, key) in best.items() if counts[group] > 1}

    # --- export ----------------------------------------------------------------------------------------
    def export_rows(self) -> list[dict]:
        """Flat rows with raw and corrected values side by side, p-values, their floors, CIs and controls."""
        out = []
        for row in self.ordered():
            d: dict[str, Any] = {"model": row.model, "benchmark": row.benchmark, "layer": row.layer, "rope": row.rope,
                                 "a": row.a, "b": row.b, "depth": row.depth, "pinned": row.pinned}
            for m in self.metrics:
                r = row.measures.get(m)
                d[m] = None if r is None else _num(r.get("value"))
                d[f"{m}_corrected"] = None if r is None else corrected(r)
                d[f"{m}_p"] = None if r is None else _num(r.get("p_value"))
                d[f"{m}_p_floor"] = None if r is None else p_floor(r)
                d[f"{m}_ci_low"] = None if r is None else _num(r.get("ci_low"))
                d[f"{m}_ci_high"] = None if r is None else _num(r.get("ci_high"))
                d[f"{m}_n"] = None if r is None else f"{r.get('n_a')}+{r.get('n_b')}"
                if m in row.controls:
                    for raw, suffix in ((True, ""), (False, "_corrected")):
                        means = control_means(row, m, raw)
                        d[f"{m}_ivi{suffix}"] = means["image-vs-image"]
                        d[f"{m}_tvt{suffix}"] = means["text-vs-text"]
                        d[f"{m}_ivt_ctrl{suffix}"] = means["image-vs-text"]
                        d[f"{m}_ratio{suffix}"] = means["ratio"]
            if any(r.logits is not None for r in self.rows.values()):
                for name in LOGIT_COLUMNS.values():
                    d["logits" if name == "value" else f"logits_{name}"] = logit_number(row.logits, name)
                ok = row.logits is not None and "error" not in row.logits
                d["logits_n_queries"] = (row.logits["extra"].get("n_queries") if ok else None)
                d["logits_error"] = None if row.logits is None else row.logits.get("error")
            out.append(d)
        return out


def _sort_key(v: Any):
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))
