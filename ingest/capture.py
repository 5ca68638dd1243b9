"""Forward hooks that take the attention keys of chosen decoder layers, as the model computes them.

Per chosen layer three hooks cooperate:
- a pre-hook on ``self_attn`` (with kwargs) takes the ``position_embeddings`` (cos, sin) the layer
  receives, which for Qwen already carry the 3-D M-RoPE positions;
- a forward hook on ``k_proj`` (or ``k_norm`` where a model normalises keys) takes the pre-RoPE
  key, gathers only the selected (batch row, position) pairs, and forms the post-RoPE key with the
  attention module's own ``apply_rotary_pos_emb`` - element-wise, so gathering first changes no bit;
- after the last chosen layer the hook raises, ending the forward (baukit's trick): the layers above
  it and the LM head would be wasted work.
A pre-hook on the decoder's rotary embedding records the position ids the model really used.
Everything stays on the device, cast to the storage dtype there, and crosses to the host once per batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from store.schema import ROPE_KINDS

from .models import LoadedModel


class _StopForward(Exception):
    """Raised by the last hook to end the forward early; never escapes KeyCapture.run."""


@dataclass
class CapturedKeys:
    """Keys of the selected tokens of one batch, on the host.

    ``keys[(layer, rope)]`` is [n, kv_heads * head_dim] in the storage dtype (bfloat16 as its raw
    uint16 bits, which store.codec writes losslessly); rows follow the selection order.
    """

    keys: dict
    rope_positions: np.ndarray  # int64 [n, 3]: t/h/w positions (1-D models repeat the position)
    dtype: str  # "float16", "bfloat16" or "float32"


def storage_dtype(model_dtype: torch.dtype, requested: str | None = None) -> str:
    """The dtype keys are stored in: the model's own half type, float32 for float32 models, unless told."""
    if requested not in (None, "auto"):
        if requested not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"unknown key dtype {requested!r}: use float16, bfloat16, float32 or auto")
        return requested
    return {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(model_dtype, "float32")


_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class KeyCapture:
    """Hooks on the chosen layers of one loaded model; use as a context manager, call ``run`` per batch."""

    def __init__(self, loaded: LoadedModel, layers: list[int], *, ropes=("post",),
                 key_dtype: str | None = None, stop_early: bool = True):
        bad = [r for r in ropes if r not in ROPE_KINDS]
        if bad or not ropes:
            raise ValueError(f"keys must be pre, post or both, got {ropes!r}")
        if not layers:
            raise ValueError("no layers chosen")
        self.loaded = loaded
        self.layers = sorted({int(i) for i in layers})
        self.ropes = tuple(r for r in ROPE_KINDS if r in ropes)
        self.dtype = storage_dtype(loaded.dtype, key_dtype)
        self.stop_early = stop_early
        self._handles: list = []
        self._select: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pe: dict[int, tuple] = {}
        self._out: dict[tuple, torch.Tensor] = {}
        self._positions: torch.Tensor | None = None

    # -- hook management --------------------------------------------------------------------------------
    def __enter__(self) -> KeyCapture:
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> None:
        if self._handles:
            return
        lm = self.loaded
        self._handles.append(lm.rotary.register_forward_pre_hook(self._on_rotary, with_kwargs=True))
        last = self.layers[-1]
        for i in self.layers:
            attn = lm.layers[i].get_submodule("self_attn")
            self._handles.append(attn.register_forward_pre_hook(self._attn_hook(i), with_kwargs=True))
            key_module = getattr(attn, "k_norm", None) or attn.get_submodule("k_proj")
            self._handles.append(key_module.register_forward_hook(self._key_hook(i, i == last)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- hooks ------------------------------------------------------------------------------------------
    def _on_rotary(self, module, args, kwargs):
        x = kwargs.get("x", args[0] if args else None)
        pos = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if pos is not None and x is not None and self._select is not None:
            b, t = self._select
            batch = x.shape[0]
            if pos.ndim == 3:  # [3, batch, tokens] (M-RoPE t/h/w)
                self._positions = pos.expand(-1, batch, -1)[:, b, t].T
            else:
                self._positions = pos.expand(batch, -1)[b, t][:, None].expand(-1, 3)

    def _attn_hook(self, layer: int):
        def hook(module, args, kwargs):
            self._pe[layer] = kwargs.get("position_embeddings")
        return hook

    def _key_hook(self, layer: int, last: bool):
        def hook(module, args, output):
            if self._select is None:
                return None
            b, t = self._select
            lm = self.loaded
            batch, tokens = output.shape[0], output.shape[1]
            if output.ndim == 4 and output.shape[1] == lm.num_kv_heads and output.shape[2] != lm.num_kv_heads:
                output = output.transpose(1, 2)  # a k_norm applied on [batch, heads, tokens, dim]
            key = output.reshape(batch, tokens, lm.key_dim)[b, t]  # [n, kv*hd], model dtype
            if "pre" in self.ropes:
                self._out[(layer, "pre")] = key.to(_TORCH_DTYPES[self.dtype])
            if "post" in self.ropes:
                pe = self._pe.get(layer)
                if pe is None:
                    raise RuntimeError(f"layer {layer}'s attention received no position_embeddings: "
                                       "this model does not follow the standard layout")
                cos, sin = pe
                cos = cos.expand(batch, -1, -1)[b, t][None]  # [1, n, hd]
                sin = sin.expand(batch, -1, -1)[b, t][None]
                k4 = key.view(1, -1, lm.num_kv_heads, lm.head_dim).transpose(1, 2)  # [1, kv, n, hd]
                _, rotated = lm.apply_rotary(k4, k4, cos, sin)
                self._out[(layer, "post")] = (rotated.transpose(1, 2).reshape(-1, lm.key_dim)
                                              .to(_TORCH_DTYPES[self.dtype]))
            if last and self.stop_early:
                raise _StopForward
            return None
        return hook

    # -- one batch --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, inputs: dict, batch_index: np.ndarray, token_index: np.ndarray) -> CapturedKeys:
        """Forward one processed batch and return the keys at (batch_index[k], token_index[k])."""
        if not self._handles:
            raise RuntimeError("KeyCapture.run outside its `with` block")
        dev = self.loaded.device
        self._select = (torch.as_tensor(batch_index, dtype=torch.long, device=dev),
                        torch.as_tensor(token_index, dtype=torch.long, device=dev))
        self._out.clear()
        self._pe.clear()
        self._positions = None
        try:
            self.loaded.model(**inputs, use_cache=False)
        except _StopForward:
            pass
        finally:
            self._select = None
            self._pe.clear()
        return self._to_host(len(batch_index))

    def _to_host(self, n: int) -> CapturedKeys:
        order = [(layer, rope) for layer in self.layers for rope in self.ropes]
        missing = [k for k in order if k not in self._out]
        if missing:
            raise RuntimeError(f"no keys were captured for {missing}: the forward did not reach those layers")
        stacked = torch.stack([self._out[k] for k in order])  # [L*R, n, d] on the device
        positions = self._positions
        if positions is None:
            positions = torch.zeros((n, 3), dtype=torch.int64, device=stacked.device)
        # Keys and positions travel as one byte buffer: a single device -> host copy (one sync) per batch.
        key_bytes = stacked.contiguous().view(torch.uint8).reshape(-1)
        pos_bytes = positions.to(torch.int64).contiguous().view(torch.uint8).reshape(-1)
        host = torch.cat([key_bytes, pos_bytes]).cpu().numpy()
        split = key_bytes.numel()
        np_dtype = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[self.dtype]
        keys = host[:split].view(np_dtype).reshape(stacked.shape)
        rope_positions = host[split:].view(np.int64).reshape(n, 3)
        self._out.clear()
        return CapturedKeys(keys={k: keys[i] for i, k in enumerate(order)},
                            rope_positions=rope_positions, dtype=self.dtype)
