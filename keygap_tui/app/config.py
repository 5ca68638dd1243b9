"""Where the TUI keeps its settings (XDG config) and what it remembers between runs (XDG state).

Why XDG: users expect ``~/.config/keygap/tui.toml`` to be theirs to edit (keys, theme, analysis sizes) and
``~/.local/state/keygap/tui.json`` to be the app's own memory (last slice, tab, SQL history) that can be
deleted at any time. A broken config never stops the app: the problem comes back as one line to show.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from keygap_tui.analysis.defaults import (
    DEFAULT_CI,
    DEFAULT_METRICS,
    DEFAULT_N,
    DEFAULT_PERMUTATIONS,
    DEFAULT_REPLICATES,
)
from store.files import atomic_write_bytes

APP_DIR = "keygap"
CONFIG_FILE = "tui.toml"
STATE_FILE = "tui.json"
HISTORY_LIMIT = 200

THEMES = {"dark": "textual-dark", "light": "textual-light"}
LOGITS = "logits"  # the measure name `keygap compare --metrics logits` uses


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / APP_DIR


def state_dir() -> Path:
    from store.store_option import user_state_dir

    return Path(user_state_dir())


@dataclass
class AnalysisSettings:
    """Sizes of the work the TUI asks analysis for; the defaults are analysis's own (docs/ANALYSIS.md, "Defaults").

    ``scatter_points`` caps the points drawn: plotext blocks its thread ~0.5 s per 100k points, and a
    terminal cannot show more than a few thousand distinct cells anyway.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    n: int | None = DEFAULT_N  # keys per side; None = all. Same as `keygap compare`: same numbers, same cache
    permutations: int = DEFAULT_PERMUTATIONS
    ci: float = DEFAULT_CI  # bootstrap interval level shown in the results table; 0 = none
    replicates: int = DEFAULT_REPLICATES  # control-group replicates
    seed: int = 0
    scatter_points: int = 1000  # keys per side projected: analysis's default; t-SNE cost grows fast beyond
    max_plot_points: int = 20000
    # Threads BLAS / torch may use for TUI work; 0 = one less than the CPUs. Why: the event loop needs a
    # core. With OpenBLAS on every core of a busy 2-core machine, its spin-waiting starved the loop for
    # 1.6 s during one PCA (0.05 s and no stall with one thread; benchmarks/bench_tui.py, BENCHMARKS.md).
    compute_threads: int = 0

    @property
    def key_metrics(self) -> tuple[str, ...]:
        """The two-sample measures of ``metrics``: every one but ``logits``, which reads queries too and fills
        its own matrix columns (the logit decomposition of `keygap compare --metrics logits`)."""
        return tuple(m for m in self.metrics if m != LOGITS)

    @property
    def logits(self) -> bool:
        """``logits`` is among the metrics: every matrix row also gets its logit decomposition."""
        return LOGITS in self.metrics

    def threads(self) -> int:
        import os

        return self.compute_threads or max(1, (os.cpu_count() or 2) - 1)


@dataclass
class Config:
    theme: str = "textual-dark"
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys, e.g. {"compute": "c,f9"}
    export_dir: str = "keygap-export"
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    path: Path | None = None
    explicit: set[str] = field(default_factory=set)  # top-level settings the file sets: they win over state
    problems: list[str] = field(default_factory=list)  # every mistake found; the rest of the file still applies


class ConfigError(ValueError):
    """The config file has a mistake; the message names the file and the fix."""


