"""`make bench`: run every benchmarks/bench_*.py in its own process (so one's memory or threads cannot
skew another's) and print their tables. Record figures in BENCHMARKS.md with the command that made them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    # scale builds ~13 GB of stores on its first run: only when named (`make bench BENCH=scale`)
    names = argv or sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py") if p.stem != "bench_scale")
    failed = []
    for name in names:
        script = here / f"bench_{name}.py"
        print(f"\n== {name} ({script}) ==", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
