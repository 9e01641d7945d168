"""Torch step decoders with a KV cache, for the sampler: a batch of rows read one token at a time.

The sampler uses these for models loaded with torch (``models.load_model``: BART, an adapter beyond plain LoRA,
``mozart evaluate``'s samples); a plain GPT-2 or Llama read by ``models.load_sampler`` steps through
``npdecoding``'s numpy decoders instead, without importing torch.

``step_decoder(model, batch)`` returns an object whose ``step(ids)`` feeds new token ids
(a ``(rows, tokens)`` tensor, every row the same length: the sampler moves its rows in
lockstep) and returns the logits of each row's next token, ``(rows, vocabulary)``;
``keep(rows)`` drops the rows that finished, so they stop costing compute.

For the models Mozart trains there are hand-written forwards with the cached keys and
values in preallocated tensors: :class:`Gpt2StepDecoder`, :class:`LlamaStepDecoder` and
:class:`BartStepDecoder` (BART's decoder over its encoder's outputs, whose cross-attention keys
and values it computes once). They do the same arithmetic as transformers' ``GPT2LMHeadModel`` /
``LlamaForCausalLM`` / ``BartForConditionalGeneration`` (logits equal to float precision, tested)
without the Python around each matrix product, which is most of a one-token step on a CPU (GPT-2
small: ~4.4 ms -> ~2.5 ms per step).  Every other model uses :class:`HFStepDecoder`, transformers'
forward with its own cache.

On a CPU with native bf16 (``hardware.cpu_has_bf16``) the hand-written decoders do their matrix
products in bf16 (weights converted once; the residual stream, norms, attention and logits stay
float32): a one-token step of the built-in model streams half the weight bytes, and each output
row is the same whatever the batch (bf16 products are row-exact here, float32 ones are not quite),
so a seed still gives the same piece at any ``-n``.  There the weights of the matrix products are
also stored as int8 with one scale per output channel (``weights="int8"``; torch's weight-only int8
kernel, activations in bf16): a one-token step streams a quarter of float32's bytes, the products
of the built-in model take 0.33 instead of 1.27 ms per step at one row, and rows stay exact.  The
cost in likelihood: 4.6110 vs 4.6100 bits/note on 400 test pieces (measured with the weights
rounded the same way).  ``matmul_dtype=torch.float32, weights="dense"`` gives transformers' arithmetic
exactly (the tests compare logits that way).

On a CPU without native bf16 (AVX2 only, e.g. the 2-core AMD EPYC some of our machines are) bf16
matrix products are emulated (the built-in model's: 21 ms a step at one row, float32's 0.95 ms), but torch's
int8 weight kernel is not: it widens the bf16 activations in registers and reads a quarter of float32's
bytes.  So int8 weights with bf16 activations are the default wherever torch has that kernel, native bf16
or not (``sampling_matmul_dtype``).  On that AMD EPYC (``build/exp/fmt2.py``, three paired runs), sampling
gave 221 tokens/s at n=1 and 624 at n=8, against 171 and 569 with fp16 weights for FBGEMM's fp16 product
(float32 activations; in another paired run, fp16 143 and 493, float32 weights 146 and 387); rows stay exact
there too (tested).
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .hardware import bf16_on_cpu
from .npdecoding import rotary_tables
from .previous_tokens import previous_embedded, previous_tokens
from .weights import (
    architecture_of,
    gpt2_blocks,
    gpt2_reproducible,
    llama_reproducible,
    llama_rope_theta,
    previous_token_weights,
)


class HFStepDecoder:
    """Any transformers decoder (or BART's decoder over fixed encoder outputs), with its KV cache."""

    def __init__(self, model, encoder_outputs=None):
        self.model, self.encoder_outputs, self.past = model, encoder_outputs, None
        # transformers 5 names the cache argument ``cache``; earlier versions ``past_key_values``
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        # a model that reads previous tokens gets its inputs embedded here, after each row's last tokens
        self.last = None
        self.previous_tokens = encoder_outputs is None and previous_tokens(model.config) > 0

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        kwargs = {self.cache_arg: self.past, "use_cache": True}
        ids = ids.to(device)
        if self.encoder_outputs is not None:
            out = self.model(encoder_outputs=self.encoder_outputs, decoder_input_ids=ids, **kwargs)
        elif self.previous_tokens:
            embedded, self.last = self.model.get_decoder().embed_tokens.continued(ids, self.last)
            out = self.model(inputs_embeds=embedded, **kwargs)
        else:
            out = self.model(input_ids=ids, **kwargs)
        self.past = out["cache"] if "cache" in out else out.get("past_key_values")  # 5.x name, else 4.x
        return out.logits[:, -1].float()

    def fresh(self) -> HFStepDecoder:
        """A decoder over the same model (and the rows kept) with an empty cache."""
        return HFStepDecoder(self.model, self.encoder_outputs)

    def keep(self, rows: torch.Tensor) -> None:
        if self.past is not None:
            self.past.reorder_cache(rows.to(next(self.model.parameters()).device))
        if self.last is not None:
            self.last = self.last[rows.to(self.last.device)]
        if self.encoder_outputs is not None:
            self.encoder_outputs.last_hidden_state = self.encoder_outputs.last_hidden_state[rows]


class _Int8Weight(NamedTuple):
    """An (out, in) weight as int8 ``values`` times one bf16 scale per output row (symmetric: the
    row's largest magnitude maps to 127)."""

    values: torch.Tensor
    scales: torch.Tensor

    @staticmethod
    def of(weight: torch.Tensor) -> _Int8Weight:
        scales = (weight.float().abs().amax(dim=1) / 127).clamp(min=1e-12)
        values = (weight.float() / scales[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        return _Int8Weight(values, scales.to(torch.bfloat16))


#: How the products' weights are stored: as they are (transposed, in the products' dtype) or int8 with
#: bf16 activations.
DENSE, INT8 = "dense", "int8"
WEIGHT_FORMATS = (DENSE, INT8)


def int8_available(device: torch.device, matmul_dtype: torch.dtype) -> bool:
    """Whether products in ``matmul_dtype`` on ``device`` use int8 weights: bf16 products on a CPU
    whose torch has the weight-only int8 kernel."""
    return device.type == "cpu" and matmul_dtype == torch.bfloat16 and hasattr(torch, "_weight_int8pack_mm")


def default_weight_format(device: torch.device, matmul_dtype: torch.dtype) -> str:
    """int8 weights under bf16 products where the kernel exists, else the weights as they are."""
    return INT8 if int8_available(device, matmul_dtype) else DENSE


class _CachedDecoder:
    """Preallocated keys and values: (layer, row, head, position, dim).  4-D slices per layer
    take SDPA's fast CPU kernel; 3-D ones do not."""

    def __init__(self, model, batch: int, layers: int, heads: int, head_dim: int, context: int,
                 matmul_dtype: torch.dtype | None = None, weights: str | None = None):
        p = next(model.parameters())
        self.context, self.position = context, 0
        self.matmul_dtype = matmul_dtype or p.dtype
        self.weights = default_weight_format(p.device, self.matmul_dtype) if weights is None else weights
        if self.weights not in WEIGHT_FORMATS:
            raise ValueError(f"unknown weight format {self.weights!r} (one of {', '.join(WEIGHT_FORMATS)})")
        if self.weights == INT8 and self.matmul_dtype != torch.bfloat16:
            raise ValueError("int8 weights take bf16 activations")
        self.keys = torch.zeros(layers, batch, heads, context, head_dim, dtype=p.dtype, device=p.device)
        self.values = torch.zeros_like(self.keys)
        self.last: torch.Tensor | None = None  # each row's last tokens read (for previous-token embeddings)

    def _weight(self, weight: torch.Tensor) -> torch.Tensor | _Int8Weight:
        """An (out, in) weight as ``_linear`` multiplies by it, a copy made once, at start: int8 with
        per-output-channel scales (``weights``), else the (in, out) transpose,
        contiguous, in the dtype of the products.  Multiplying by the stored transpose is faster than
        ``F.linear`` for few rows on a bf16 CPU (bf16: 0.9 vs 1.6 ms per step of the built-in model's
        products at one row) and as row-exact."""
        weight = weight.detach()
        if self.weights == INT8:
            return _Int8Weight.of(weight)
        return weight.T.contiguous().to(self.matmul_dtype)

    def _bias(self, bias: torch.Tensor | None) -> torch.Tensor | None:
        return None if bias is None else bias.detach().to(self.matmul_dtype)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor | _Int8Weight,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """x @ weight + bias (``weight`` from ``_weight``) in the products' dtype, returned in x's."""
        rows = x.reshape(-1, x.shape[-1])
        if bias is not None and isinstance(weight, torch.Tensor):
            out = torch.addmm(bias, rows.to(self.matmul_dtype), weight)
        else:
            out = self._product(rows, weight)
            out = out if bias is None else out + bias
        return out.view(*x.shape[:-1], out.shape[-1]).to(x.dtype)

    def _product(self, x: torch.Tensor, weight: torch.Tensor | _Int8Weight) -> torch.Tensor:
        """x @ weight for a 2-D x, no bias, returned in the products' dtype (the caller converts)."""
        x = x.to(self.matmul_dtype)
        if isinstance(weight, _Int8Weight):
            return torch._weight_int8pack_mm(x, weight.values, weight.scales)
        return torch.mm(x, weight)

    def keep(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.keys.device)
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]
        if self.last is not None:
            self.last = self.last[rows]

    def fresh(self) -> _CachedDecoder:
        """A decoder with the same prepared weights, for the rows kept, and an empty cache: what the sampler
        needs when its window slides (preparing the weights again cost 25-30 ms for the built-in model)."""
        new = copy.copy(self)
        new.keys, new.values, new.position = torch.zeros_like(self.keys), torch.zeros_like(self.values), 0
        new.last = None
        return new

    def _previous_embedded(self, ids: torch.Tensor, tables: list[torch.Tensor], first: int) -> torch.Tensor:
        """The previous-token embeddings of ``ids`` (rows, t) read after each row's last tokens (``first``
        before a sequence's start; previous_tokens.py): the sum over ``tables``, the token just before first;
        remembers each row's last tokens."""
        embedded, self.last = previous_embedded(ids, self.last, tables, first)
        return embedded

    def _span(self, t: int) -> tuple[int, int, torch.Tensor | None]:
        """(start, end, attention mask) for ``t`` new tokens after the cache."""
        start, end = self.position, self.position + t
        if end > self.context:
            raise ValueError(f"{end} tokens exceed the model's context of {self.context}")
        mask = None
        if t > 1 and start > 0:  # new tokens see the whole cache and each other causally
            mask = torch.ones(t, end, dtype=torch.bool, device=self.keys.device).tril(diagonal=start)
        return start, end, mask

    def _attend(self, layer: int, q, k, v, start: int, end: int, mask, scale: float,
                gqa: bool = False) -> torch.Tensor:
        """Store k, v (rows, kv_heads, t, dim) at start..end and attend q (rows, heads, t, dim) to the cache
        up to end; ``gqa``: fewer key/value heads than query heads.  One query: ``attend_one`` (row-exact)."""
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        if q.shape[2] == 1:
            return attend_one(q, keys, values, scale)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=mask is None, scale=scale,
                                              enable_gqa=gqa)


class Gpt2StepDecoder(_CachedDecoder):
    """GPT-2's forward over a preallocated KV cache (see the module docstring)."""

    def __init__(self, model, batch: int = 1, matmul_dtype: torch.dtype | None = None,
                 weights: str | None = None):
        cfg = model.config
        self.heads, self.width = cfg.n_head, cfg.n_embd
        self.head_dim = self.width // self.heads
        self.eps = cfg.layer_norm_epsilon
        super().__init__(model, batch, cfg.n_layer, self.heads, self.head_dim, cfg.n_positions, matmul_dtype,
                         weights)
        w = model.state_dict()
        blocks = gpt2_blocks(w, cfg.n_layer)
        # Conv1D stores (in, out): given as its (out, in) view, like every other weight
        self.layers = [tuple(part for weight, bias in linears for part in (self._weight(weight.T), self._bias(bias)))
                       for linears, _ in blocks]
        self.norms = [norms for _, norms in blocks]
        self.tokens, self.positions = w["transformer.wte.weight"], w["transformer.wpe.weight"]
        self.final_norm = (w["transformer.ln_f.weight"], w["transformer.ln_f.bias"])
        self.head = self._weight(w["lm_head.weight"])

    @staticmethod
    def supports(model) -> bool:
        """True for plain GPT-2 models whose attention this class reproduces exactly."""
        return gpt2_reproducible(model.config, architecture_of(model))

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, t = ids.shape
        start, end, mask = self._span(t)
        x = self.tokens[ids.to(self.keys.device)] + self.positions[start:end]  # (rows, t, width)
        scale = 1 / math.sqrt(self.head_dim)
        for layer, ((qkv_w, qkv_b, o_w, o_b, fc_w, fc_b, out_w, out_b), (ln_1_w, ln_1_b, ln_2_w, ln_2_b)) in \
                enumerate(zip(self.layers, self.norms)):
            h = F.layer_norm(x, (self.width,), ln_1_w, ln_1_b, self.eps)
            qkv = self._linear(h, qkv_w, qkv_b)
            q, k, v = qkv.view(rows, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attn = self._attend(layer, q, k, v, start, end, mask, scale)
            x = x + self._linear(attn.transpose(1, 2).reshape(rows, t, self.width), o_w, o_b)
            h = F.layer_norm(x, (self.width,), ln_2_w, ln_2_b, self.eps)
            h = F.gelu(self._linear(h, fc_w, fc_b), approximate="tanh")
            x = x + self._linear(h, out_w, out_b)
        self.position = end
        last = F.layer_norm(x[:, -1], (self.width,), *self.final_norm, self.eps)
        return self._linear(last, self.head).float()


class LlamaStepDecoder(_CachedDecoder):
    """Llama's forward (RMSNorm, rotary positions, SwiGLU) over a preallocated KV cache."""

    def __init__(self, model, batch: int = 1, matmul_dtype: torch.dtype | None = None,
                 weights: str | None = None):
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        super().__init__(model, batch, cfg.num_hidden_layers, self.kv_heads, self.head_dim,
                         cfg.max_position_embeddings, matmul_dtype, weights)
        # the rotary tables of every position, once: the numpy decoder's, as tensors
        self.cos, self.sin, self.rotation = (
            torch.from_numpy(t).to(self.keys.device, self.keys.dtype)
            for t in rotary_tables(llama_rope_theta(cfg), self.head_dim, self.context))
        # q, k, v as one product and gate, up as another: fewer, larger matrix products per step
        w = model.state_dict()
        # each RMSNorm's gain, times the sqrt(width) of its mean, is folded into the product the norm feeds
        # (its input columns): the norm itself is then x / sqrt(|x|^2 + width * eps), two operations fewer
        self.norm_eps = cfg.hidden_size * self.eps

        def gain(name: str) -> torch.Tensor:
            return w[name] * math.sqrt(cfg.hidden_size)

        self.fused = []
        for i in range(cfg.num_hidden_layers):
            prefix = f"model.layers.{i}."
            qkv_w, qkv_b = _stacked(w, [f"{prefix}self_attn.{n}_proj" for n in "qkv"])
            gate_up_w, gate_up_b = _stacked(w, [f"{prefix}mlp.{n}_proj" for n in ("gate", "up")])
            qkv_w = qkv_w * gain(f"{prefix}input_layernorm.weight")
            gate_up_w = gate_up_w * gain(f"{prefix}post_attention_layernorm.weight")
            o, down = f"{prefix}self_attn.o_proj", f"{prefix}mlp.down_proj"
            self.fused.append((self._weight(qkv_w), self._bias(qkv_b), self._weight(gate_up_w), self._bias(gate_up_b),
                               self._weight(w[f"{o}.weight"]), self._bias(w.get(f"{o}.bias")),
                               self._weight(w[f"{down}.weight"]), self._bias(w.get(f"{down}.bias"))))
        self.head = self._weight(w["lm_head.weight"] * gain("model.norm.weight"))
        self.embed = w["model.embed_tokens.weight"]
        # the previous-token tables (previous_tokens.py), when the model has them
        self.previous = [w[name] for name in previous_token_weights(previous_tokens(cfg))]
        self.first = cfg.pad_token_id
        self.ffn = cfg.intermediate_size
        # the one-token path below has no room for biases or grouped heads: those take the general one
        self.lean = self.kv_heads == self.heads and all(b is None for f in self.fused for b in f[1::2])

    @staticmethod
    def supports(model) -> bool:
        """True for plain Llama models whose arithmetic this class reproduces exactly."""
        return llama_reproducible(model.config, architecture_of(model))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """RMSNorm without its gain (folded into the next product): written out, since F.rms_norm measured
        slower here (33 vs ~12 us per call at one row), and with a sum, not a mean (27 vs 40 us on an AMD
        EPYC, gain included)."""
        return x * (x * x).sum(-1, keepdim=True).add_(self.norm_eps).rsqrt_()

    def _rotate(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos[start:end] + rotated * self.sin[start:end]

    def _one_token(self, ids: torch.Tensor) -> torch.Tensor:
        """``step`` for one new token per row: the same arithmetic on (rows, width) tensors in as few
        tensor operations as it takes: at this size each costs more in dispatch than in arithmetic (the
        built-in model's step at one row: 1.58-1.76 ms through ``step``'s general path, 1.31-1.46 ms here,
        in three paired runs)."""
        rows, position = ids.shape[0], self.position
        self._span(1)
        ids = ids.to(self.keys.device)
        x = self.embed[ids.view(-1)]  # (rows, width), float32
        if self.previous:
            x = x + self._previous_embedded(ids, self.previous, self.first).view(rows, -1)
        rotation, heads, dim = self.rotation[position], self.heads, self.head_dim
        qk_size, scale = 2 * heads * dim, 1 / math.sqrt(dim)
        for layer, (qkv_w, _, gate_up_w, _, o_w, _, down_w, _) in enumerate(self.fused):
            h = self._norm(x)
            qkv = self._product(h, qkv_w).float()
            qk = qkv[:, :qk_size].view(rows, 2 * heads, dim) @ rotation  # q and k rotated together
            self.keys[layer, :, :, position] = qk[:, heads:]
            self.values[layer, :, :, position] = qkv[:, qk_size:].view(rows, heads, dim)
            attn = attend_one(qk[:, :heads].unsqueeze(2), self.keys[layer, :, :, :position + 1],
                              self.values[layer, :, :, :position + 1], scale)
            x = x + self._product(attn.view(rows, -1), o_w).float()
            h = self._norm(x)
            gate_up = self._product(h, gate_up_w).float()
            x = x + self._product(F.silu(gate_up[:, :self.ffn]) * gate_up[:, self.ffn:], down_w).float()
        self.position = position + 1
        last = self._norm(x)
        return self._product(last, self.head).float()

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, t = ids.shape
        if t == 1 and self.lean:
            return self._one_token(ids)
        start, end, mask = self._span(t)
        ids = ids.to(self.keys.device)
        x = self.embed[ids]  # (rows, t, width)
        if self.previous:
            x = x + self._previous_embedded(ids, self.previous, self.first)
        scale = 1 / math.sqrt(self.head_dim)
        gqa = self.kv_heads != self.heads
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for layer, weights in enumerate(self.fused):
            qkv_w, qkv_b, gate_up_w, gate_up_b, o_w, o_b, down_w, down_b = weights
            h = self._norm(x)
            qkv = self._linear(h, qkv_w, qkv_b)
            if t == 1:  # one token: q and k rotated together, one product with the position's rotation
                qk = qkv[..., :q_size + kv_size].view(rows, self.heads + self.kv_heads, self.head_dim)
                qk = (qk @ self.rotation[start]).unsqueeze(2)  # (rows, heads, 1, dim)
                q, k = qk[:, :self.heads], qk[:, self.heads:]
                v = qkv[..., q_size + kv_size:].view(rows, self.kv_heads, 1, self.head_dim)
            else:
                q, k, v = qkv.split((q_size, kv_size, kv_size), dim=-1)
                q = q.view(rows, t, self.heads, self.head_dim).transpose(1, 2)
                k = k.view(rows, t, self.kv_heads, self.head_dim).transpose(1, 2)
                v = v.view(rows, t, self.kv_heads, self.head_dim).transpose(1, 2)
                q, k = self._rotate(q, start, end), self._rotate(k, start, end)
            attn = self._attend(layer, q, k, v, start, end, mask, scale, gqa)
            x = x + self._linear(attn.transpose(1, 2).reshape(rows, t, -1), o_w, o_b)
            h = self._norm(x)
            gate, up = self._linear(h, gate_up_w, gate_up_b).chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, down_w, down_b)
        self.position = end
        last = self._norm(x[:, -1])
        return self._linear(last, self.head).float()


class BartStepDecoder(_CachedDecoder):
    """BART's decoder over fixed encoder outputs (learned positions, post-norm layers, cross-attention) with
    a preallocated self-attention cache; each layer's cross-attention keys and values are computed once."""

    def __init__(self, model, encoder_outputs, batch: int = 1, matmul_dtype: torch.dtype | None = None,
                 weights: str | None = None):
        cfg = model.config
        decoder = model.get_decoder()
        self.heads, self.width = cfg.decoder_attention_heads, cfg.d_model
        self.head_dim = self.width // self.heads
        super().__init__(model, batch, cfg.decoder_layers, self.heads, self.head_dim, cfg.max_position_embeddings,
                         matmul_dtype, weights)
        self.embed = decoder.embed_tokens.weight.detach() * decoder.embed_tokens.embed_scale
        self.positions = decoder.embed_positions.weight.detach()[decoder.embed_positions.offset:]
        self.embed_norm = self._norm_of(decoder.layernorm_embedding)
        encoded = encoder_outputs.last_hidden_state  # (rows, source tokens, width)
        self.layers, self.norms, self.cross = [], [], []
        for layer in decoder.layers:
            mine, cross = layer.self_attn, layer.encoder_attn
            qkv_w = torch.cat([mine.q_proj.weight, mine.k_proj.weight, mine.v_proj.weight])
            qkv_b = torch.cat([mine.q_proj.bias, mine.k_proj.bias, mine.v_proj.bias])
            self.layers.append(tuple(self._prepared(w, b) for w, b in (
                (qkv_w, qkv_b), (mine.out_proj.weight, mine.out_proj.bias), (cross.q_proj.weight, cross.q_proj.bias),
                (cross.out_proj.weight, cross.out_proj.bias), (layer.fc1.weight, layer.fc1.bias),
                (layer.fc2.weight, layer.fc2.bias))))
            self.norms.append((self._norm_of(layer.self_attn_layer_norm), self._norm_of(layer.encoder_attn_layer_norm),
                               self._norm_of(layer.final_layer_norm)))
            # the encoder's keys and values, once: through the same products as the rest (row-exact)
            k, v = (self._linear(encoded, *self._prepared(proj.weight, proj.bias)) for proj in (cross.k_proj,
                                                                                                  cross.v_proj))
            self.cross.append(tuple(t.view(*encoded.shape[:2], self.heads, self.head_dim).transpose(1, 2)
                                    for t in (k, v)))
        self.head = self._weight(model.lm_head.weight)
        self.logits_bias = model.final_logits_bias.detach()[0]

    def _prepared(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple:
        return self._weight(weight), self._bias(bias)

    @staticmethod
    def _norm_of(norm: torch.nn.LayerNorm) -> tuple:
        return norm.normalized_shape, norm.weight.detach(), norm.bias.detach(), norm.eps

    @staticmethod
    def supports(model) -> bool:
        """True for plain BART models whose arithmetic this class reproduces exactly."""
        cfg = model.config
        return (cfg.model_type == "bart" and architecture_of(model) == "BartForConditionalGeneration"
                and cfg.activation_function == "gelu" and getattr(model.get_decoder(), "layer_norm", None) is None
                and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        rows = rows.to(self.keys.device)
        self.cross = [(k[rows], v[rows]) for k, v in self.cross]

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, t = ids.shape
        start, end, mask = self._span(t)
        x = self.embed[ids.to(self.keys.device)] + self.positions[start:end]  # (rows, t, width)
        x = F.layer_norm(x, *self.embed_norm)
        scale = 1 / math.sqrt(self.head_dim)
        for layer, ((qkv_w, qkv_b), (o_w, o_b), (cq_w, cq_b), (co_w, co_b), (fc1_w, fc1_b), (fc2_w, fc2_b)) in \
                enumerate(self.layers):
            mine_norm, cross_norm, final_norm = self.norms[layer]
            q, k, v = self._linear(x, qkv_w, qkv_b).view(rows, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attn = self._attend(layer, q, k, v, start, end, mask, scale)
            x = F.layer_norm(x + self._linear(attn.transpose(1, 2).reshape(rows, t, self.width), o_w, o_b), *mine_norm)
            q = self._linear(x, cq_w, cq_b).view(rows, t, self.heads, self.head_dim).transpose(1, 2)
            keys, values = self.cross[layer]
            cross = attend_one(q, keys, values, scale) if t == 1 else \
                F.scaled_dot_product_attention(q, keys, values, scale=scale)
            x = F.layer_norm(x + self._linear(cross.transpose(1, 2).reshape(rows, t, self.width), co_w, co_b),
                             *cross_norm)
            h = F.gelu(self._linear(x, fc1_w, fc1_b))
            x = F.layer_norm(x + self._linear(h, fc2_w, fc2_b), *final_norm)
        self.position = end
        return self._linear(x[:, -1], self.head).float() + self.logits_bias


def attend_one(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of one query per row and head, (rows, heads, 1, dim), to (rows, kv_heads, length, dim) keys
    and values (kv_heads divides heads: grouped queries share their group's keys).  Written out, not SDPA:
    SDPA's CPU kernel gives a row slightly different results alone and in a batch past ~120 keys (1e-8 on
    an AMD EPYC), which bf16 activations round into different logits, so a seed's piece depended on -n
    (a test caught it); these products are row-exact.  It costs a few percent of a step."""
    rows, heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    grouped = q.reshape(rows, kv_heads, heads // kv_heads, dim)  # a group's queries against its keys
    weights = torch.softmax((grouped @ keys.transpose(-1, -2)) * scale, dim=-1)
    return (weights @ values).reshape(rows, heads, 1, dim)


def _stacked(weights: dict[str, torch.Tensor], names: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights of several linear layers stacked into one matrix, with their biases (None when
    they have none): q/k/v as one product, gate/up as another, fewer and larger products per step."""
    weight = torch.cat([weights[f"{n}.weight"] for n in names])
    biases = [weights.get(f"{n}.bias") for n in names]
    return weight, None if biases[0] is None else torch.cat(biases)


def sampling_matmul_dtype(model) -> torch.dtype | None:
    """bf16 for a float32 model on a CPU with native bf16 or with torch's int8 weight kernel (which takes
    bf16 activations, and is fast without native bf16 too: see the module docstring); otherwise None (the
    model's own dtype)."""
    p = next(model.parameters())
    if p.dtype != torch.float32:
        return None
    return torch.bfloat16 if bf16_on_cpu(p.device) or int8_available(p.device, torch.bfloat16) else None


def step_decoder(model, encoder_outputs=None, batch: int = 1, matmul_dtype: torch.dtype | None = None,
                 weights: str | None = None):
    """The fastest step decoder for ``model`` and ``batch`` rows (see the module docstring); its
    matrix products in ``matmul_dtype`` (default: ``sampling_matmul_dtype``), their weights stored as
    ``weights`` says (one of ``WEIGHT_FORMATS``; default: ``default_weight_format``)."""
    dtype = matmul_dtype or sampling_matmul_dtype(model)
    if encoder_outputs is not None:
        if BartStepDecoder.supports(model):
            return BartStepDecoder(model, encoder_outputs, batch, dtype, weights)
        return HFStepDecoder(model, encoder_outputs)
    fast = fast_decoder_for(model)
    return HFStepDecoder(model) if fast is None else fast(model, batch, dtype, weights)


def fast_decoder_for(model) -> type[_CachedDecoder] | None:
    """The hand-written step decoder class that reproduces ``model``, or None (transformers' forward)."""
    return next((d for d in (Gpt2StepDecoder, LlamaStepDecoder) if d.supports(model)), None)
