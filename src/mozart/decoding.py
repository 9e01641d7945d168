"""Step decoders with a KV cache, for the sampler: a batch of rows read one token at a time.

``step_decoder(model, batch)`` returns an object whose ``step(ids)`` feeds new token ids
(a ``(rows, tokens)`` tensor, every row the same length: the sampler moves its rows in
lockstep) and returns the logits of each row's next token, ``(rows, vocabulary)``;
``keep(rows)`` drops the rows that finished, so they stop costing compute.

For the decoders Mozart trains there are hand-written forwards with the cached keys and
values in preallocated tensors: :class:`Gpt2StepDecoder` and :class:`LlamaStepDecoder`.
They do the same arithmetic as transformers' ``GPT2LMHeadModel`` / ``LlamaForCausalLM``
(logits equal to float precision, tested) without the Python around each matrix product,
which is most of a one-token step on a CPU (GPT-2 small: ~4.4 ms -> ~2.5 ms per step).
Every other model uses :class:`HFStepDecoder`, transformers' forward with its own cache.

On a CPU with native bf16 (``hardware.cpu_has_bf16``) the hand-written decoders do their matrix
products in bf16 (weights converted once; the residual stream, norms, attention and logits stay
float32): a one-token step of the built-in model streams half the weight bytes, and each output
row is the same whatever the batch (bf16 products are row-exact here, float32 ones are not quite),
so a seed still gives the same piece at any ``-n``.  ``matmul_dtype=torch.float32`` gives
transformers' arithmetic exactly (the tests compare logits that way).
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F

from .hardware import bf16_on_cpu


class HFStepDecoder:
    """Any transformers decoder (or BART's decoder over fixed encoder outputs), with its KV cache."""

    def __init__(self, model, encoder_outputs=None):
        self.model, self.encoder_outputs, self.past = model, encoder_outputs, None
        # transformers 5 names the cache argument ``cache``; earlier versions ``past_key_values``
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        kwargs = {self.cache_arg: self.past, "use_cache": True}
        ids = ids.to(device)
        if self.encoder_outputs is not None:
            out = self.model(encoder_outputs=self.encoder_outputs, decoder_input_ids=ids, **kwargs)
        else:
            out = self.model(input_ids=ids, **kwargs)
        self.past = out["cache"] if "cache" in out else out.get("past_key_values")  # 5.x name, else 4.x
        return out.logits[:, -1].float()

    def keep(self, rows: torch.Tensor) -> None:
        if self.past is not None:
            self.past.reorder_cache(rows.to(next(self.model.parameters()).device))
        if self.encoder_outputs is not None:
            self.encoder_outputs.last_hidden_state = self.encoder_outputs.last_hidden_state[rows]


class _CachedDecoder:
    """Preallocated keys and values: (layer, row, head, position, dim).  4-D slices per layer
    take SDPA's fast CPU kernel; 3-D ones do not."""

    def __init__(self, model, batch: int, layers: int, heads: int, head_dim: int, context: int,
                 matmul_dtype: torch.dtype | None = None):
        p = next(model.parameters())
        self.model, self.context, self.position = model, context, 0
        self.matmul_dtype = matmul_dtype or p.dtype
        self.keys = torch.zeros(layers, batch, heads, context, head_dim, dtype=p.dtype, device=p.device)
        self.values = torch.zeros_like(self.keys)

    def _weight(self, weight: torch.Tensor) -> torch.Tensor:
        """An (out, in) weight as the (in, out) matrix ``_linear`` multiplies by, contiguous and in
        the dtype of the products: a copy made once, at start.  Multiplying by the stored transpose
        is faster than ``F.linear`` for few rows on this CPU (bf16: 0.9 vs 1.6 ms per step of the
        built-in model's products at one row) and as row-exact."""
        return weight.detach().T.contiguous().to(self.matmul_dtype)

    def _bias(self, bias: torch.Tensor | None) -> torch.Tensor | None:
        return None if bias is None else bias.detach().to(self.matmul_dtype)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x @ weight + bias (``weight`` from ``_weight``) in the weight's dtype, returned in x's."""
        rows = x.reshape(-1, x.shape[-1]).to(weight.dtype)
        out = torch.mm(rows, weight) if bias is None else torch.addmm(bias, rows, weight)
        return out.view(*x.shape[:-1], weight.shape[1]).to(x.dtype)

    def keep(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.keys.device)
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]

    def _span(self, t: int) -> tuple[int, int, torch.Tensor | None]:
        """(start, end, attention mask) for ``t`` new tokens after the cache."""
        start, end = self.position, self.position + t
        if end > self.context:
            raise ValueError(f"{end} tokens exceed the model's context of {self.context}")
        mask = None
        if t > 1 and start > 0:  # new tokens see the whole cache and each other causally
            mask = torch.ones(t, end, dtype=torch.bool, device=self.keys.device).tril(diagonal=start)
        return start, end, mask

    def _attend(self, layer: int, q, k, v, start: int, end: int, mask, scale: float) -> torch.Tensor:
        """Store k, v (rows, heads, t, dim) at start..end and attend q to the cache up to end."""
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        t = q.shape[2]
        return F.scaled_dot_product_attention(q, self.keys[layer, :, :, :end], self.values[layer, :, :, :end],
                                              attn_mask=mask, is_causal=mask is None and t > 1, scale=scale)


class Gpt2StepDecoder(_CachedDecoder):
    """GPT-2's forward over a preallocated KV cache (see the module docstring)."""

    def __init__(self, model, batch: int = 1, matmul_dtype: torch.dtype | None = None):
        cfg = model.config
        self.heads, self.width = cfg.n_head, cfg.n_embd
        self.head_dim = self.width // self.heads
        self.eps = cfg.layer_norm_epsilon
        super().__init__(model, batch, cfg.n_layer, self.heads, self.head_dim, cfg.n_positions, matmul_dtype)
        # Conv1D stores (in, out): given as its (out, in) view, like every other weight
        self.layers = [(self._weight(b.attn.c_attn.weight.T), self._bias(b.attn.c_attn.bias),
                        self._weight(b.attn.c_proj.weight.T), self._bias(b.attn.c_proj.bias),
                        self._weight(b.mlp.c_fc.weight.T), self._bias(b.mlp.c_fc.bias),
                        self._weight(b.mlp.c_proj.weight.T), self._bias(b.mlp.c_proj.bias))
                       for b in model.transformer.h]
        self.head = self._weight(model.lm_head.weight)

    @staticmethod
    def supports(model) -> bool:
        """True for plain GPT-2 models whose attention this class reproduces exactly."""
        cfg = model.config
        return (cfg.model_type == "gpt2" and type(model).__name__ == "GPT2LMHeadModel"
                and cfg.activation_function == "gelu_new" and cfg.scale_attn_weights
                and not cfg.scale_attn_by_inverse_layer_idx and not cfg.reorder_and_upcast_attn
                and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, t = ids.shape
        start, end, mask = self._span(t)
        tr = self.model.transformer
        x = tr.wte.weight[ids.to(self.keys.device)] + tr.wpe.weight[start:end]  # (rows, t, width)
        scale = 1 / math.sqrt(self.head_dim)
        for layer, (block, (qkv_w, qkv_b, o_w, o_b, fc_w, fc_b, out_w, out_b)) in enumerate(zip(tr.h, self.layers)):
            h = F.layer_norm(x, (self.width,), block.ln_1.weight, block.ln_1.bias, self.eps)
            qkv = self._linear(h, qkv_w, qkv_b)
            q, k, v = qkv.view(rows, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attn = self._attend(layer, q, k, v, start, end, mask, scale)
            x = x + self._linear(attn.transpose(1, 2).reshape(rows, t, self.width), o_w, o_b)
            h = F.layer_norm(x, (self.width,), block.ln_2.weight, block.ln_2.bias, self.eps)
            h = F.gelu(self._linear(h, fc_w, fc_b), approximate="tanh")
            x = x + self._linear(h, out_w, out_b)
        self.position = end
        last = F.layer_norm(x[:, -1], (self.width,), tr.ln_f.weight, tr.ln_f.bias, self.eps)
        return self._linear(last, self.head).float()


class LlamaStepDecoder(_CachedDecoder):
    """Llama's forward (RMSNorm, rotary positions, SwiGLU) over a preallocated KV cache."""

    def __init__(self, model, batch: int = 1, matmul_dtype: torch.dtype | None = None):
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        super().__init__(model, batch, cfg.num_hidden_layers, self.kv_heads, self.head_dim,
                         cfg.max_position_embeddings, matmul_dtype)
        # the rotary angles of every position, once (transformers recomputes them each forward)
        theta = _rope_parameters(cfg)["rope_theta"]
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
        angles = torch.outer(torch.arange(self.context, dtype=torch.float), inv_freq)
        angles = torch.cat((angles, angles), dim=-1).to(self.keys.device)
        self.cos, self.sin = angles.cos().to(self.keys.dtype), angles.sin().to(self.keys.dtype)
        self.rotation = _rotation_matrices(self.cos, self.sin)
        # q, k, v as one product and gate, up as another: fewer, larger matrix products per step
        self.fused = []
        for block in model.model.layers:
            qkv_w, qkv_b, gate_up_w, gate_up_b = _fused_layer(block)
            o, down = block.self_attn.o_proj, block.mlp.down_proj
            self.fused.append((self._weight(qkv_w), self._bias(qkv_b), self._weight(gate_up_w), self._bias(gate_up_b),
                               self._weight(o.weight), self._bias(o.bias), self._weight(down.weight),
                               self._bias(down.bias)))
        self.head = self._weight(model.lm_head.weight)

    @staticmethod
    def supports(model) -> bool:
        """True for plain Llama models whose arithmetic this class reproduces exactly."""
        cfg = model.config
        return (cfg.model_type == "llama" and type(model).__name__ == "LlamaForCausalLM"
                and cfg.hidden_act == "silu" and _rope_parameters(cfg).get("rope_type", "default") == "default"
                and getattr(cfg, "pretraining_tp", 1) == 1
                and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # written out: F.rms_norm measured slower here (33 vs ~12 us per call at one row)
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rotate(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos[start:end] + rotated * self.sin[start:end]

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        rows, t = ids.shape
        start, end, mask = self._span(t)
        inner = self.model.model
        x = inner.embed_tokens.weight[ids.to(self.keys.device)]  # (rows, t, width)
        scale = 1 / math.sqrt(self.head_dim)
        gqa = self.kv_heads != self.heads
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for layer, (block, weights) in enumerate(zip(inner.layers, self.fused)):
            qkv_w, qkv_b, gate_up_w, gate_up_b, o_w, o_b, down_w, down_b = weights
            h = self._norm(x, block.input_layernorm.weight)
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
            if gqa:
                self.keys[layer, :, :, start:end], self.values[layer, :, :, start:end] = k, v
                attn = F.scaled_dot_product_attention(q, self.keys[layer, :, :, :end], self.values[layer, :, :, :end],
                                                      attn_mask=mask, is_causal=mask is None and t > 1, scale=scale,
                                                      enable_gqa=True)
            else:
                attn = self._attend(layer, q, k, v, start, end, mask, scale)
            x = x + self._linear(attn.transpose(1, 2).reshape(rows, t, -1), o_w, o_b)
            h = self._norm(x, block.post_attention_layernorm.weight)
            gate, up = self._linear(h, gate_up_w, gate_up_b).chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, down_w, down_b)
        self.position = end
        last = self._norm(x[:, -1], inner.norm.weight)
        return self._linear(last, self.head).float()


def _rotation_matrices(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Per position, the (dim, dim) matrix R with ``x @ R == x * cos + rotate_half(x) * sin``
    (transformers' rotary embedding, rotate_half(x) = (-x2, x1)): one product per step instead of
    the slices, negation, concatenation and three elementwise operations."""
    positions, dim = cos.shape
    half = dim // 2
    rotation = torch.diag_embed(cos)  # (positions, dim, dim): R[p, j, j] = cos[p, j]
    j = torch.arange(half)
    rotation[:, j + half, j] = -sin[:, j]  # out_j (j < half) takes -x_{j+half} sin_j
    rotation[:, j, j + half] = sin[:, j + half]  # out_{j+half} takes x_j sin_{j+half}
    return rotation


@torch.no_grad()
def _fused_layer(block) -> tuple:
    """One Llama layer's q/k/v weights stacked into one matrix (and gate/up into another), with their
    biases (None when the layer has none): a copy made when a decoder starts, so it reads the
    model's current weights."""
    a, m = block.self_attn, block.mlp

    def stack(*linears):
        weight = torch.cat([lin.weight for lin in linears])
        bias = None if linears[0].bias is None else torch.cat([lin.bias for lin in linears])
        return weight, bias

    return (*stack(a.q_proj, a.k_proj, a.v_proj), *stack(m.gate_proj, m.up_proj))


def _rope_parameters(cfg) -> dict:
    """The rotary settings, under transformers 5's name (rope_parameters) or 4's (rope_theta)."""
    params = getattr(cfg, "rope_parameters", None) or {}
    if "rope_theta" not in params:
        scaling = getattr(cfg, "rope_scaling", None) or {}
        params = {"rope_theta": getattr(cfg, "rope_theta", 10000.0),
                  "rope_type": scaling.get("rope_type", scaling.get("type", "default"))}
    return params


def sampling_matmul_dtype(model) -> torch.dtype | None:
    """bf16 for a float32 model on a CPU with native bf16; otherwise None (the model's own dtype)."""
    p = next(model.parameters())
    return torch.bfloat16 if p.dtype == torch.float32 and bf16_on_cpu(p.device) else None


def step_decoder(model, encoder_outputs=None, batch: int = 1, matmul_dtype: torch.dtype | None = None):
    """The fastest step decoder for ``model`` and ``batch`` rows (see the module docstring); its
    matrix products in ``matmul_dtype`` (default: ``sampling_matmul_dtype``)."""
    if encoder_outputs is None:
        for decoder in (Gpt2StepDecoder, LlamaStepDecoder):
            if decoder.supports(model):
                return decoder(model, batch, matmul_dtype or sampling_matmul_dtype(model))
    return HFStepDecoder(model, encoder_outputs)
