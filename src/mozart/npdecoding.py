"""Step decoders in numpy for GPT-2 and Llama: the sampler's light path, which never imports torch.

``mozart generate``, ``infill`` and ``accompany`` with a plain GPT-2 or Llama model (the built-in one
included) read its weights with ``weights.read_decoder`` and sample through these classes.  Importing
torch alone took 2.8-4.6 s on a 2-core AMD EPYC, more than sampling 16 bars; numpy, safetensors and
tokenizers take 0.4-0.7 s.  A one-token step of the built-in model costs about what torch's own step
decoder costs there (2.9 vs 3.7 ms at one row, 7.8 vs 6.7 ms at eight; ``build/exp/npvst.py``): at this
size a step reads the weights from memory, whichever library does it.

The interface is ``decoding``'s: ``step(ids)`` feeds a ``(rows, tokens)`` integer array (every row the
same length) and returns each row's next-token logits, ``(rows, vocabulary)`` float32; ``keep(rows)``
drops rows; ``fresh()`` is the same weights with an empty cache.  The arithmetic is transformers'
``GPT2LMHeadModel`` / ``LlamaForCausalLM`` in float32 (logits equal to 1e-4, tested).

Row-exact: every product is one matrix product per row (numpy's stacked matmul), never one product over
the whole batch.  OpenBLAS sums a batch's rows in an order that depends on the batch size (a row's
outputs differed by ~1e-5 alone and among five), which would make a seed's piece depend on ``-n``.
Stacked products cost 1.7-2.7x a batched product at 8-16 rows in isolation, less inside a step, where
reading the weights dominates.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .weights import (
    PREVIOUS_TOKENS_KEY,
    DecoderWeights,
    gpt2_blocks,
    gpt2_reproducible,
    llama_reproducible,
    llama_rope_theta,
    previous_token_weights,
)


def softmax(scores: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Softmax over the last axis (a row of -inf everywhere but one word gives that word 1).  ``in_place``
    writes it over ``scores``: at one row a decoder step is mostly per-operation overhead, and every new
    array adds to it."""
    if in_place:
        scores -= scores.max(axis=-1, keepdims=True)
    else:
        scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _transposed(weight: np.ndarray) -> np.ndarray:
    """An (out, in) weight as the (in, out) matrix ``x @ weight`` multiplies by, contiguous."""
    return np.ascontiguousarray(weight.T)


