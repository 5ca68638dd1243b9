"""The slice picker's model: what the store offers (Catalog) and what the user picked (Selection).

Kept free of Textual so the rules (which choices are valid, where "early" lands, what survives a
restart) are plain functions that tests and the state file can use without an app.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

ALL_SEGMENTS = "all"


@dataclass
class Catalog:
    """What a store holds, as the picker needs it (read once per store, in a worker)."""

    tree: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # model -> benchmark -> layers
    modalities: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (model, benchmark)
    segments: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)  # (model, benchmark, modality)
    ropes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    depth: dict[str, int | None] = field(default_factory=dict)  # decoder layers per model (run manifest)
    problems: list[str] = field(default_factory=list)  # damaged files left out of the store's view

    @property
    def empty(self) -> bool:
        return not self.tree

    def models(self) -> list[str]:
        return sorted(self.tree)

    def benchmarks(self, model: str) -> list[str]:
        return sorted(self.tree.get(model, {}))

    def layers(self, model: str, benchmark: str) -> list[int]:
        return list(self.tree.get(model, {}).get(benchmark, []))

    def modality_options(self, model: str, benchmark: str) -> list[str]:
        return self.modalities.get((model, benchmark), [])

    def segment_options(self, model: str, benchmark: str, modality: str) -> list[str]:
        return [ALL_SEGMENTS] + self.segments.get((model, benchmark, modality), [])


def read_catalog(store) -> Catalog:
    """Partitions and segments from the store's inventory (the commit markers say which segments each key
    file holds, so no key file is opened; labels are the same in every layer, so one layer is asked).
    pyarrow only, no DuckDB: importing and starting DuckDB cost the first screen ~0.3 s of a 2-core machine."""

    from keygap_tui.analysis import model_depth
    from store.reader import KeyStore

    ks = store if isinstance(store, KeyStore) else KeyStore(store)
    cat = Catalog()
    first_layer: dict[tuple[str, str], int] = {}
    for p in ks.partitions():
        m, b, layer = p["model"], p["benchmark"], int(p["layer"])
        layers = cat.tree.setdefault(m, {}).setdefault(b, [])
        if layer not in layers:
            layers.append(layer)
        mods = cat.modalities.setdefault((m, b), [])
        if p["modality"] not in mods:
            mods.append(p["modality"])
        ropes = cat.ropes.setdefault((m, b), [])
        if p["rope"] not in ropes:
            ropes.append(p["rope"])
        first_layer[(m, b)] = min(layer, first_layer.get((m, b), layer))
    for m, benches in cat.tree.items():
        for b in benches:
            benches[b].sort()
            cat.modalities[(m, b)].sort(key=_modality_order)
            cat.ropes[(m, b)].sort(key=lambda r: (r != "post", r))
        cat.depth[m] = model_depth(ks, m)
    for (m, b), layer in first_layer.items():
        rope = cat.ropes[(m, b)][0]
        for mod in cat.modalities[(m, b)]:
            found = ks.segments(m, b, mod, layer=layer, rope=rope)  # from the commit markers: no key file opened
            if found:
                cat.segments[(m, b, mod)] = sorted(found, key=_segment_order)
    cat.problems = list(ks.problems)
    return cat


def _segment_order(segment: str) -> tuple:
    """Prompt order, so the picker lists segments as they appear in a prompt."""
    order = {"system": 0, "role": 1, "image": 2, "hint": 3, "question": 4, "options": 5, "instruction": 6,
             "assistant": 7}
    return (order.get(segment, 9), segment)


def _modality_order(modality: str) -> tuple:
    order = {"image": 0, "text": 1, "video": 2, "special": 3}
    return (order.get(modality, 9), modality)


@dataclass
class Selection:
    """Two sides (A and B) of one model, benchmark and layer; segment "all" keeps every segment."""

    model: str = ""
    benchmark: str = ""
    layer: int = 1  # "early": layer 0 text keys depend on the token id alone (README, our defaults)
    a_modality: str = "image"
    a_segment: str = ALL_SEGMENTS
    b_modality: str = "text"
    b_segment: str = ALL_SEGMENTS
    rope: str = "post"

    def side_a(self):
        return self._side(self.a_modality, self.a_segment)

    def side_b(self):
        return self._side(self.b_modality, self.b_segment)

    def _side(self, modality: str, segment: str):
        """The analysis Side (imported here: the picker must not pull numpy into the first screen)."""
        from keygap_tui.analysis.sides import Side

        segs = None if segment in ("", ALL_SEGMENTS) else (segment,)
        return Side(self.model, self.benchmark, self.layer, modality, segs, self.rope)

    def spec(self, which: str) -> str:
        """The analysis layer's side spec, e.g. ``text:question`` (modality plus optional segment)."""
        modality, segment = (self.a_modality, self.a_segment) if which == "a" else (self.b_modality, self.b_segment)
        return modality if segment in ("", ALL_SEGMENTS) else f"{modality}:{segment}"

    def describe(self) -> str:
        return f"{self.model} / {self.benchmark} / L{self.layer}: {self.spec('a')} vs {self.spec('b')}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Selection:
        names = {f.name for f in fields(cls)}
        clean = {k: v for k, v in (data or {}).items() if k in names}
        try:
            return cls(**clean)
        except TypeError:
            return cls()

    def fitted(self, cat: Catalog) -> Selection:
        """The nearest valid selection in ``cat`` (a remembered slice may have been deleted since)."""
        if cat.empty:
            return self
        sel = replace(self)
        models = cat.models()
        if sel.model not in models:
            sel.model = models[0]
        benches = cat.benchmarks(sel.model)
        if sel.benchmark not in benches:
            sel.benchmark = benches[0]
        layers = cat.layers(sel.model, sel.benchmark)
        if sel.layer not in layers:
            sel.layer = nearest(layers, sel.layer)
        mods = cat.modality_options(sel.model, sel.benchmark)
        if sel.a_modality not in mods:
            sel.a_modality = "image" if "image" in mods else mods[0]
        if sel.b_modality not in mods:
            sel.b_modality = "text" if "text" in mods else mods[-1]
        if sel.a_segment not in cat.segment_options(sel.model, sel.benchmark, sel.a_modality):
            sel.a_segment = ALL_SEGMENTS
        if sel.b_segment not in cat.segment_options(sel.model, sel.benchmark, sel.b_modality):
            sel.b_segment = ALL_SEGMENTS
        ropes = cat.ropes.get((sel.model, sel.benchmark), ["post"])
        if sel.rope not in ropes:
            sel.rope = "post" if "post" in ropes else ropes[0]
        return sel


