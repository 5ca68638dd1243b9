"""The keygap terminal UI: pick a slice, compare its sides, and look at it four ways (tabs).

Structure (after Harlequin and Posting): one widget per module under widgets/, the work in tasks.py
(plain functions over keygap_tui.analysis), and this App owning the jobs. Every job runs in a cancellable
thread worker (``start_job``); progress comes back as messages, and every failure is routed to
``show_error`` - one line in the status bar and a notification, never a traceback, never the end of the app.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from keygap_tui.analysis.defaults import DEFAULT_METRICS
from store.errors import KeygapError

from .config import THEMES, AnalysisSettings, Config, State, load_config, load_state, save_state
from .selection import Catalog, Selection, read_catalog
from .threads import cap_before_load
from .widgets.attention_pane import AttentionPane
from .widgets.controls_pane import ControlsPane
from .widgets.help_screen import HelpScreen
from .widgets.layers_pane import LayersPane
from .widgets.matrix_table import MatrixTable
from .widgets.problems_bar import ProblemsBar
from .widgets.row_viewer import RowViewer
from .widgets.scatter_pane import ScatterPane, ScatterPlot
from .widgets.slice_picker import SlicePicker
from .widgets.sql_pane import SqlPane
from .widgets.status_line import StatusLine
from .widgets.vim_table import VimTable

TABS = ("scatter", "controls", "layers", "sql", "attention")
TAB_FOCUS = {"sql": "#sql-editor", "scatter": "#scatter-plot"}  # where focus goes when a tab opens
TEXT_ENTRY = ("TextArea", "Input")  # widgets that take typed letters: Esc leaves them
QUIET_GROUPS = {"warmup", "schema"}  # background chores: no "done" message over the user's last one
UNCANCELLABLE = {"catalog", "warmup"}  # Esc is for the user's work; without these nothing else can run
ACTIVE = (WorkerState.PENDING, WorkerState.RUNNING)  # a worker in these states is still the group's job
PROGRESS_EVERY_S = 0.05  # at most 20 progress repaints a second, whatever the worker reports


def _tasks():
    """tasks pulls in numpy and the analysis layer: load it with the first job, not before the first screen."""
    from . import tasks

    return tasks


class JobProgress(Message):
    def __init__(self, group: str, fraction: float, message: str) -> None:
        super().__init__()
        self.group, self.fraction, self.message = group, fraction, message


class KeygapApp(App):
    CSS_PATH = Path(__file__).with_name("keygap.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "keygap"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        # F-keys and ctrl+p are priority bindings: they work from any focus, the SQL editor included
        Binding("f1", "help", "help", id="help", priority=True),
        Binding("question_mark", "help", "help", id="help_key", show=False),
        Binding("c", "compute('slice')", "compute", id="compute", tooltip="this slice: one matrix row"),
        Binding("C", "compute('layers')", "matrix", id="compute_matrix",
                tooltip="every layer of every model on this benchmark"),
        Binding("S", "compute('segments')", "segment sweep", id="compute_segments", show=False,
                tooltip="side A against each segment of side B's modality, at this layer"),
        Binding("L", "compute('logits')", "logits", id="compute_logits", show=False,
                tooltip="this slice's logit decomposition (needs ingest --queries): matrix columns logit gap, "
                "centroid, remainder, share"),
        Binding("m", "maximize", "maximise / restore the focused pane", id="maximize", show=False),
        Binding("b", "beside", "side by side: pin this slice (plot + matrix row); b again unpins", id="beside",
                show=False),
        Binding("r,ctrl+r", "run_tab", "run tab", id="run_tab"),
        Binding("escape", "cancel", "cancel", id="cancel"),
        Binding("1", "layer('early')", "early layer", id="layer_early", show=False),
        Binding("2", "layer('middle')", "middle layer", id="layer_middle", show=False),
        Binding("3", "layer('late')", "late layer", id="layer_late", show=False),
        Binding("M", "cycle_field('model')", "next model (the layer keeps its relative depth)", id="model_next",
                show=False),
        Binding("R", "cycle_field('rope')", "other RoPE stage (pre / post)", id="rope_next", show=False),
        Binding("left_square_bracket", "step_layer(-1)", "previous layer", id="layer_previous", show=False),
        Binding("right_square_bracket", "step_layer(1)", "next layer", id="layer_next", show=False),
        Binding("f2", "tab('scatter')", "scatter tab", id="tab_scatter", show=False, priority=True),
        Binding("f3", "tab('controls')", "controls tab", id="tab_controls", show=False, priority=True),
        Binding("f4", "tab('layers')", "layers tab", id="tab_layers", show=False, priority=True),
        Binding("f5", "tab('sql')", "SQL tab", id="tab_sql", show=False, priority=True),
        Binding("f6", "tab('attention')", "attention tab", id="tab_attention", show=False, priority=True),
        Binding("t", "toggle_projection", "PCA / t-SNE", id="projection", show=False),
        Binding("a", "run_tab(True)", "Controls at every stored layer (r: the report's early, middle, late)",
                id="controls_all", show=False),
        Binding("e", "export('csv')", "export CSV", id="export_csv"),
        Binding("E", "export('json')", "export JSON", id="export_json", show=False),
        Binding("ctrl+e", "export('parquet')", "export Parquet (binary columns kept as bytes)", id="export_parquet",
                show=False),
        Binding("ctrl+s", "screenshot", "save screen as SVG", id="screenshot", show=False),
        Binding("y", "copy", "copy value (OSC 52)", id="copy", show=False),
        Binding("T", "toggle_theme", "light / dark theme", id="theme", show=False),
        Binding("q", "quit", "quit", id="quit"),
    ]

    def __init__(
        self,
        store: str,
        *,
        config: Config | None = None,
        config_path: Path | None = None,
        state_path: Path | None = None,
        settings: AnalysisSettings | None = None,
        show_timings: bool = True,
        store_note: str = "",
    ) -> None:
        super().__init__()
        # No animations: a tab switch animated its underline for ~0.3 s of repaints, which over SSH and on a
        # busy machine is what made keys feel slow (benchmarks/bench_tui.py, key reactions)
        self.animation_level = "none"
        self.store = str(store)
        self.store_note = store_note  # why this store was opened when none was named (store.store_option.choose_store)
        self.startup_errors: list[str] = []
        if config is None:
            config = load_config(config_path)
        if config.problems:
            self.startup_errors += [f"config file {config.path} (the rest of it applies):"] + config.problems
        self.config = config
        self.settings = settings or config.analysis
        self.state_path = state_path
        self.state: State = load_state(state_path, self.store)
        self.show_timings = show_timings
        self.catalog = Catalog()
        self.selection = Selection.from_dict(self.state.selection)
        self._job_done: dict[Worker, Callable[[Any], None]] = {}
        self._job_label: dict[Worker, str] = {}
        self._last_progress: dict[str, float] = {}
        self._layers_sweep: object | None = None  # the running Layers sweep (see action_run_tab)
        self._logits_failed: list[str] = []  # the running matrix job's first logit decomposition that could not run
        self._sql_con = None  # store.catalog.SqlCatalog, made on the first query
        self._sql_cursor = None
        self._sql_lock = threading.Lock()  # the schema and the first query may both build the catalog
        self._schema_asked = False
        # Set once the warm-up has loaded the libraries and capped their thread pools. Computations wait for
        # it: changing OpenBLAS's thread count while another thread is inside a BLAS call can deadlock.
        self.libraries_ready = threading.Event()
        # In `keygap tui` no numerical library is loaded yet: capping their pools through the environment
        # makes the warm-up's threadpoolctl step unnecessary, so work starts at once (threads.py says why).
        self.capped_at_load = cap_before_load(self.settings.threads())
        if self.capped_at_load:
            self.libraries_ready.set()
        self._apply_keymap()
        # the file wins over remembered state; a theme chosen with T (remembered) only where the file sets none
        theme = config.theme if "theme" in config.explicit else (self.state.theme or config.theme)
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.startup_errors.append(f"unknown theme {theme!r}: use dark, light or a Textual theme name")

    # --- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ProblemsBar(id="problems")
        yield SlicePicker(id="picker")
        yield MatrixTable(self.settings.key_metrics, id="results")
        with TabbedContent(id="tabs", initial=self.state.tab if self.state.tab in TABS else "scatter"):
            with TabPane("Scatter F2", id="scatter"):
                yield ScatterPane(max_points=self.settings.max_plot_points, id="scatter-pane")
            with TabPane("Controls F3", id="controls"):
                yield ControlsPane(id="controls-pane")
            with TabPane("Layers F4", id="layers"):
                yield LayersPane(list(self.settings.key_metrics or DEFAULT_METRICS), self.state.layers_metric,
                                 id="layers-pane")
            with TabPane("SQL F5", id="sql"):
                yield SqlPane(self.state.sql_history, id="sql-pane")
            with TabPane("Attention F6", id="attention"):
                yield AttentionPane(id="attention-pane")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        method = self.state.projection if self.state.projection in ("pca", "tsne") else "pca"
        self.query_one(ScatterPane).set_method(method)
        self.status.say(f"opening {self.store} ...")
        for problem in self.startup_errors:
            self.query_one(ProblemsBar).add(problem)  # they hold all session: listed until the app ends
        self.start_job(
            "catalog", "reading the store", lambda progress, stop: read_catalog(self.store), self._catalog_ready,
            needs_libraries=False,
        )

    def _warm_up(self) -> None:
        """After the catalog (what the user waits for), load the numerical libraries in the background."""
        threads = self.settings.threads()

        cap = not self.capped_at_load

        def work(progress, stop):
            try:
                return _tasks().warm_up(threads, progress, cap=cap)
            finally:
                self.libraries_ready.set()

        self.start_job("warmup", "loading libraries", work, self._warm, needs_libraries=False)

    def _warm(self, limiter) -> None:
        self._thread_limiter = limiter  # kept: the limits hold while the app runs

    def _catalog_ready(self, catalog: Catalog) -> None:
        self.catalog = catalog
        picker = self.query_one(SlicePicker)
        picker.set_catalog(catalog, self.selection)
        self.selection = picker.selection
        if catalog.empty:
            self.status.say(f"{self.store} holds no keys yet: run `keygap ingest` (the SQL tab works)")
        else:
            n = sum(len(b) for b in catalog.tree.values())
            where = str(self.store) if len(str(self.store)) <= 32 else "…" + str(self.store)[-31:]
            # counts first: a narrow terminal cuts the end of the line, and a long path is the least news
            self.status.say(
                f"{len(catalog.tree)} model(s), {n} model/benchmark pair(s) in {where}. "
                f"{self._key('compute')}: compute, {self._key('run_tab')}: run tab, {self._key('help')}: help"
            )
        if self.store_note:
            self.notify(self.store_note, title="store", markup=False)
        for problem in catalog.problems:  # damaged files: left out, and said on screen all session
            self.query_one(ProblemsBar).add(problem)
        if self.focused is None or self.focused.id == "model":  # Textual's first focus, not the user's choice
            self.query_one(MatrixTable).focus()
        self._save_state()
        self._warm_up()

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    # --- keys -----------------------------------------------------------------------------------------
    def _apply_keymap(self) -> None:
        known = {b.id for b in self.all_bindings()}
        unknown = sorted(set(self.config.keys) - known)
        if unknown:
            self.startup_errors.append(
                f"unknown action(s) in [keys]: {', '.join(unknown)}; press F1 for the list of action ids"
            )
        self.set_keymap({k: v for k, v in self.config.keys.items() if k in known})

    def all_bindings(self) -> list[Binding]:
        """Every rebindable action (app and widget level), for help, palette and keymap checks."""
        seen, out = set(), []
        for b in list(self.BINDINGS) + list(MatrixTable.BINDINGS) + list(ScatterPlot.BINDINGS) + list(SqlPane.BINDINGS):
            if isinstance(b, Binding) and b.id and b.id not in seen:
                seen.add(b.id)
                out.append(b)
        return out

    def key_of(self, binding: Binding) -> str:
        keys = self.config.keys.get(binding.id, binding.key)
        return ", ".join(self.get_key_display(Binding(k.strip(), binding.action)) for k in keys.split(",") if k.strip())

    def _key(self, binding_id: str) -> str:
        """The first key of an action as shown to the user (after the keymap)."""
        for b in self.all_bindings():
            if b.id == binding_id:
                return self.key_of(b).split(",")[0]
        return "?"

    def key_rows(self) -> list[tuple[str, str, str]]:
        rows = [(self.key_of(b), b.description + (f": {b.tooltip}" if b.tooltip else ""), b.id)
                for b in self.all_bindings()]
        rows += [
            ("ctrl+p", "command palette (every action, searchable)", "-"),
            ("h/l, left/right", "change the focused picker field", "-"),
            ("j/k, up/down", "move in tables; next/previous picker field", "-"),
            ("tab, shift+tab", "move focus", "-"),
            ("ctrl+q", "quit", "-"),
        ]
        return rows

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.all_bindings():
            if b.id.startswith("sql_history"):
                continue
            yield SystemCommand(f"{b.description} ({self.key_of(b)})", f"action id: {b.id}",
                                self._palette_callback(b.action))

    def _palette_callback(self, action: str) -> Callable[[], None]:
        return lambda: self.call_later(self.run_action, action)

    # --- jobs -----------------------------------------------------------------------------------------
    def start_job(
        self, group: str, label: str, fn: Callable, on_done: Callable[[Any], None], *, needs_libraries: bool = True
    ) -> Worker:
        """Run ``fn(progress, should_stop)`` in a thread worker; a new job of a group cancels the old one.

        ``needs_libraries``: wait (cancellably) for the warm-up before computing (see ``libraries_ready``).
        """
        self.status.start(group, label, cancellable=group not in UNCANCELLABLE)

        def work():
            worker = get_current_worker()

            def progress(fraction: float, message: str) -> None:
                now = time.monotonic()
                if now - self._last_progress.get(group, 0.0) >= PROGRESS_EVERY_S or fraction >= 1.0:
                    self._last_progress[group] = now
                    self.post_message(JobProgress(group, fraction, message))

            def should_stop() -> bool:
                return worker.is_cancelled

            if needs_libraries:
                while not self.libraries_ready.wait(0.05):
                    if should_stop():
                        return None
                    progress(0.0, "waiting for the libraries to load")
            return fn(progress, should_stop)

        worker = self.run_worker(work, name=label, group=group, thread=True, exclusive=True, exit_on_error=False)
        self._job_done[worker] = on_done
        self._job_label[worker] = label
        return worker

    def on_job_progress(self, message: JobProgress) -> None:
        self.status.progress(message.group, message.fraction, message.message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker not in self._job_done or event.state in ACTIVE:
            return
        if worker.group == "sql":
            self._sql_finished(event.state, worker)
        done = self._job_done.pop(worker)
        label = self._job_label.pop(worker, worker.name)
        current = [w for w in self.workers if w.group == worker.group and w is not worker and w.state in ACTIVE]
        if event.state == WorkerState.SUCCESS:
            if not current:
                self.status.finish(worker.group, None if worker.group in QUIET_GROUPS else f"{label}: done")
            try:
                done(worker.result)
            except Exception as exc:  # a bug in showing a result must not end the session
                self.show_error(exc)
        elif event.state == WorkerState.CANCELLED:
            if not current:
                self.status.finish(worker.group, f"{label}: cancelled")
        elif event.state == WorkerState.ERROR:
            if not current:
                self.status.finish(worker.group, "")
            self.show_error(worker.error, label)

    def show_error(self, error: BaseException | str, context: str = "") -> None:
        """The one place errors go: one line in the status bar and a notification."""
        errors_module = sys.modules.get("keygap_tui.analysis.errors")  # not loaded -> cannot be a Cancelled
        if errors_module is not None and isinstance(error, errors_module.Cancelled):
            self.status.say(f"{context}: cancelled" if context else "cancelled")
            return
        if isinstance(error, str):
            text = error
        elif isinstance(error, (KeygapError, ValueError, OSError)):
            text = str(error)
        else:
            text = f"{type(error).__name__}: {error} (unexpected; please report it)"
            self.log.error(repr(error))
        text = " ".join(text.split()) or type(error).__name__
        if context:
            text = f"{context}: {text}"
        self.status.say(text, error=True)
        self.notify(text, severity="error", timeout=8, markup=False)

    def action_cancel(self) -> None:
        running = [w for w in list(self._job_done) if w.group not in UNCANCELLABLE and w.state in ACTIVE]
        if self._sql_cursor is not None:
            try:
                self._sql_cursor.interrupt()
            except Exception:  # the query may have finished between the check and the call
                pass
        for w in running:
            w.cancel()
        if running:
            return
        focused = self.focused
        if focused is not None and any(t in TEXT_ENTRY for t in (c.__name__ for c in type(focused).__mro__)):
            self.screen.focus_next()  # Esc leaves the editor, so single-letter keys work again
            self.status.say(f"left the editor ({self._key('tab_sql')} or a click goes back)")
        else:
            self.status.say("nothing to cancel")

    # --- picker ---------------------------------------------------------------------------------------
    def on_slice_picker_changed(self, event: SlicePicker.Changed) -> None:
        self.selection = event.selection  # the matrix keeps every row: a picker change never clears it
        self.query_one(ScatterPane).mark_stale(self.selection)
        self.query_one(ControlsPane).mark_stale(self.selection)
        self.status.say(event.note or f"{self.selection.describe()}  ({self._key('compute')}: compute)")
        self._save_state()

    def action_layer(self, name: str) -> None:
        self.query_one(SlicePicker).jump_layer(name)

    def action_cycle_field(self, name: str) -> None:
        """M / R: the next model or RoPE stage without moving the focus to the picker (side by side)."""
        field = self.query_one(SlicePicker).field(name)
        if len(field.options) < 2:
            self.status.say(f"only one {name} in this store: {field.value or '-'}")
            return
        field.action_cycle(1)

    def action_step_layer(self, step: int) -> None:
        self.query_one(SlicePicker).step_layer(step)

    def _need_keys(self) -> bool:
        if self.catalog.empty:
            self.show_error(f"{self.store} holds no keys yet: run `keygap ingest --model ... --benchmark ...` first")
            return False
        return True

    # --- compute --------------------------------------------------------------------------------------
    def action_compute(self, scope: str = "slice") -> None:
        """Fill matrix rows: this slice, every layer of every model, or a segment sweep (tasks.matrix_plan).

        Each row appears as soon as its measures are done and again with its control groups; Escape
        stops the job and keeps every finished row."""
        if not self._need_keys():
            return
        sel, settings = self.selection, self.settings
        only_logits = scope == "logits"  # L: this slice's logit decomposition alone
        plan = _tasks().matrix_plan(self.catalog, sel, "slice" if only_logits else scope)
        if not plan:
            self.show_error(f"nothing to compute for {scope}: {sel.describe()}")
            return
        table = self.query_one(MatrixTable)
        self._logits_failed = []  # why a logit decomposition could not run: said once per job, each cell says it

        def emit(part, p, rows):
            if not self.show_timings:
                rows = [r | {"seconds": None} for r in rows]
            self.call_from_thread(self._matrix_part, table, part, p, rows)

        label = {"slice": f"compare {sel.spec('a')} vs {sel.spec('b')} L{sel.layer}",
                 "logits": f"logits {sel.spec('a')} vs {sel.spec('b')} L{sel.layer}",
                 "layers": f"matrix: {len(plan)} model x layer rows",
                 "segments": f"segment sweep: {len(plan)} rows"}[scope]
        kwargs = {"measures": False, "logits": True, "with_controls": False} if only_logits else {}
        self.start_job(
            "compute", label,
            lambda progress, stop: _tasks().matrix_rows(self.store, plan, settings, emit, progress, stop, **kwargs),
            lambda done: self._matrix_done(done, len(plan)),
        )

    def _matrix_part(self, table: MatrixTable, part: str, p, rows: list[dict]) -> None:
        m = table.matrix
        row = m.row_for(p.model, p.benchmark, p.layer, p.rope, p.a, p.b)
        if part == "logits":
            m.add_logits(row, rows[0])
            if "error" in rows[0] and not self._logits_failed:
                self._logits_failed.append(f"logits of {p.model} L{p.layer}: {rows[0]['error']}")
                self.show_error(self._logits_failed[0])
        else:
            (m.add_measures if part == "measures" else m.add_controls)(row, rows)
        table.add(row)

    def _matrix_done(self, done: int, planned: int) -> None:
        if self._logits_failed:  # the job's "done" must not cover why a logits cell is empty
            self.status.say(self._logits_failed[0], error=True)
        elif planned > 1:
            self.status.say(
                f"{done} of {planned} matrix rows computed; s sorts, p pins, highlighted = largest per model")

    def on_scatter_plot_nearest(self, event: ScatterPlot.Nearest) -> None:
        """n / N on the scatter: the text tokens nearest (in key space) to A's centroid or to the cursor."""
        pane = self.query_one(ScatterPane)
        sel = pane.result.selection or self.selection
        what = "A's centroid" if event.point is None else "the selected point"
        head = pane.result.head if pane.result is not None else None
        self.start_job(
            "nearest", f"text tokens nearest to {what}",
            lambda progress, stop: _tasks().nearest_tokens(self.store, sel, self.settings, event.point,
                                                           progress=progress, should_stop=stop, head=head),
            pane.show_nearest,
        )

    def action_beside(self) -> None:
        """Pin the scatter's slice on the left and its matrix row on top; the next r draws the picker's slice
        beside it (change the model: the layer keeps its relative depth; or the RoPE stage)."""
        pane = self.query_one(ScatterPane)
        if pane.result is None and pane.pinned is None:
            self.show_error("nothing to pin yet: run the Scatter (F2, r) first")
            return
        pinned = pane.toggle_pin()
        table = self.query_one(MatrixTable)
        if pinned is None:
            self.status.say("unpinned: one plot again")
            return
        sel = pinned.selection
        key = (sel.model, sel.benchmark, sel.layer, sel.rope, sel.spec("a"), sel.spec("b"))
        if key in table.matrix.rows and not table.matrix.rows[key].pinned:
            table.matrix.toggle_pin(key)
            table.redraw(focus_key=key)
        self.status.say(f"pinned on the left; {self._key('model_next')}: next model (same relative depth), "
                        f"{self._key('rope_next')}: other RoPE stage, then {self._key('run_tab')}")

    def action_maximize(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        elif self.focused is not None:
            self.screen.maximize(self.focused, container=False)

    def on_matrix_table_row_chosen(self, event: MatrixTable.RowChosen) -> None:
        """Enter on a matrix row: the picker (and so every tab) goes to that slice."""
        r = event.row
        a_mod, _, a_seg = r.a.partition(":")
        b_mod, _, b_seg = r.b.partition(":")
        sel = Selection(r.model, r.benchmark, r.layer, a_mod, a_seg or "all", b_mod, b_seg or "all", r.rope)
        self.query_one(SlicePicker).select(sel)

    def action_run_tab(self, every_layer: bool = False) -> None:
        tab = self.current_tab
        if tab == "sql":
            self.run_sql()
            return
        if not self._need_keys():
            return
        sel, settings = self.selection, self.settings
        if tab == "scatter":
            self._run_scatter(sel)
        elif tab == "controls":
            layers = (self.catalog.layers(sel.model, sel.benchmark) if every_layer
                      else _tasks().report_layers(self.catalog, sel))
            pane = self.query_one(ControlsPane)
            self.start_job(
                "controls", f"control groups at layers {','.join(map(str, layers))}",
                lambda progress, stop: _tasks().control_groups(self.store, sel, layers, settings, progress, stop),
                lambda result: pane.show(result, f"{sel.model} / {sel.benchmark}"),
            )
        elif tab == "attention":
            attention = self.query_one(AttentionPane)

            def shown(view) -> None:
                attention.show(view)
                self.status.say("Enter on a heatmap cell: that kv head's scatter (backspace: back here)")

            self.start_job(
                "attention", f"attention of {sel.model} over layers and heads",
                lambda progress, stop: _tasks().attention_view(self.store, sel, settings, progress, stop),
                shown,
            )
        elif tab == "layers":
            pane = self.query_one(LayersPane)
            metric = pane.metric

            token = self._layers_sweep = object()  # a sweep that a newer one replaced shows nothing more

            def show_partial(partial) -> None:
                if self._layers_sweep is token:
                    pane.show(partial)

            def emit(partial) -> None:  # rows so far: the table and plot fill while the sweep runs
                self.call_from_thread(show_partial, partial)

            self.start_job(
                "layers", f"{metric} over layers and models",
                lambda progress, stop: _tasks().sweep_layers(self.store, sel, metric, settings, progress, stop, emit),
                pane.show,
            )

    def _run_scatter(self, sel: Selection, head: int | None = None, note: str = "") -> None:
        """Project sides A and B of ``sel`` (``head``: that kv head's columns of every key) into the Scatter tab."""
        pane = self.query_one(ScatterPane)
        method, settings = pane.method, self.settings
        what = "A and B" if head is None else f"kv head {head} of layer {sel.layer}"
        self.start_job(
            "scatter", f"{'t-SNE' if method == 'tsne' else 'PCA'} of {what}",
            lambda progress, stop: _tasks().project_slice(self.store, sel, method, settings, progress, stop,
                                                          head=head),
            lambda result: pane.show(result, note),
        )

    def on_head_heatmap_chosen(self, event) -> None:
        """Enter on a heatmap cell: the picker goes to that layer (sides and RoPE of the heatmap) and the
        Scatter tab draws that kv head's keys, with the head's numbers above it; backspace comes back."""
        event.stop()
        pane = self.query_one(AttentionPane)
        view = pane.result
        if view is None or view.selection is None:
            return
        sel = replace(view.selection, layer=event.layer)
        self.query_one(SlicePicker).select(sel)
        self.action_tab("scatter")
        self._run_scatter(sel, event.head, pane.head_note(event.layer, event.head))

    def on_scatter_plot_back(self, event: ScatterPlot.Back) -> None:
        event.stop()
        self.action_tab("attention")
        self.call_after_refresh(lambda: self.query_one("#attention-heatmap").focus())

    def action_toggle_projection(self) -> None:
        pane = self.query_one(ScatterPane)
        pane.set_method("tsne" if pane.method == "pca" else "pca")
        self.state.projection = pane.method
        self._save_state()
        if self.current_tab == "scatter" and pane.result is not None:
            if pane.result.head is not None and pane.result.selection is not None:  # keep the drilled-down head
                self._run_scatter(pane.result.selection, pane.result.head, pane.head_note)
            else:
                self.action_run_tab()

    # --- SQL ------------------------------------------------------------------------------------------
    def run_sql(self) -> None:
        pane = self.query_one(SqlPane)
        query = pane.query_text
        self.state.remember_query(query)
        pane.remember(query)
        self._save_state()
        pane.info("running ... (Esc cancels)")

        def work(progress, stop):
            catalog = self._sql_catalog()
            if stop():
                return None
            return _tasks().sql_query(catalog, query, on_cursor=lambda con: setattr(self, "_sql_cursor", con))

        def done(result):
            self._sql_cursor = None
            if result is not None:
                if not self.show_timings:
                    result = replace(result, seconds=None)
                pane.show(result)

        self.start_job("sql", "SQL query", work, done, needs_libraries=False)

    def _sql_finished(self, state: WorkerState, worker: Worker) -> None:
        self._sql_cursor = None
        pane = self.query_one(SqlPane)
        if state == WorkerState.CANCELLED:
            pane.info("query cancelled", error=True)
        elif state == WorkerState.ERROR:
            pane.info(" ".join(str(worker.error).split()), error=True)

    # --- tabs -----------------------------------------------------------------------------------------
    @property
    def current_tab(self) -> str:
        return self.query_one(TabbedContent).active or "scatter"

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        focused = self.focused
        if focused is not None and tabs in focused.ancestors:
            # TabbedContent re-activates the pane that holds the focus: leaving focus inside the pane being
            # hidden made F-keys from the SQL editor or grid switch straight back (a focus trap)
            self.set_focus(None)
        tabs.active = tab
        target = TAB_FOCUS.get(tab)
        if target is not None:
            self.call_after_refresh(lambda: self.query_one(target).focus())

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.state.tab = event.pane.id or "scatter"
        self.query_one(MatrixTable).set_class(self.state.tab == "sql", "-compact")
        self._save_state()
        if self.state.tab == "sql" and not self._schema_asked:
            self._schema_asked = True
            self.start_job("schema", "reading the SQL schema",
                           lambda progress, stop: _tasks().sql_schema(self._sql_catalog()),
                           self.query_one(SqlPane).set_schema, needs_libraries=False)

    def _sql_catalog(self):
        """The store's SQL tables, built once per session (store.catalog.SqlCatalog)."""
        with self._sql_lock:
            if self._sql_con is None:
                self._sql_con = _tasks().sql_catalog(self.store)  # with keygap sql's memory limit
            return self._sql_con

    def on_sql_pane_row_opened(self, event: SqlPane.RowOpened) -> None:
        self.push_screen(RowViewer(event.row, "result row: Esc closes; the field under the cursor shows in full below"))

    # --- export, copy, screenshot, theme, help ----------------------------------------------------------
    def _export_source(self) -> tuple[str, Any]:
        focused = self.focused
        results = self.query_one(MatrixTable)
        if focused is results or self.current_tab is None:
            return "matrix", results.export_data
        tab = self.current_tab
        if tab == "sql":
            return "sql", self.query_one(SqlPane).export_table()
        pane = {"scatter": ScatterPane, "controls": ControlsPane, "layers": LayersPane, "attention": AttentionPane}[tab]
        rows = self.query_one(pane).export_rows()
        if not rows and results.export_data:
            return "matrix", results.export_data
        return tab, rows

    def action_export(self, fmt: str) -> None:
        stem, data = self._export_source()
        if data is None or (isinstance(data, list) and not data):
            self.show_error(f"nothing to export in {stem}: compute (c) or run the tab (r) first")
            return
        from .export import export_rows, export_table

        folder = self.config.export_dir
        export = export_rows if isinstance(data, list) else export_table
        self.start_job("export", f"export {stem} as {fmt.upper()}",
                       lambda progress, stop: export(data, folder, stem, fmt), self._exported, needs_libraries=False)

    def _exported(self, path: Path) -> None:
        self.status.say(f"saved {path}")
        self.notify(f"saved {path}", title="export", markup=False)

    def action_screenshot(self) -> None:
        from .export import next_path

        folder = Path(self.config.export_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = next_path(folder, "screen", "svg")
            path = self.save_screenshot(filename=target.name, path=str(folder))
        except OSError as exc:
            self.show_error(
                f"cannot save the screenshot in {folder} ({exc.strerror}): set export_dir in the config file"
            )
            return
        self._exported(Path(path).resolve())

    def action_copy(self) -> None:
        focused = self.focused
        text = focused.selected_text() if isinstance(focused, VimTable) else None
        if text is None:
            text = self.selection.describe()
        self.copy_to_clipboard(text)
        shown = text if len(text) <= 40 else text[:39] + "…"
        self.status.say(f"copied {shown!r} (OSC 52)")

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]
        self.state.theme = self.theme
        self._save_state()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.key_rows(), str(self.config.path or "")))

    # --- state ----------------------------------------------------------------------------------------
    def _save_state(self) -> None:
        self.state.selection = self.selection.to_dict()
        if self.is_mounted(LayersPane):
            self.state.layers_metric = self.query_one(LayersPane).metric
        try:
            save_state(self.state, self.state_path, self.store)
        except OSError as exc:
            self.status.say(f"cannot remember state ({exc.strerror}); the session is unaffected", error=True)

    def is_mounted(self, widget_type) -> bool:
        return bool(self.query(widget_type))

    def on_unmount(self) -> None:
        if self._sql_cursor is not None:
            self._sql_cursor.interrupt()
