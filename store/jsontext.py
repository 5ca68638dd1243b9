"""Strict JSON for every --json and JSON output: NaN and infinities become null, bytes base64.

Python's json writes NaN, which most JSON readers refuse; this module is stdlib-only so `keygap info`
need not import duckdb.
"""

from __future__ import annotations

import base64
import math


def json_ready(value):
    """A value JSON can hold in every reader: NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
