"""Model architectures x sizes, built from configs (never downloaded) for a vocabulary.

Three families: ``gpt2`` (GPT-2 decoder), ``llama`` (Llama decoder: RoPE, RMSNorm,
SwiGLU) and ``bart`` (BART encoder-decoder, trained to continue: the encoder reads the
previous bars, the decoder writes the next ones).  Sizes are typed recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

ARCHS = ("gpt2", "llama", "bart")


@dataclass(frozen=True)
class ModelSize:
    """Shape of a model; the same numbers mean the same thing for every family."""

    layers: int  # decoder layers (and encoder layers for bart)
    width: int  # hidden size
    heads: int  # attention heads
    context: int  # longest sequence, in tokens
    ffn: int  # feed-forward inner size


SIZES = {
    # trains in minutes on 2 CPU cores
    "tiny": ModelSize(layers=2, width=128, heads=4, context=512, ffn=512),
    # ~5M parameters: the default model's size, hours on CPU
    "small": ModelSize(layers=6, width=256, heads=8, context=1024, ffn=1024),
    # ~40M parameters: meant for a GPU
    "base": ModelSize(layers=8, width=512, heads=8, context=2048, ffn=2048),
}


@dataclass(frozen=True)
class SpecialIds:
    """Token ids of the special tokens (inside the vocabulary: ids 0..3)."""

    pad: int
    bos: int
    eos: int
    vocab_size: int


def build_model(arch: str, size: str | ModelSize, ids: SpecialIds, context: int | None = None) -> PreTrainedModel:
    """A freshly initialised model of family ``arch`` and ``size`` for the given vocabulary."""
    shape = SIZES[size] if isinstance(size, str) else size
    n_ctx = context or shape.context
    common = {"vocab_size": ids.vocab_size, "pad_token_id": ids.pad, "bos_token_id": ids.bos,
              "eos_token_id": ids.eos}
    if arch == "gpt2":
        config = GPT2Config(n_layer=shape.layers, n_embd=shape.width, n_head=shape.heads, n_positions=n_ctx,
                            n_inner=shape.ffn, **common)
        return GPT2LMHeadModel(config)
    if arch == "llama":
        config = LlamaConfig(num_hidden_layers=shape.layers, hidden_size=shape.width,
                             num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
                             intermediate_size=shape.ffn, max_position_embeddings=n_ctx,
                             tie_word_embeddings=True, **common)
        return LlamaForCausalLM(config)
    if arch == "bart":
        config = BartConfig(encoder_layers=shape.layers, decoder_layers=shape.layers, d_model=shape.width,
                            encoder_attention_heads=shape.heads, decoder_attention_heads=shape.heads,
                            encoder_ffn_dim=shape.ffn, decoder_ffn_dim=shape.ffn, max_position_embeddings=n_ctx,
                            decoder_start_token_id=ids.bos, forced_eos_token_id=ids.eos, **common)
        return BartForConditionalGeneration(config)
    raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")


def is_seq2seq(arch: str) -> bool:
    return arch == "bart"
