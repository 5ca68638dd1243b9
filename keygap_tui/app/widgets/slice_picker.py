"""Model -> benchmark -> layer, and an A and a B side (modality + segment), in two lines.

The picker owns no data access: the app hands it a Catalog (read in a worker) and listens for
``SlicePicker.Changed``; choices always stay valid because each field's options follow the fields before it.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label

from ..selection import Catalog, Selection, layer_at_depth, named_layer, relative_depth_of, step_layer
from .choice import ChoiceField

FIELDS = ("model", "benchmark", "layer", "rope", "a_modality", "a_segment", "b_modality", "b_segment")


class SlicePicker(Vertical):
    DEFAULT_CSS = """
    SlicePicker { height: 2; width: 1fr; }
    SlicePicker > Horizontal { height: 1; width: 1fr; }
    SlicePicker Label.side { width: auto; padding: 0 1 0 0; text-style: bold; }
    SlicePicker Label.depth { width: auto; padding: 0 1 0 0; color: $text-muted; }
    """

    class Changed(Message):
        def __init__(self, selection: Selection, note: str = "") -> None:
            super().__init__()
            self.selection = selection
            self.note = note

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalog = Catalog()
        self.selection = Selection()

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ChoiceField("model", id="model", tooltip="left/right (h/l) to change")
            yield ChoiceField("bench", id="benchmark")
            yield ChoiceField("layer", id="layer", tooltip="1/2/3 early/middle/late, [ and ] previous/next")
            yield Label("", id="depth", classes="depth")
            yield ChoiceField("rope", id="rope", tooltip="keys after RoPE (what attention uses) or before it")
        with Horizontal():
            yield Label("A", classes="side")
            yield ChoiceField("", id="a_modality")
            yield ChoiceField("seg", id="a_segment")
            yield Label("  B", classes="side")
            yield ChoiceField("", id="b_modality")
            yield ChoiceField("seg", id="b_segment")

    def field(self, name: str) -> ChoiceField:
        return self.query_one(f"#{name}", ChoiceField)

    def set_catalog(self, catalog: Catalog, selection: Selection) -> None:
        self.catalog = catalog
        self._apply(selection.fitted(catalog))

    def _apply(self, sel: Selection) -> None:
        cat = self.catalog
        self.selection = sel
        self.field("model").set_options(cat.models(), sel.model)
        self.field("benchmark").set_options(cat.benchmarks(sel.model), sel.benchmark)
        self.field("layer").set_options([str(v) for v in cat.layers(sel.model, sel.benchmark)], str(sel.layer))
        depth = relative_depth_of(cat, sel.model, sel.layer)
        self.query_one("#depth", Label).update("" if depth is None else f"depth {depth:.2f}")
        self.field("rope").set_options(cat.ropes.get((sel.model, sel.benchmark), ["post"]), sel.rope)
        mods = cat.modality_options(sel.model, sel.benchmark)
        self.field("a_modality").set_options(mods, sel.a_modality)
        self.field("b_modality").set_options(mods, sel.b_modality)
        for side in ("a", "b"):
            options = cat.segment_options(sel.model, sel.benchmark, getattr(sel, f"{side}_modality"))
            self.field(f"{side}_segment").set_options(options, getattr(sel, f"{side}_segment"))

    def on_choice_field_changed(self, event: ChoiceField.Changed) -> None:
        event.stop()
        name = event.field.id
        data = self.selection.to_dict()
        data[name] = int(event.value) if name == "layer" else event.value
        if name == "model":  # another model: the same relative depth, so two depths compare like for like
            data["layer"] = layer_at_depth(self.catalog, event.value, self.selection.benchmark,
                                           relative_depth_of(self.catalog, self.selection.model, self.selection.layer),
                                           self.selection.layer)
        self.select(Selection.from_dict(data))

    def select(self, sel: Selection, note: str = "") -> None:
        """Make ``sel`` current (fitted to the catalog) and tell the app."""
        sel = sel.fitted(self.catalog)
        changed = sel != self.selection
        self._apply(sel)
        if changed or note:
            self.post_message(self.Changed(sel, note))

    # --- layer keys -----------------------------------------------------------------------------------
    def jump_layer(self, name: str) -> None:
        sel = self.selection
        stored = self.catalog.layers(sel.model, sel.benchmark)
        if not stored:
            return
        layer, exact = named_layer(stored, self.catalog.depth.get(sel.model), name)
        note = "" if exact else f"{name} layer was not ingested; showing the nearest stored layer {layer}"
        data = sel.to_dict() | {"layer": layer}
        self.select(Selection.from_dict(data), note)

    def step_layer(self, step: int) -> None:
        sel = self.selection
        layer = step_layer(self.catalog.layers(sel.model, sel.benchmark), sel.layer, step)
        self.select(Selection.from_dict(sel.to_dict() | {"layer": layer}))
