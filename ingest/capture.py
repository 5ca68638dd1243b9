"""Forward hooks that take the attention keys (and queries, and attention allocation) of chosen decoder
layers, as the model computes them.

Per chosen layer the hooks cooperate:
- a pre-hook on ``self_attn`` (with kwargs) takes the ``position_embeddings`` (cos, sin) the layer
  receives, which for Qwen already carry the 3-D M-RoPE positions;
- a forward hook on ``q_proj`` (or ``q_norm`` where a model normalises queries) keeps the layer's queries,
  when queries or attention are asked for;
- a forward hook on ``k_proj`` (or ``k_norm``) takes the pre-RoPE key, gathers only the selected (batch
  row, position) pairs, and forms the post-RoPE key with the attention module's own
  ``apply_rotary_pos_emb`` - element-wise, so gathering first changes no bit. The selected queries are
  rotated the same way. For ``attention`` it rotates the layer's full K and computes the attention
  probabilities of the selected queries over every position (below);
- after the last chosen layer the hook raises, ending the forward (baukit's trick): the layers above
  it and the LM head would be wasted work.
A pre-hook on the decoder's rotary embedding records the position ids the model really used.
Everything stays on the device, cast to the storage dtype there, and crosses to the host once per batch.

Attention allocation is computed here rather than read from the model, because under sdpa and flash
attention the model returns no weights. It follows the model's eager attention exactly: logits = q . k *
``module.scaling`` (float32), then ``attn_logit_softcapping`` if the module has it, the causal mask over
the padded batch (a key is visible to a query at or after it, padding never; ``module.sliding_window``
where set), softmax in float32; the probabilities are summed over each key group (ingest/attention.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from store.schema import ROPE_KINDS

from .models import LoadedModel


class _StopForward(Exception):
    """Raised by the last hook to end the forward early; never escapes KeyCapture.run."""


@dataclass
class CapturedKeys:
    """Keys (and queries, attention) of the selected tokens of one batch, on the host.

    ``keys[(layer, rope)]`` is [n, kv_heads * head_dim] in the storage dtype (bfloat16 as its raw
    uint16 bits, which store.codec writes losslessly); rows follow the selection order.
    ``queries[(layer, rope)]`` is [n_q, heads * head_dim] likewise, rows in the query selection's order.
    ``attention[layer]`` is float32 [n_q, heads + 1, groups]: rows 0..heads-1 the attention mass each head
    of each query puts on each key group, row ``heads`` the number of keys of each group it can see.
    """

    keys: dict
    rope_positions: np.ndarray  # int64 [n, 3]: t/h/w positions (1-D models repeat the position)
    dtype: str  # "float16", "bfloat16" or "float32"
    queries: dict = field(default_factory=dict)
    query_positions: np.ndarray | None = None  # int64 [n_q, 3]
    attention: dict = field(default_factory=dict)


def storage_dtype(model_dtype: torch.dtype, requested: str | None = None) -> str:
    """The dtype keys are stored in: the model's own half type, float32 for float32 models, unless told."""
    if requested not in (None, "auto"):
        if requested not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"unknown key dtype {requested!r}: use float16, bfloat16, float32 or auto")
        return requested
    return {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(model_dtype, "float32")


_T = TypeVar("_T")
_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class KeyCapture:
    """Hooks on the chosen layers of one loaded model; use as a context manager, call ``run`` per batch.

    ``queries=True`` also captures the query vectors of the query selection; ``attention=True`` the
    attention allocation of those queries over the key groups ``run`` is given."""

    def __init__(self, loaded: LoadedModel, layers: list[int], *, ropes=("post",),
                 key_dtype: str | None = None, stop_early: bool = True, queries: bool = False,
                 attention: bool = False):
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
        self.want_queries = bool(queries)
        self.want_attention = bool(attention)
        self._handles: list = []
        self._batch = 0
        self._select: tuple[torch.Tensor, torch.Tensor] | None = None
        self._qselect: tuple[torch.Tensor, torch.Tensor] | None = None
        self._visible: torch.Tensor | None = None  # bool [n_q, T]: causal and padding mask of each query
        self._onehot: torch.Tensor | None = None  # float32 [batch, T, groups]: key group of every column
        self._pe: dict[int, tuple] = {}
        self._q: dict[int, torch.Tensor] = {}
        self._out: dict[tuple, torch.Tensor] = {}
        self._positions: torch.Tensor | None = None
        self._query_positions: torch.Tensor | None = None

    @property
    def _needs_q(self) -> bool:
        return self.want_queries or self.want_attention

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
            if self._needs_q:
                query_module = getattr(attn, "q_norm", None) or attn.get_submodule("q_proj")
                self._handles.append(query_module.register_forward_hook(self._query_hook(i)))
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
        if pos is None or x is None or self._select is None:
            return
        batch = x.shape[0]
        self._positions = _gather_positions(pos, batch, *self._select)
        if self._qselect is not None:
            self._query_positions = _gather_positions(pos, batch, *self._qselect)

    def _attn_hook(self, layer: int):
        def hook(module, args, kwargs):
            self._pe[layer] = kwargs.get("position_embeddings")
        return hook

    def _query_hook(self, layer: int):
        def hook(module, args, output):
            if self._select is not None:
                self._q[layer] = output
            return None
        return hook

    def _key_hook(self, layer: int, last: bool):
        def hook(module, args, output):
            if self._select is None:
                return None
            b, t = self._select
            lm = self.loaded
            batch, tokens = output.shape[0], output.shape[1]
            full = _tokens_major(output, lm.num_kv_heads).reshape(batch, tokens, lm.key_dim)
            key = full[b, t]  # [n, kv*hd], model dtype
            pe = self._pe.get(layer)
            if pe is None and ("post" in self.ropes or self._needs_q):
                raise RuntimeError(f"layer {layer}'s attention received no position_embeddings: "
                                   "this model does not follow the standard layout")
            if "pre" in self.ropes:
                self._out[(layer, "pre")] = key.to(_TORCH_DTYPES[self.dtype])
            if "post" in self.ropes and pe is not None:
                rotated = self._rotate(key, pe[0], pe[1], b, t, lm.num_kv_heads)
                self._out[(layer, "post")] = rotated.to(_TORCH_DTYPES[self.dtype])
            if self._needs_q and self._qselect is not None and pe is not None:
                self._capture_queries(layer, full, pe)
            if last and self.stop_early:
                raise _StopForward
            return None
        return hook

    def _rotate(self, vectors: torch.Tensor, cos, sin, b, t, heads: int) -> torch.Tensor:
        """Selected [n, heads*hd] vectors after RoPE, by the attention module's own function."""
        lm = self.loaded
        batch = int(self._batch)
        cos = cos.expand(batch, -1, -1)[b, t][None]  # [1, n, hd]
        sin = sin.expand(batch, -1, -1)[b, t][None]
        v4 = vectors.reshape(1, -1, heads, lm.head_dim).transpose(1, 2)  # [1, heads, n, hd]
        rotated, _ = lm.apply_rotary(v4, v4, cos, sin)
        return rotated.transpose(1, 2).reshape(-1, heads * lm.head_dim)

    def _capture_queries(self, layer: int, keys_full: torch.Tensor, pe) -> None:
        lm = self.loaded
        q_out = self._q.pop(layer, None)
        if q_out is None:
            raise RuntimeError(f"layer {layer}'s query projection ran after its key projection: this model "
                               "does not follow the standard layout, so queries cannot be captured")
        batch, tokens = q_out.shape[0], q_out.shape[1]
        qb, qt = _required(self._qselect, "the query selection")
        heads = lm.num_heads
        q_pre = _tokens_major(q_out, heads).reshape(batch, tokens, heads * lm.head_dim)[qb, qt]  # [n_q, H*hd]
        q_post = self._rotate(q_pre, pe[0], pe[1], qb, qt, heads)
        if self.want_queries:
            if "pre" in self.ropes:
                self._out[(layer, "pre", "query")] = q_pre.to(_TORCH_DTYPES[self.dtype])
            if "post" in self.ropes:
                self._out[(layer, "post", "query")] = q_post.to(_TORCH_DTYPES[self.dtype])
        if self.want_attention:
            self._out[(layer, "attention")] = self._allocation(layer, q_post, keys_full, pe)

    def _allocation(self, layer: int, q_post: torch.Tensor, keys_full: torch.Tensor, pe) -> torch.Tensor:
        """float32 [n_q, heads + 1, groups]: each head's attention mass on each key group, then the
        number of visible keys of each group (see the module docstring for the exact recipe)."""
        lm = self.loaded
        attn = lm.layers[layer].get_submodule("self_attn")
        scaling = float(getattr(attn, "scaling", lm.head_dim ** -0.5))
        batch, tokens = keys_full.shape[0], keys_full.shape[1]
        cos, sin = pe
        k4 = keys_full.view(batch, tokens, lm.num_kv_heads, lm.head_dim).transpose(1, 2)  # [B, kv, T, hd]
        _, k_rot = lm.apply_rotary(k4, k4, cos.expand(batch, -1, -1), sin.expand(batch, -1, -1))
        k_rot = k_rot.float()
        qb, qt = _required(self._qselect, "the query selection")
        n_q, heads, kv = len(qb), lm.num_heads, lm.num_kv_heads
        q = q_post.float().view(n_q, kv, heads // kv, lm.head_dim)  # query head h uses kv head h // (H / kv)
        visible = _required(self._visible, "the visibility mask")
        onehot_all = _required(self._onehot, "the key groups")
        window = getattr(attn, "sliding_window", None)
        if window:
            cols = torch.arange(tokens, device=qt.device)
            visible = visible & (cols[None, :] > qt[:, None] - int(window))
        cap = getattr(attn, "attn_logit_softcapping", None)
        out = torch.empty((n_q, heads + 1, onehot_all.shape[-1]), dtype=torch.float32, device=q.device)
        for row in torch.unique(qb).tolist():
            rows = torch.nonzero(qb == row).flatten()
            logits = torch.einsum("nkgd,ktd->nkgt", q[rows], k_rot[row]).reshape(len(rows), heads, tokens)
            logits = logits * scaling
            if cap:
                logits = torch.tanh(logits / cap) * cap
            logits = logits.masked_fill(~visible[rows][:, None, :], float("-inf"))
            probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
            onehot = onehot_all[row]  # [T, G]
            out[rows, :heads] = probs @ onehot
            out[rows, heads] = visible[rows].float() @ onehot
        return out

    # -- one batch --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, inputs: dict, batch_index: np.ndarray, token_index: np.ndarray, *,
            query_index: tuple[np.ndarray, np.ndarray] | None = None,
            groups: np.ndarray | None = None) -> CapturedKeys:
        """Forward one processed batch and return the keys at (batch_index[k], token_index[k]).

        ``query_index`` = (batch rows, padded columns) of the query tokens (needed for queries and
        attention); ``groups`` = int [batch, columns] key group of every column, -1 for padding (needed
        for attention)."""
        if not self._handles:
            raise RuntimeError("KeyCapture.run outside its `with` block")
        if self._needs_q and query_index is None:
            raise ValueError("queries or attention were asked for, but no query tokens were given")
        if self.want_attention and groups is None:
            raise ValueError("attention was asked for, but no key groups were given")
        dev = self.loaded.device
        self._batch = int(inputs["input_ids"].shape[0])
        self._select = (torch.as_tensor(batch_index, dtype=torch.long, device=dev),
                        torch.as_tensor(token_index, dtype=torch.long, device=dev))
        if self._needs_q and query_index is not None:
            self._qselect = (torch.as_tensor(query_index[0], dtype=torch.long, device=dev),
                             torch.as_tensor(query_index[1], dtype=torch.long, device=dev))
        if self.want_attention and groups is not None:
            self._prepare_masks(groups, inputs.get("attention_mask"))
        self._out.clear()
        self._pe.clear()
        self._q.clear()
        self._positions = self._query_positions = None
        try:
            self.loaded.model(**inputs, use_cache=False)
        except _StopForward:
            pass
        finally:
            self._select = self._qselect = None
            self._visible = self._onehot = None
            self._pe.clear()
            self._q.clear()
        return self._to_host(len(batch_index), 0 if query_index is None else len(query_index[0]))

    def _prepare_masks(self, groups: np.ndarray, attention_mask) -> None:
        """Per batch: the key group one-hot of every column and the visible columns of every query."""
        dev = self.loaded.device
        g = torch.as_tensor(np.asarray(groups), dtype=torch.long, device=dev)  # [B, T]
        n_groups = int(g.max().item()) + 1 if g.numel() else 0
        self._onehot = torch.nn.functional.one_hot(g.clamp(min=0), max(n_groups, 1)).float()
        self._onehot *= (g >= 0).unsqueeze(-1).float()
        padding = g >= 0 if attention_mask is None else attention_mask.to(dev).bool()
        qb, qt = _required(self._qselect, "the query selection")
        cols = torch.arange(g.shape[1], device=dev)
        self._visible = padding[qb] & (cols[None, :] <= qt[:, None])

    def _to_host(self, n: int, n_q: int) -> CapturedKeys:
        order = [(layer, rope) for layer in self.layers for rope in self.ropes]
        q_order = [(layer, rope, "query") for layer in self.layers for rope in self.ropes] if self.want_queries else []
        a_order = [(layer, "attention") for layer in self.layers] if self.want_attention else []
        missing = [k for k in order + q_order + a_order if k not in self._out]
        if missing:
            raise RuntimeError(f"nothing was captured for {missing}: the forward did not reach those layers")
        stacked = torch.stack([self._out[k] for k in order])  # [L*R, n, d] on the device
        dev = stacked.device
        positions = self._positions
        if positions is None:
            positions = torch.zeros((n, 3), dtype=torch.int64, device=dev)
        query_positions = self._query_positions
        if query_positions is None:
            query_positions = torch.zeros((n_q, 3), dtype=torch.int64, device=dev)
        parts = [stacked, positions.to(torch.int64)]
        if q_order:
            parts.append(torch.stack([self._out[k] for k in q_order]))
        if a_order:
            parts.append(torch.stack([self._out[k] for k in a_order]))
        parts.append(query_positions.to(torch.int64))
        # Everything travels as one byte buffer: a single device -> host copy (one sync) per batch.
        flat = [p.contiguous().view(torch.uint8).reshape(-1) for p in parts]
        host = torch.cat(flat).cpu().numpy()
        bounds = np.cumsum([0] + [f.numel() for f in flat])
        np_dtype = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[self.dtype]

        def piece(i: int, dtype, shape) -> np.ndarray:
            return host[bounds[i]:bounds[i + 1]].view(dtype).reshape(shape)

        keys = piece(0, np_dtype, stacked.shape)
        captured = CapturedKeys(keys={k: keys[i] for i, k in enumerate(order)},
                                rope_positions=piece(1, np.int64, (n, 3)), dtype=self.dtype,
                                query_positions=piece(len(parts) - 1, np.int64, (n_q, 3)))
        i = 2
        if q_order:
            qs = piece(i, np_dtype, parts[i].shape)
            captured.queries = {k[:2]: qs[j] for j, k in enumerate(q_order)}
            i += 1
        if a_order:
            att = piece(i, np.float32, parts[i].shape)
            captured.attention = {k[0]: att[j] for j, k in enumerate(a_order)}
        self._out.clear()
        return captured


def _required(value: _T | None, what: str) -> _T:
    """A per-batch value the hooks need; ``run`` sets it before the forward, so None is a bug."""
    if value is None:
        raise RuntimeError(f"{what} is missing: KeyCapture.run sets it before the forward")
    return value


def _tokens_major(output: torch.Tensor, heads: int) -> torch.Tensor:
    """A projection's output as [batch, tokens, ...]: a norm applied on [batch, heads, tokens, dim] is
    transposed back."""
    if output.ndim == 4 and output.shape[1] == heads and output.shape[2] != heads:
        return output.transpose(1, 2)
    return output


def _gather_positions(pos: torch.Tensor, batch: int, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[n, 3] t/h/w position ids of the selected (row, column) pairs (1-D models repeat the position)."""
    if pos.ndim == 3:  # [3, batch, tokens] (M-RoPE t/h/w)
        return pos.expand(-1, batch, -1)[:, b, t].T
    return pos.expand(batch, -1)[b, t][:, None].expand(-1, 3)
