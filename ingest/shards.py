"""Which shard this process is, and which devices a node has: the answers schedulers already give.

keygap writes no scheduler of its own. A SLURM job array says which task a process is
(SLURM_ARRAY_TASK_ID, counted from SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT), torchrun says RANK
of WORLD_SIZE, and `--devices` turns one command into one process per device on this node.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from store.errors import KeygapError


class ShardError(KeygapError, ValueError):
    """--shard or --devices cannot be resolved; the message says what to set."""


def shard_from_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(I, N) for `--shard auto`, from a SLURM job array or torchrun's variables."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" in env:
        task = _int(env, "SLURM_ARRAY_TASK_ID")
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        elif "SLURM_ARRAY_TASK_MAX" in env:
            count = _int(env, "SLURM_ARRAY_TASK_MAX") - first + 1
        else:
            raise ShardError("--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor "
                             "SLURM_ARRAY_TASK_MAX is: submit with sbatch --array=0-N, or pass --shard I/N")
        step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
        if step != 1:
            raise ShardError(
                f"--shard auto: the job array has step {step}; use --array=0-N (step 1) or pass --shard I/N"
            )
        return _checked(task - first, count, "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
    if "RANK" in env and "WORLD_SIZE" in env:
        return _checked(_int(env, "RANK"), _int(env, "WORLD_SIZE"), "RANK", "WORLD_SIZE")
    raise ShardError(
        "--shard auto needs a scheduler's variables: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT "
        "(sbatch --array) or RANK/WORLD_SIZE (torchrun); none is set, so pass --shard I/N"
    )


def device_from_environment(device: str, environ: Mapping[str, str] | None = None) -> str:
    """Under torchrun every process of a node sees every GPU: `--device auto` then means cuda:LOCAL_RANK."""
    env = os.environ if environ is None else environ
    if device == "auto" and "LOCAL_RANK" in env and "WORLD_SIZE" in env:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{_int(env, 'LOCAL_RANK') % torch.cuda.device_count()}"
    return device


def parse_devices(spec: str) -> list[str]:
    """`cuda:0,cuda:1`, `all` (every visible GPU) or `cpu,cpu` (two CPU processes) -> one device a shard."""
    if spec.strip() == "all":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ShardError("--devices all found no GPU (torch.cuda.device_count() is 0): name devices, e.g. cpu,cpu")
        return [f"cuda:{i}" for i in range(n)]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    if not devices:
        raise ShardError("--devices is empty: give e.g. cuda:0,cuda:1, all, or cpu,cpu")
    for d in devices:
        kind, _, index = d.partition(":")
        if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ShardError(f"--devices: {d!r} is not a device; use cuda:N, cpu or mps (e.g. cuda:0,cuda:1)")
    return devices


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ShardError(f"--shard auto: {name}={env[name]!r} is not an integer") from None


def _checked(i: int, n: int, i_name: str, n_name: str) -> tuple[int, int]:
    if n < 1 or not 0 <= i < n:
        raise ShardError(f"--shard auto: {i_name} gives shard {i}, which is not in 0..{n - 1} ({n_name}={n})")
    return i, n
