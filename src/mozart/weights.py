"""A trained decoder read straight from its folder for sampling: config.json, the safetensors weights
and the tokenizer's vocabulary, without importing transformers.

Sampling a GPT-2 or Llama decoder uses Mozart's own step decoders (decoding.py), which need the
weights and a few config numbers, not transformers' modules; importing transformers' model classes
costs seconds on a 2-core machine (``python -c "import mozart.sampling"`` 6.5 s with them, 2.0 s for
torch, safetensors and tokenizers alone), more than sampling a 16-bar piece.  ``models.load_sampler``
uses this where it can and falls back to ``models.load_model`` (LoRA adapters, BART, a config
the step decoders do not reproduce).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from .errors import MozartError

#: Config keys each family's step decoder reads (decoding.py); a config missing one loads the full model.
NEEDED = {
    "llama": ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "intermediate_size",
              "rms_norm_eps", "max_position_embeddings", "vocab_size", "hidden_act"),
    "gpt2": ("n_embd", "n_head", "n_layer", "n_positions", "layer_norm_epsilon", "vocab_size",
             "activation_function", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
             "reorder_and_upcast_attn"),
}
#: The transformers class each family's weights were saved from (the step decoders reproduce these).
ARCHITECTURES = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}
#: Where each family keeps its token embedding, which a tied output layer shares.
EMBEDDINGS = {"llama": "model.embed_tokens.weight", "gpt2": "transformer.wte.weight"}


class DecoderWeights:
    """A decoder as its float32 weights by name (transformers' ``state_dict`` names) and its config:
    what ``decoding.step_decoder`` reads from a transformers model, and nothing else."""

    def __init__(self, config: SimpleNamespace, tensors: dict[str, torch.Tensor], architecture: str):
        self.config, self.tensors, self.architecture = config, tensors, architecture

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.tensors

    def parameters(self):
        return iter(self.tensors.values())


def read_decoder(folder: Path) -> DecoderWeights | None:
    """The decoder in ``folder`` as :class:`DecoderWeights`, or None when its family, config or
    weight file is one this light path does not read (the caller then loads the full model)."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = raw.get("model_type")
    weights = folder / "model.safetensors"
    if family not in NEEDED or not weights.is_file() or any(k not in raw for k in NEEDED[family]) \
            or raw.get("architectures") != [ARCHITECTURES[family]]:
        return None
    config = SimpleNamespace(**raw, is_encoder_decoder=False)
    if family == "gpt2":  # transformers' aliases, which the sampler reads for every family
        config.max_position_embeddings, config.num_hidden_layers = raw["n_positions"], raw["n_layer"]
    # float32 whatever the file stores, as models.load_base: the built-in model ships as float16
    tensors = {name: t.float() for name, t in read_safetensors(weights).items()}
    if "lm_head.weight" not in tensors:
        if not raw.get("tie_word_embeddings", True) or EMBEDDINGS[family] not in tensors:
            return None
        tensors["lm_head.weight"] = tensors[EMBEDDINGS[family]]
    return DecoderWeights(config, tensors, ARCHITECTURES[family])


def read_safetensors(path: Path, header_only: bool = False) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors file (``header_only``: open it and read its header, to check it, and
    return None); a truncated or corrupt file is a one-line MozartError instead of safetensors' own
    exception."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        if header_only:
            with safe_open(str(path), framework="pt"):
                return None
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MozartError(f"{path}: unreadable weights ({why})") from None


def architecture_of(model) -> str:
    """The transformers class name a model is (or was saved from)."""
    return getattr(model, "architecture", None) or type(model).__name__
