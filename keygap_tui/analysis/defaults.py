"""The analysis defaults that `keygap compare`, `keygap report` and the TUI share (standard library only).

Only constants live here, so the TUI's first screen (its settings dialog shows these numbers) can import
them without numpy or pyarrow. The paper states none of these; why we chose each is in
docs/ANALYSIS.md, "Defaults".
"""

from __future__ import annotations

DEFAULT_METRICS = ("mmd", "js")
#: keys per side, a uniform random sample (``None`` reads every key)
DEFAULT_N = 500
#: p = (1 + #{null >= observed}) / (1 + B), permuting whole samples
DEFAULT_PERMUTATIONS = 200
#: level of the bootstrap interval over samples given with every compare row (MMD, JS, energy, centroid);
#: None or 0 = no interval. Controls give none: they are for the spread of values across replicates.
DEFAULT_CI = 0.95
#: control-group replicates (new disjoint sample halves each)
DEFAULT_REPLICATES = 5
#: BLAS threads: "auto" = one on a busy machine (see threads.py)
DEFAULT_THREADS = "auto"

#: the control groups, in the order rows are returned
GROUPS = ("image-vs-image", "text-vs-text", "image-vs-text")