def nearest(options: list[int], target: int) -> int:
    return min(options, key=lambda v: (abs(v - target), v)) if options else target


def named_layer(stored: list[int], depth: int | None, name: str) -> tuple[int, bool]:
    """Where early / middle / late land: layer 1, L // 2, L - 1 of the model's depth (docs/ANALYSIS.md, "Defaults").

    Without a recorded depth the names map onto the stored layers. Returns (layer, exact): when the
    named layer was not ingested, the nearest stored one, with exact=False so the UI can say so.
    """
    if not stored:
        raise ValueError("no layers stored")
    if depth:
        from store.schema import resolve_layers

        target = resolve_layers(name, depth)[0]
    else:
        named = {"early": stored[min(1, len(stored) - 1)], "middle": stored[len(stored) // 2], "late": stored[-1]}
        target = named[name]
    layer = nearest(stored, target)
    return layer, layer == target


def step_layer(stored: list[int], current: int, step: int) -> int:
    """The stored layer ``step`` places after (or before) ``current``, clamped at the ends."""
    if not stored:
        return current
    if current not in stored:
        current = nearest(stored, current)
    i = stored.index(current) + step
    return stored[max(0, min(len(stored) - 1, i))]


def relative_depth_of(cat: Catalog, model: str, layer: int) -> float | None:
    """layer / (L - 1) from the model's recorded depth, or from its stored layers when none is recorded."""
    depth = cat.depth.get(model)
    if depth and depth > 1:
        return layer / (depth - 1)
    stored = sorted({v for b in cat.tree.get(model, {}).values() for v in b})
    return None if len(stored) < 2 else (layer - stored[0]) / (stored[-1] - stored[0])


def layer_at_depth(cat: Catalog, model: str, benchmark: str, depth: float | None, fallback: int) -> int:
    """The stored layer of ``model`` nearest to relative ``depth`` (``fallback``'s nearest without a depth)."""
    stored = cat.layers(model, benchmark) or [v for b in cat.tree.get(model, {}).values() for v in b]
    if not stored:
        return fallback
    if depth is None:
        return nearest(stored, fallback)
    return min(stored, key=lambda v: (abs((relative_depth_of(cat, model, v) or 0.0) - depth), v))
