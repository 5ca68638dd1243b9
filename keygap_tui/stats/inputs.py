"""Checks shared by every measure, so bad input fails with one actionable line instead of a numpy traceback."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np

from .errors import StatsInputError


class CpuDevice(str):
    """The CPU as a device without importing torch (a 1.5-3 s import that the numpy CPU path never needs).

    Behaves like torch.device("cpu") where the stats code uses one: ``.type``, ``str()``, ``tensor.to()``."""

    type = "cpu"


CPU = CpuDevice("cpu")


def _gpu_driver_present() -> bool:
    """Cheap test whether asking torch about CUDA is worth importing it."""
    if "torch" in sys.modules:
        return True
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or os.path.exists("/dev/nvidiactl")
        or os.path.exists("/dev/kfd")  # ROCm
        or shutil.which("nvidia-smi") is not None
    )


def as_pair(x, y, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Return x, y as C-contiguous float32 [n, d] arrays, or raise StatsInputError saying what is wrong."""
    out = []
    for side, arr in (("x", x), ("y", y)):
        try:
            arr = np.asarray(arr)
        except Exception as exc:  # ragged lists and the like
            raise StatsInputError(
                f"{side} is not an array of key vectors ({exc}); pass a float [rows, dim] array"
            ) from None
        if arr.ndim != 2:
            raise StatsInputError(f"{side} has shape {arr.shape}; pass a 2-D [rows, dim] array of key vectors")
        if arr.dtype.kind not in "fiu":
            raise StatsInputError(f"{side} has dtype {arr.dtype}; pass float key vectors")
        if arr.shape[0] < min_rows:
            raise StatsInputError(
                f"{side} has {arr.shape[0]} rows; this measure needs at least {min_rows} per side - load more keys"
            )
        if arr.shape[1] < 1:
            raise StatsInputError(f"{side} has 0 columns; pass key vectors with at least one dimension")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=1).sum())
            raise StatsInputError(
                f"{side} has {bad} rows with NaN or inf (float16 overflow?); drop them or load the keys as float32"
            )
        out.append(arr)
    if out[0].shape[1] != out[1].shape[1]:
        raise StatsInputError(
            f"x has dimension {out[0].shape[1]} but y has {out[1].shape[1]}; compare keys of the same layer and model"
        )
    return out[0], out[1]


def as_groups(groups_x, groups_y, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate per-row sample ids; None when both are None (rows are then treated as independent)."""
    if groups_x is None and groups_y is None:
        return None
    if groups_x is None or groups_y is None:
        raise StatsInputError("pass groups_x and groups_y together (per-row sample ids of both sides), or neither")
    result = []
    for side, groups, n in (("groups_x", groups_x, n_a), ("groups_y", groups_y, n_b)):
        groups = np.asarray(groups)
        if groups.ndim != 1 or groups.shape[0] != n:
            raise StatsInputError(f"{side} has shape {groups.shape}; pass one sample id per row ({n} ids)")
        result.append(groups)
    return result[0], result[1]


def resolve_device(device: str):
    """'auto' picks the GPU when torch sees one; asking for cuda without one is an error, not a silent CPU run.

    Returns CPU (no torch import) or a torch.device."""
    if device == "auto":
        if not _gpu_driver_present():
            return CPU
        import torch

        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if device == "cpu":
        return CPU
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise StatsInputError(f"device={device!r} but torch sees no CUDA GPU; pass device='cpu' or 'auto'")
        return torch.device(device)
    raise StatsInputError(f"unknown device {device!r}; pass 'auto', 'cpu' or 'cuda'")


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise StatsInputError(f"{name}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")


def check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise StatsInputError(f"{name}={value!r}; pass an integer >= {minimum}")
    return int(value)