class _NumpyCachedDecoder:
    """Preallocated keys and values, (layer, row, kv head, position, dim), and attention over them."""

    def __init__(self, batch: int, layers: int, heads: int, kv_heads: int, head_dim: int, context: int):
        self.heads, self.kv_heads, self.head_dim, self.context, self.position = \
            heads, kv_heads, head_dim, context, 0
        self.keys = np.zeros((layers, batch, kv_heads, context, head_dim), dtype=np.float32)
        self.values = np.zeros_like(self.keys)
        self.last: np.ndarray | None = None  # each row's last tokens read (for previous-token embeddings)

    def keep(self, rows: np.ndarray | list[int]) -> None:
        """Go on with these rows only (indices into the current rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]
        if self.last is not None:
            self.last = self.last[rows]

    def fresh(self) -> _NumpyCachedDecoder:
        """The same prepared weights, for the rows kept, with an empty cache (the sampler's window slid)."""
        new = copy.copy(self)
        new.keys, new.values, new.position = np.zeros_like(self.keys), np.zeros_like(self.values), 0
        new.last = None
        return new

    def _previous_embedded(self, ids: np.ndarray, tables: list[np.ndarray], first: int) -> np.ndarray:
        """The previous-token embeddings of ``ids`` (rows, t) read after each row's last tokens (``first``
        before a sequence's start; previous_tokens.py): the sum over ``tables``, the token just before first;
        remembers each row's last tokens."""
        k, t = len(tables), ids.shape[1]
        before = np.full((ids.shape[0], k), first, dtype=ids.dtype) if self.last is None else self.last
        history = np.concatenate([before, ids], axis=1)
        self.last = history[:, -k:].copy()
        return sum(table[history[:, k - back:k - back + t]] for back, table in enumerate(tables, start=1))

    def _span(self, t: int) -> tuple[int, int]:
        start, end = self.position, self.position + t
        if end > self.context:
            raise ValueError(f"{end} tokens exceed the model's context of {self.context}")
        return start, end

    def _attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, end: int) -> np.ndarray:
        """Store k, v (rows, kv_heads, t, dim) at start..end; attend q (rows, heads, t, dim) causally to the
        cache up to end.  Returns (rows, t, heads * dim)."""
        rows, _, t, dim = q.shape
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        if self.kv_heads != self.heads:  # grouped queries: each key head serves its group's query heads
            keys = np.repeat(keys, self.heads // self.kv_heads, axis=1)
            values = np.repeat(values, self.heads // self.kv_heads, axis=1)
        scores = q @ keys.swapaxes(-1, -2)  # q carries the 1/sqrt(dim) scale (folded into its weights)
        if t > 1:  # query i (at position start + i) sees the keys up to its own position
            scores = np.where(np.tri(t, end, k=start, dtype=bool), scores, np.float32(-np.inf))
        attended = softmax(scores, in_place=True) @ values  # (rows, heads, t, dim)
        return attended.transpose(0, 2, 1, 3).reshape(rows, t, self.heads * dim)

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Read ``ids`` (rows, t) after the cache; the logits of each row's next token, (rows, vocabulary)."""
        raise NotImplementedError


class NumpyLlamaDecoder(_NumpyCachedDecoder):
    """Llama (RMSNorm, rotary positions, SwiGLU, optional biases and grouped key/value heads)."""

    def __init__(self, model: DecoderWeights, batch: int = 1):
        cfg, w = model.config, model.arrays
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        super().__init__(batch, cfg.num_hidden_layers, heads, cfg.num_key_value_heads, head_dim,
                         cfg.max_position_embeddings)
        # each RMSNorm's gain times sqrt(width) is folded into the product it feeds, as decoding.LlamaStepDecoder
        self.norm_eps = np.float32(cfg.hidden_size * cfg.rms_norm_eps)

        def gain(name: str) -> np.ndarray:
            return w[name] * np.float32(math.sqrt(cfg.hidden_size))

        def bias(names: list[str]) -> np.ndarray | None:
            found = [w.get(f"{n}.bias") for n in names]
            return None if found[0] is None else np.concatenate(found)

        # the queries' rows carry attention's 1/sqrt(head_dim) (rotation is linear, so it may come first)
        q_scale = _query_scale(heads * head_dim, 2 * cfg.num_key_value_heads * head_dim, head_dim)
        self.layers = []
        for i in range(cfg.num_hidden_layers):
            p = f"model.layers.{i}."
            qkv = [f"{p}self_attn.{n}_proj" for n in "qkv"]
            gate_up = [f"{p}mlp.{n}_proj" for n in ("gate", "up")]
            o, down = f"{p}self_attn.o_proj", f"{p}mlp.down_proj"
            qkv_bias = bias(qkv)
            self.layers.append((
                _transposed(np.concatenate([w[f"{n}.weight"] for n in qkv]) * gain(f"{p}input_layernorm.weight")
                            * q_scale[:, None]),
                None if qkv_bias is None else qkv_bias * q_scale,
                _transposed(np.concatenate([w[f"{n}.weight"] for n in gate_up])
                            * gain(f"{p}post_attention_layernorm.weight")),
                bias(gate_up),
                _transposed(w[f"{o}.weight"]), w.get(f"{o}.bias"),
                _transposed(w[f"{down}.weight"]), w.get(f"{down}.bias")))
        self.head = _transposed(w["lm_head.weight"] * gain("model.norm.weight"))
        self.embed, self.ffn = w["model.embed_tokens.weight"], cfg.intermediate_size
        # the previous-token tables (previous_tokens.py), when the model has them
        self.previous = [w[name] for name in previous_token_weights(getattr(cfg, PREVIOUS_TOKENS_KEY, 0) or 0)]
        self.first = getattr(cfg, "pad_token_id", 0)
        self.cos, self.sin, self.rotation = rotary_tables(llama_rope_theta(cfg), head_dim, self.context)

    def _norm(self, x: np.ndarray) -> np.ndarray:
        """RMSNorm without its gain (folded into the next product)."""
        return x / np.sqrt((x * x).sum(axis=-1, keepdims=True) + self.norm_eps)

    def _rotate(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        """Rotary positions on (rows, heads, t, dim): x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1)."""
        half = self.head_dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * self.cos[start:end] + rotated * self.sin[start:end]

    def _queries_keys(self, qkv: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The rotated queries (rows, heads, t, dim) and keys (rows, kv_heads, t, dim) of the fused product's
        output.  One token: q and k rotated together by one product with the position's rotation matrix (a
        step at one row is mostly per-operation overhead)."""
        rows, t, _ = qkv.shape
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        if t == 1:
            qk = qkv[:, 0, :(heads + kv_heads) * dim].reshape(rows, heads + kv_heads, dim) @ self.rotation[start]
            return qk[:, :heads, None], qk[:, heads:, None]
        q = qkv[..., :heads * dim].reshape(rows, t, heads, dim).transpose(0, 2, 1, 3)
        k = qkv[..., heads * dim:(heads + kv_heads) * dim].reshape(rows, t, kv_heads, dim).transpose(0, 2, 1, 3)
        return self._rotate(q, start, end), self._rotate(k, start, end)

    def step(self, ids: np.ndarray) -> np.ndarray:
        rows, t = ids.shape
        start, end = self._span(t)
        x = self.embed[ids]  # (rows, t, width)
        if self.previous:
            x = x + self._previous_embedded(ids, self.previous, self.first)
        qk_size = (self.heads + self.kv_heads) * self.head_dim
        for layer, (qkv_w, qkv_b, gate_up_w, gate_up_b, o_w, o_b, down_w, down_b) in enumerate(self.layers):
            qkv = _affine(self._norm(x), qkv_w, qkv_b)
            q, k = self._queries_keys(qkv, start, end)
            v = qkv[..., qk_size:].reshape(rows, t, self.kv_heads, self.head_dim).transpose(0, 2, 1, 3)
            attended = self._attend(layer, q, k, v, start, end)
            x = x + _affine(attended, o_w, o_b)
            gate_up = _affine(self._norm(x), gate_up_w, gate_up_b)
            gate = gate_up[..., :self.ffn]
            x = x + _affine(_silu(gate) * gate_up[..., self.ffn:], down_w, down_b)
        self.position = end
        return (self._norm(x[:, -1:]) @ self.head)[:, 0]


class NumpyGpt2Decoder(_NumpyCachedDecoder):
    """GPT-2 (LayerNorm, learned positions, gelu_new)."""

    def __init__(self, model: DecoderWeights, batch: int = 1):
        cfg, w = model.config, model.arrays
        super().__init__(batch, cfg.n_layer, cfg.n_head, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.n_positions)
        self.eps = np.float32(cfg.layer_norm_epsilon)
        blocks = gpt2_blocks(w, cfg.n_layer)
        # Conv1D weights are stored (in, out): what x @ weight multiplies by; the queries' columns carry
        # attention's 1/sqrt(head_dim)
        q_scale = _query_scale(cfg.n_embd, 2 * cfg.n_embd, self.head_dim)
        self.layers = []
        for ((qkv_w, qkv_b), *rest), _ in blocks:
            scaled = [(qkv_w * q_scale, qkv_b * q_scale), *rest]
            self.layers.append(tuple(part for weight, bias in scaled for part in (np.ascontiguousarray(weight), bias)))
        self.norms = [norms for _, norms in blocks]
        self.tokens, self.positions = w["transformer.wte.weight"], w["transformer.wpe.weight"]
        self.final_norm = (w["transformer.ln_f.weight"], w["transformer.ln_f.bias"])
        self.head = _transposed(w["lm_head.weight"])

    def _layer_norm(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=-1, keepdims=True)
        return centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + self.eps) * weight + bias

    def step(self, ids: np.ndarray) -> np.ndarray:
        rows, t = ids.shape
        start, end = self._span(t)
        x = self.tokens[ids] + self.positions[start:end]  # (rows, t, width)
        for layer, ((qkv_w, qkv_b, o_w, o_b, fc_w, fc_b, out_w, out_b), (ln_1_w, ln_1_b, ln_2_w, ln_2_b)) in \
                enumerate(zip(self.layers, self.norms)):
            qkv = _affine(self._layer_norm(x, ln_1_w, ln_1_b), qkv_w, qkv_b)
            q, k, v = qkv.reshape(rows, t, 3, self.heads, self.head_dim).transpose(2, 0, 3, 1, 4)
            x = x + _affine(self._attend(layer, q, k, v, start, end), o_w, o_b)
            h = _gelu_tanh(_affine(self._layer_norm(x, ln_2_w, ln_2_b), fc_w, fc_b))
            x = x + _affine(h, out_w, out_b)
        self.position = end
        return (self._layer_norm(x[:, -1:], *self.final_norm) @ self.head)[:, 0]


def rotary_tables(theta: float, dim: int, positions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Llama's rotary positions for every position, once (transformers recomputes them each forward):
    cos and sin, (positions, dim) float32, and per position the (dim, dim) matrix R with
    ``x @ R == x * cos + rotate_half(x) * sin`` (rotate_half(x) = (-x2, x1)): one product per one-token step
    instead of the slices, negation, concatenation and three elementwise operations.  The torch decoder
    (``decoding.LlamaStepDecoder``) uses the same tables."""
    inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    angles = np.outer(np.arange(positions, dtype=np.float32), inv_freq.astype(np.float32))
    angles = np.concatenate([angles, angles], axis=-1)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    half = dim // 2
    rotation = np.zeros((positions, dim, dim), dtype=np.float32)
    j = np.arange(dim)
    rotation[:, j, j] = cos
    j = np.arange(half)
    rotation[:, j + half, j] = -sin[:, j]  # out_j (j < half) takes -x_{j+half} sin_j
    rotation[:, j, j + half] = sin[:, j + half]  # out_{j+half} takes x_j sin_{j+half}
    return cos, sin, rotation


def _query_scale(query_width: int, key_value_width: int, head_dim: int) -> np.ndarray:
    """Per output of a fused q|k|v product: 1/sqrt(head_dim) for the queries, 1 for keys and values."""
    return np.concatenate([np.full(query_width, 1 / math.sqrt(head_dim), dtype=np.float32),
                           np.ones(key_value_width, dtype=np.float32)])


def _affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x (rows, t, in) @ weight (in, out) + bias: numpy multiplies each row's (t, in) block separately
    (row-exact, see the module docstring)."""
    out = x @ weight
    return out if bias is None else out + bias


def _silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), with sigmoid as (1 + tanh(x / 2)) / 2: no overflow for large negative x."""
    return x * (np.float32(0.5) + np.float32(0.5) * np.tanh(np.float32(0.5) * x))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
    return np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))


def numpy_decoder_for(model: DecoderWeights, batch: int = 1) -> _NumpyCachedDecoder:
    """The numpy step decoder for a light-loaded model (``weights.read_decoder`` only returns the models
    these classes reproduce)."""
    if llama_reproducible(model.config, model.architecture):
        return NumpyLlamaDecoder(model, batch)
    if gpt2_reproducible(model.config, model.architecture):
        return NumpyGpt2Decoder(model, batch)
    raise ValueError(f"no numpy step decoder for {model.architecture}")