def load_config(path: Path | None = None) -> Config:
    """Read the TOML config; a missing file means defaults.

    Every mistake is listed in ``problems`` (one line each, saying the fix) and the setting
    it concerns keeps its default, so one typo neither hides the others nor throws the whole file away.
    ``check_config`` turns the list into a ConfigError for callers that want to stop.
    """
    path = Path(path) if path else config_dir() / CONFIG_FILE
    cfg = Config(path=path)
    if not path.is_file():
        return cfg
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        cfg.problems.append(f"{' '.join(str(exc).split())}; fix or delete the file")
        return cfg
    problem = cfg.problems.append
    unknown = set(data) - {"theme", "keys", "export_dir", "analysis"}
    if unknown:
        problem(f"unknown setting(s) {', '.join(sorted(unknown))}; known: theme, keys, export_dir, [analysis]")
    if "theme" in data:
        if isinstance(data["theme"], str):
            cfg.theme = THEMES.get(data["theme"], data["theme"])
            cfg.explicit.add("theme")
        else:
            problem('theme must be a string, e.g. theme = "light"')
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        problem('[keys] must map action names to key strings, e.g. compute = "c,f9"')
        keys = {}
    for name, value in keys.items():
        if isinstance(value, str):
            cfg.keys[name] = value
        else:
            problem(f'[keys] {name} must be a key string, e.g. {name} = "c,f9"')
    if "export_dir" in data:
        cfg.export_dir = str(data["export_dir"])
        cfg.explicit.add("export_dir")
    analysis = data.get("analysis", {})
    if not isinstance(analysis, dict):
        problem("[analysis] must be a table of settings, e.g. [analysis] n = 1000")
        analysis = {}
    names = {f.name for f in fields(AnalysisSettings)}
    bad = set(analysis) - names
    if bad:
        problem(f"unknown [analysis] setting(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(names))}")
    values = asdict(cfg.analysis)
    for name in sorted(set(analysis) & names):
        value = analysis[name]
        if name == "metrics":
            if isinstance(value, list) and value and all(isinstance(m, str) for m in value):
                values["metrics"] = tuple(value)
            else:
                problem('[analysis] metrics must be a list of measure names, e.g. metrics = ["mmd", "js"]')
        elif name == "ci":
            if isinstance(value, (int, float)) and not isinstance(value, bool) and (value == 0 or 0.5 <= value < 1):
                values["ci"] = float(value)
            else:
                problem("[analysis] ci must be a confidence level such as 0.95, or 0 for none")
        elif name == "n":
            if value in ("all", 0):
                values["n"] = None
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 2:
                values["n"] = value
            else:
                problem('[analysis] n must be an integer >= 2 or "all"')
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            values[name] = value
        else:
            problem(f"[analysis] {name} must be a non-negative integer")
    values["metrics"] = tuple(values["metrics"])
    cfg.analysis = AnalysisSettings(**values)
    return cfg


def check_config(cfg: Config) -> Config:
    """Raise ConfigError listing every problem of ``cfg`` (for callers that stop on a bad file)."""
    if cfg.problems:
        raise ConfigError(f"{cfg.path}: " + "; ".join(cfg.problems))
    return cfg


@dataclass
class State:
    """What the app remembers between runs (per store, since slices only make sense in their store)."""

    selection: dict = field(default_factory=dict)
    tab: str = "scatter"
    sql_history: list[str] = field(default_factory=list)
    projection: str = "pca"
    layers_metric: str = "mmd"
    theme: str | None = None  # chosen with T while the app ran; a theme in the config file wins at the next start

    def remember_query(self, query: str) -> None:
        query = query.strip()
        if not query:
            return
        if query in self.sql_history:
            self.sql_history.remove(query)
        self.sql_history.append(query)
        del self.sql_history[:-HISTORY_LIMIT]


def load_state(path: Path | None = None, store: str = "") -> State:
    """The remembered state for ``store``; a damaged or foreign file is ignored (state is disposable)."""
    path = Path(path) if path else state_dir() / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return State()
    shared = data.get("shared", {}) if isinstance(data, dict) else {}
    per_store = data.get("stores", {}).get(_store_key(store), {}) if isinstance(data, dict) else {}
    state = State()
    if isinstance(per_store.get("selection"), dict):
        state.selection = per_store["selection"]
    for name in ("tab", "projection", "layers_metric"):
        if isinstance(per_store.get(name), str):
            setattr(state, name, per_store[name])
    if isinstance(shared.get("sql_history"), list):
        state.sql_history = [q for q in shared["sql_history"] if isinstance(q, str)][-HISTORY_LIMIT:]
    if isinstance(shared.get("theme"), str):
        state.theme = shared["theme"]
    return state


def save_state(state: State, path: Path | None = None, store: str = "") -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file; errors are swallowed
    by the caller's choice: losing remembered state must not lose the user's session."""
    path = Path(path) if path else state_dir() / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data.setdefault("stores", {})[_store_key(store)] = {
        "selection": state.selection,
        "tab": state.tab,
        "projection": state.projection,
        "layers_metric": state.layers_metric,
    }
    data["shared"] = {"sql_history": state.sql_history[-HISTORY_LIMIT:], "theme": state.theme}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


def _store_key(store: str) -> str:
    return os.path.abspath(store) if store and "://" not in store else store
