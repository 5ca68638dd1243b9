"""The one JSON normaliser: every JSON keygap writes or hashes goes through ``json_safe``.

Results (MeasureResult, ComparisonRow), results-cache keys, reports and `keygap sql --format json` all
use it, so a number is written the same way everywhere and a cached answer reads back equal to a fresh
one. It lives in store because store is the package every other one may import, and it needs only the
standard library (numpy values are recognised by their ``tolist``), so keygap_tui.stats can use it and
still run anywhere numpy does.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import PurePath
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of ``value`` made only of dict, list, str, int, finite float, bool and None.

    Non-finite floats become None (strict JSON has no NaN or Infinity, and an undefined number is better
    null than a file other tools refuse to read); numpy scalars and arrays become Python numbers and
    lists; tuples and sets become lists (sets sorted); dict keys become strings; bytes become base64
    text; anything else becomes its ``str`` (dates, decimals, paths).
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # numpy's float64 too, a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [json_safe(v) for v in sorted(value, key=str)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return str(value)


def canonical_json(value: Any) -> str:
    """Deterministic, compact, strict JSON of ``json_safe(value)``: equal values give equal text, so equal
    questions hash equally."""
    return json.dumps(json_safe(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
