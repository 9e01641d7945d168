"""A trained decoder read straight from its folder for sampling: config.json, the safetensors weights
and the tokenizer's vocabulary, without importing transformers.

Sampling a GPT-2 or Llama decoder uses Mozart's own numpy step decoders (npdecoding.py), which need the
weights and a few config numbers, not torch or transformers: importing those costs seconds on a 2-core
machine (torch alone 2.8-4.6 s on an AMD EPYC; numpy, safetensors and tokenizers 0.4-0.7 s), more than
sampling a 16-bar piece.  ``models.load_sampler`` uses this where it can (a plain LoRA adapter merged in,
``merge_lora``) and falls back to ``models.load_model`` (BART, other adapters, a config the step decoders do
not reproduce).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .errors import MozartError

#: Config keys each family's step decoder reads (decoding.py); a config missing one loads the full model.
NEEDED = {
    "llama": ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "intermediate_size",
              "rms_norm_eps", "max_position_embeddings", "vocab_size", "hidden_act"),
    "gpt2": ("n_embd", "n_head", "n_layer", "n_positions", "layer_norm_epsilon", "vocab_size",
             "activation_function", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
             "reorder_and_upcast_attn"),
}
#: The transformers class each family's weights were saved from (the step decoders reproduce these), and
#: a Llama's with previous-token tables (previous_tokens.py).
ARCHITECTURES = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}
PREVIOUS_TOKENS_ARCHITECTURE = "PreviousTokensLlamaForCausalLM"
#: Where each family keeps its token embedding, which a tied output layer shares.
EMBEDDINGS = {"llama": "model.embed_tokens.weight", "gpt2": "transformer.wte.weight"}
#: config.json's count of previous tokens a Llama embeds (previous_tokens.py), and the most it may.
PREVIOUS_TOKENS_KEY = "mozart_previous_tokens"
MAX_PREVIOUS_TOKENS = 16


def previous_token_weights(k: int) -> list[str]:
    """The names of the ``k`` previous-token tables (previous_tokens.py), the token just before first."""
    return [f"model.embed_tokens.previous.{i}.weight" for i in range(k)]


class DecoderWeights:
    """A decoder as its float32 weights by name (numpy arrays under transformers' ``state_dict`` names) and
    its config: what ``npdecoding``'s step decoders read, and nothing else."""

    def __init__(self, config: SimpleNamespace, arrays: dict[str, np.ndarray], architecture: str):
        self.config, self.arrays, self.architecture = config, arrays, architecture


def llama_reproducible(cfg, architecture: str) -> bool:
    """True for plain Llama models whose arithmetic Mozart's step decoders reproduce exactly (no rotary
    scaling, SiLU, no tensor-parallel split, a standard attention)."""
    params = getattr(cfg, "rope_parameters", None) or {}
    scaling = getattr(cfg, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    return (cfg.model_type == "llama" and architecture in ("LlamaForCausalLM", PREVIOUS_TOKENS_ARCHITECTURE)
            and cfg.hidden_act == "silu"
            and rope_type == "default" and getattr(cfg, "pretraining_tp", 1) == 1
            and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))


def llama_rope_theta(cfg) -> float:
    """The rotary base under transformers 5's name (rope_parameters) or 4's (rope_theta)."""
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def gpt2_reproducible(cfg, architecture: str) -> bool:
    """True for plain GPT-2 models whose attention Mozart's step decoders reproduce exactly."""
    return (cfg.model_type == "gpt2" and architecture == "GPT2LMHeadModel"
            and cfg.activation_function == "gelu_new" and cfg.scale_attn_weights
            and not cfg.scale_attn_by_inverse_layer_idx and not cfg.reorder_and_upcast_attn
            and getattr(cfg, "_attn_implementation", "sdpa") in ("sdpa", "eager", None))


def reproducible(model: DecoderWeights) -> bool:
    """Whether Mozart's step decoders reproduce this light-loaded model (else it needs transformers)."""
    return llama_reproducible(model.config, model.architecture) or gpt2_reproducible(model.config, model.architecture)


def gpt2_blocks(weights: dict, layers: int) -> list[tuple[list[tuple], tuple]]:
    """A GPT-2's blocks as the step decoders unpack them: per block, the (weight, bias) of its four linear
    layers (attention in, attention out, MLP in, MLP out; Conv1D weights, stored (in, out)) and its two
    LayerNorms' (weight, bias, weight, bias)."""
    def block(i: int) -> tuple[list[tuple], tuple]:
        p = f"transformer.h.{i}."
        linears = [(weights[f"{p}{n}.weight"], weights[f"{p}{n}.bias"])
                   for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
        return linears, tuple(weights[f"{p}{n}"] for n in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"))

    return [block(i) for i in range(layers)]


def read_decoder(folder: Path) -> DecoderWeights | None:
    """The decoder in ``folder`` as :class:`DecoderWeights`, or None when its family, config or
    weight file is one this light path does not read (the caller then loads the full model)."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = raw.get("model_type")
    weights = folder / "model.safetensors"
    architectures = [ARCHITECTURES.get(family)] + ([PREVIOUS_TOKENS_ARCHITECTURE] if family == "llama" else [])
    if family not in NEEDED or not weights.is_file() or any(k not in raw for k in NEEDED[family]) \
            or not isinstance(raw.get("architectures"), list) or len(raw["architectures"]) != 1 \
            or raw["architectures"][0] not in architectures:
        return None
    previous = raw.get(PREVIOUS_TOKENS_KEY) or 0
    if not isinstance(previous, int) or not 0 <= previous <= MAX_PREVIOUS_TOKENS or (previous and family != "llama"):
        return None  # models.load_base says what is wrong
    config = SimpleNamespace(**raw, is_encoder_decoder=False)
    if family == "gpt2":  # transformers' aliases, which the sampler reads for every family
        config.max_position_embeddings, config.num_hidden_layers = raw["n_positions"], raw["n_layer"]
    # float32 whatever the file stores, as models.load_base: the built-in model ships as float16 (and numpy's
    # float16 products do not use BLAS: 20x slower)
    arrays = {name: a.astype(np.float32) for name, a in read_safetensors(weights).items()}
    if "lm_head.weight" not in arrays:
        if not raw.get("tie_word_embeddings", True) or EMBEDDINGS[family] not in arrays:
            return None
        arrays["lm_head.weight"] = arrays[EMBEDDINGS[family]]
    for name, shape in expected_shapes(family, raw).items():  # a clear error, not a broadcast one mid-sampling
        found = arrays.get(name)
        if found is None or found.shape != shape:
            what = "missing" if found is None else f"shape {found.shape}"
            raise MozartError(f"{weights}: does not match config.json ({name}: {what}; the config says {shape})")
    return DecoderWeights(config, arrays, raw["architectures"][0])


def expected_shapes(family: str, cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every weight the step decoders read from a ``family`` decoder with config ``cfg`` (config.json's
    keys), with the shape the config implies."""
    vocab = cfg["vocab_size"]
    if family == "gpt2":
        width = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * width
        shapes = {"transformer.wte.weight": (vocab, width), "transformer.wpe.weight": (cfg["n_positions"], width),
                  "transformer.ln_f.weight": (width,), "transformer.ln_f.bias": (width,),
                  "lm_head.weight": (vocab, width)}
        for i in range(cfg["n_layer"]):
            for name, (n_in, n_out) in {"attn.c_attn": (width, 3 * width), "attn.c_proj": (width, width),
                                        "mlp.c_fc": (width, inner), "mlp.c_proj": (inner, width)}.items():
                shapes[f"transformer.h.{i}.{name}.weight"] = (n_in, n_out)  # Conv1D: (in, out)
                shapes[f"transformer.h.{i}.{name}.bias"] = (n_out,)
            for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"):
                shapes[f"transformer.h.{i}.{name}"] = (width,)
        return shapes
    width, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dim, ffn = cfg.get("head_dim") or width // heads, cfg["intermediate_size"]
    shapes = {"model.embed_tokens.weight": (vocab, width), "model.norm.weight": (width,),
              "lm_head.weight": (vocab, width)}
    for name in previous_token_weights(cfg.get(PREVIOUS_TOKENS_KEY) or 0):
        shapes[name] = (vocab, width)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        attention = {"q_proj": (heads * dim, width), "k_proj": (kv_heads * dim, width),
                     "v_proj": (kv_heads * dim, width), "o_proj": (width, heads * dim)}
        mlp = {"gate_proj": (ffn, width), "up_proj": (ffn, width), "down_proj": (width, ffn)}
        for group, layers, biased in (("self_attn", attention, cfg.get("attention_bias")),
                                      ("mlp", mlp, cfg.get("mlp_bias"))):
            for name, shape in layers.items():
                shapes[f"{p}{group}.{name}.weight"] = shape
                if biased:
                    shapes[f"{p}{group}.{name}.bias"] = shape[:1]
        shapes[f"{p}input_layernorm.weight"] = shapes[f"{p}post_attention_layernorm.weight"] = (width,)
    return shapes


#: adapter_config.json keys whose values this merge reads or that do not change a merged adapter's
#: arithmetic; every other key must be unset (None, False, empty) for ``merge_lora`` to merge.
LORA_KEYS_HANDLED = {"r", "lora_alpha", "use_rslora", "fan_in_fan_out", "target_modules", "peft_type", "task_type",
                     "peft_version", "base_model_name_or_path", "revision", "inference_mode", "init_lora_weights",
                     "lora_dropout", "megatron_core", "qalora_group_size", "layers_to_transform", "layers_pattern",
                     "exclude_modules", "auto_mapping", "bias"}
#: Where peft's saved adapter keys start, before the base model's own weight names.
LORA_PREFIX = "base_model.model."


def merge_lora(model: DecoderWeights, adapter: Path, cfg: dict) -> DecoderWeights | None:
    """``model`` with a LoRA adapter folder (``mozart finetune``'s) merged in, as peft's ``merge_and_unload``
    does: every adapted weight W becomes W + scale * B @ A (transposed for GPT-2's Conv1D, ``fan_in_fan_out``),
    scale = alpha / r (alpha / sqrt(r) with rank-stabilised LoRA); ``cfg`` is its adapter_config.json
    (``models.check_adapter``'s).  None when the adapter uses anything else (DoRA, LoRA biases, per-module
    ranks, saved whole modules, another file format): the caller then loads it through peft."""
    unhandled = {k: v for k, v in cfg.items() if k not in LORA_KEYS_HANDLED and v not in (None, False, {}, [], "")}
    weights = adapter / "adapter_model.safetensors"
    if unhandled or cfg.get("peft_type") != "LORA" or cfg.get("bias", "none") != "none" \
            or cfg.get("init_lora_weights", True) not in (True, False, "gaussian") or not weights.is_file():
        return None
    tensors = read_safetensors(weights)
    rank = cfg["r"]
    scale = cfg["lora_alpha"] / (math.sqrt(rank) if cfg.get("use_rslora") else rank)
    arrays = dict(model.arrays)
    for key in tensors:
        if not key.endswith(".lora_B.weight"):
            if not key.endswith(".lora_A.weight"):
                return None  # a saved module, a DoRA magnitude, a bias: not a plain LoRA pair
            continue
        module = key[:-len(".lora_B.weight")]
        name = module.removeprefix(LORA_PREFIX) + ".weight"
        a = tensors.get(f"{module}.lora_A.weight")
        if a is None or name not in arrays:
            return None
        delta = (tensors[key].astype(np.float32) @ a.astype(np.float32)) * np.float32(scale)  # (out, in)
        if cfg.get("fan_in_fan_out"):
            delta = delta.T  # Conv1D stores (in, out)
        if delta.shape != arrays[name].shape:
            return None
        arrays[name] = arrays[name] + delta
    return DecoderWeights(model.config, arrays, model.architecture)


def read_safetensors(path: Path, header_only: bool = False) -> dict[str, np.ndarray] | None:
    """The tensors of a safetensors file as numpy arrays (``header_only``: open it and read its header, to
    check it, and return None).  A truncated or corrupt file is a one-line MozartError instead of
    safetensors' own exception."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        if header_only:
            with safe_open(str(path), framework="numpy"):
                return None
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MozartError(f"{path}: unreadable weights ({why})") from None


def architecture_of(model) -> str:
    """The transformers class name a model is (or was saved from)."""
    return getattr(model, "architecture", None) or type(model).__name__
