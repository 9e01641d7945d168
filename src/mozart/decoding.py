"""One-token-at-a-time decoders with a KV cache, for the sampler.

``step_decoder(model)`` returns an object whose ``step(ids)`` feeds new token ids and
returns the logits of the next token.  For the GPT-2 decoders Mozart trains (including
the built-in model) it is :class:`Gpt2StepDecoder`: the same arithmetic as transformers'
``GPT2LMHeadModel`` with the cached keys and values in preallocated tensors, which cuts
the per-token cost on a CPU from ~4.4 ms to ~2.5 ms for the 6-layer built-in model
(transformers spends most of a single-token step in Python around the matrix products).
Its logits match transformers' to float precision (tested).  Every other model uses
:class:`HFStepDecoder`, transformers' forward with its own cache.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F


class HFStepDecoder:
    """Any transformers decoder (or BART's decoder over fixed encoder outputs), with its KV cache."""

    def __init__(self, model, encoder_outputs=None):
        self.model, self.encoder_outputs, self.past = model, encoder_outputs, None
        # transformers 5 names the cache argument ``cache``; earlier versions ``past_key_values``
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    @torch.no_grad()
    def step(self, ids: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        kwargs = {self.cache_arg: self.past, "use_cache": True}
        tensor = torch.tensor([ids], device=device)
        if self.encoder_outputs is not None:
            out = self.model(encoder_outputs=self.encoder_outputs, decoder_input_ids=tensor, **kwargs)
        else:
            out = self.model(input_ids=tensor, **kwargs)
        self.past = out["cache"] if "cache" in out else out.get("past_key_values")  # 5.x name, else 4.x
        return out.logits[0, -1].float()


class Gpt2StepDecoder:
    """GPT-2 forward for batch 1 with a preallocated KV cache (see the module docstring)."""

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.heads, self.width = cfg.n_head, cfg.n_embd
        self.head_dim = self.width // self.heads
        self.eps = cfg.layer_norm_epsilon
        self.context = cfg.n_positions
        p = next(model.parameters())
        # (layer, batch 1, head, position, dim): 4-D slices take SDPA's fast CPU kernel, 3-D ones do not
        self.keys = torch.zeros(cfg.n_layer, 1, self.heads, self.context, self.head_dim, dtype=p.dtype,
                                device=p.device)
        self.values = torch.zeros_like(self.keys)
        self.position = 0

    @staticmethod
    def supports(model) -> bool:
        """True for plain GPT-2 models whose attention this class reproduces exactly."""
        cfg = model.config
        return (cfg.model_type == "gpt2" and type(model).__name__ == "GPT2LMHeadModel"
                and cfg.activation_function == "gelu_new" and cfg.scale_attn_weights
                and not cfg.scale_attn_by_inverse_layer_idx and not cfg.reorder_and_upcast_attn
                and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))

    @torch.no_grad()
    def step(self, ids: list[int]) -> torch.Tensor:
        t, start = len(ids), self.position
        if start + t > self.context:
            raise ValueError(f"{start + t} tokens exceed the model's context of {self.context}")
        tr = self.model.transformer
        x = tr.wte.weight[torch.tensor(ids, device=self.keys.device)] + tr.wpe.weight[start:start + t]
        end = start + t
        mask = None
        if t > 1 and start > 0:  # new tokens see the whole cache and each other causally
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        for layer, block in enumerate(tr.h):
            h = F.layer_norm(x, (self.width,), block.ln_1.weight, block.ln_1.bias, self.eps)
            qkv = torch.addmm(block.attn.c_attn.bias, h, block.attn.c_attn.weight)
            q, k, v = qkv.view(t, 3, self.heads, self.head_dim).permute(1, 2, 0, 3)
            self.keys[layer, 0, :, start:end] = k
            self.values[layer, 0, :, start:end] = v
            attn = F.scaled_dot_product_attention(q[None], self.keys[layer, :, :, :end], self.values[layer, :, :, :end],
                                                  attn_mask=mask, is_causal=mask is None and t > 1,
                                                  scale=1 / math.sqrt(self.head_dim))[0]
            x = x + torch.addmm(block.attn.c_proj.bias, attn.permute(1, 0, 2).reshape(t, self.width),
                                block.attn.c_proj.weight)
            h = F.layer_norm(x, (self.width,), block.ln_2.weight, block.ln_2.bias, self.eps)
            h = F.gelu(torch.addmm(block.mlp.c_fc.bias, h, block.mlp.c_fc.weight), approximate="tanh")
            x = x + torch.addmm(block.mlp.c_proj.bias, h, block.mlp.c_proj.weight)
        self.position = end
        last = F.layer_norm(x[-1], (self.width,), tr.ln_f.weight, tr.ln_f.bias, self.eps)
        return (self.model.lm_head.weight @ last).float()


def step_decoder(model, encoder_outputs=None):
    """The fastest exact step decoder for ``model`` (see the module docstring)."""
    if encoder_outputs is None and Gpt2StepDecoder.supports(model):
        return Gpt2StepDecoder(model)
    return HFStepDecoder(model, encoder_outputs)
