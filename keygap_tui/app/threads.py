"""Cap the numerical libraries' thread pools before they load, so work can start at once.

Why: the event loop needs a core. With OpenBLAS on every core of a busy 2-core machine, its spin-waiting
starved the loop for 1.6 s during one PCA (BENCHMARKS.md, TUI). A pool can be capped two ways: by the
environment variables the libraries read when they load (free, and safe at any time because nothing is
loaded yet), or by threadpoolctl afterwards, which must not run while another thread is inside a BLAS
call (it can deadlock), so work has to wait for it. The TUI's first screen imports no numpy, so in
`keygap tui` the variables are set before anything loads and the user's first computation never waits.
Stdlib only: this runs before the first screen.
"""

from __future__ import annotations

import os
import sys

#: read at load time by OpenBLAS, OpenMP (torch, scikit-learn), MKL and numexpr
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: modules whose pools are sized when they load; once one is loaded, the variables come too late
POOLED_MODULES = ("numpy", "torch", "scipy", "sklearn")


def cap_before_load(threads: int) -> bool:
    """Set the thread variables (the user's own settings win) if no pooled library is loaded yet.

    Returns True when the cap is in place without threadpoolctl, i.e. work need not wait for a warm-up.
    """
    if any(name in sys.modules for name in POOLED_MODULES):
        return False
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(int(threads)))
    return True
