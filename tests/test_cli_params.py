"""`--param METRIC.NAME=VALUE` values reach the measures with their types, lists included."""

from __future__ import annotations

import pytest

from keygap_tui.analysis.cli import _params
from store.errors import KeygapError


def test_param_values_are_typed_and_lists_split():
    got = _params(["mmd.scales=0.25,0.5,1,2,4", "mmd.estimator=biased", "js.bins=32", "mmd.bandwidth=0.5",
                   "js.quantile_range=[1, 99]", "c2st.folds=3"])
    assert got == {
        "mmd": {"scales": [0.25, 0.5, 1, 2, 4], "estimator": "biased", "bandwidth": 0.5},
        "js": {"bins": 32, "quantile_range": [1, 99]},
        "c2st": {"folds": 3},
    }


def test_malformed_param_is_a_one_line_error():
    with pytest.raises(KeygapError, match=r"METRIC\.NAME=VALUE"):
        _params(["bins=32"])
