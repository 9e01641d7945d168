"""Model architectures x sizes, built from configs (never downloaded) for a vocabulary,
and trained model folders loaded back with the grid they speak.

Three families: ``gpt2`` (GPT-2 decoder), ``llama`` (Llama decoder: RoPE, RMSNorm,
SwiGLU) and ``bart`` (BART encoder-decoder, trained to continue: the encoder reads the
previous bars, the decoder writes the next ones).  Sizes are typed recipes.

A model folder is a ``save_pretrained`` folder with the dataset's tokenizer beside the
weights; the tokenizer's vocabulary fixes the token format version and grid, so every
entry point that takes a model reads them from there (``load_model``, ``model_format``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MozartError
from .tokens import FORMAT_VERSION, format_of_words
from .weights import MAX_PREVIOUS_TOKENS, PREVIOUS_TOKENS_KEY

if TYPE_CHECKING:  # transformers is imported where a model is built or loaded whole: it costs seconds
    from transformers import PreTrainedModel

    from .weights import DecoderWeights

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
    # ~5M parameters (6.7M as a Llama): the default model's size, hours on CPU
    "small": ModelSize(layers=6, width=256, heads=8, context=1024, ffn=1024),
    # small made deeper: ~10.9M parameters as a Llama, the largest whose float16 weights stay under the
    # package's 25 MB budget (21.8 MB); minutes on a GPU
    "medium": ModelSize(layers=10, width=256, heads=8, context=1024, ffn=1024),
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


def build_model(arch: str, size: str | ModelSize, ids: SpecialIds, context: int | None = None,
                previous_tokens: int = 0) -> PreTrainedModel:
    """A freshly initialised model of family ``arch`` and ``size`` for the given vocabulary;
    ``previous_tokens`` (Llama only) adds that many previous-token tables (previous_tokens.py)."""
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

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
        if previous_tokens:
            from .previous_tokens import PreviousTokensLlamaForCausalLM

            setattr(config, PREVIOUS_TOKENS_KEY, previous_tokens)
            return PreviousTokensLlamaForCausalLM(config)
        return LlamaForCausalLM(config)
    if previous_tokens:
        raise MozartError(f"previous-token embeddings are for llama models, not {arch}")
    if arch == "bart":
        config = BartConfig(encoder_layers=shape.layers, decoder_layers=shape.layers, d_model=shape.width,
                            encoder_attention_heads=shape.heads, decoder_attention_heads=shape.heads,
                            encoder_ffn_dim=shape.ffn, decoder_ffn_dim=shape.ffn, max_position_embeddings=n_ctx,
                            decoder_start_token_id=ids.bos, forced_eos_token_id=ids.eos, **common)
        return BartForConditionalGeneration(config)
    raise MozartError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")


def is_seq2seq(arch: str) -> bool:
    return arch == "bart"


def model_format(folder: str | os.PathLike) -> int:
    """The grid of the model (or dataset) in ``folder``, read from its tokenizer; raises
    MozartError when the folder has no tokenizer or speaks another format version."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise MozartError(f"{folder}: not a model folder (no tokenizer.json)")
    try:
        words = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MozartError(f"{path}: unreadable tokenizer ({type(e).__name__})") from None
    version, grid = format_of_words(words)
    if version != FORMAT_VERSION or grid is None:
        raise MozartError(f"{folder}: its tokenizer speaks token format {version}, grid {grid}; this Mozart "
                          f"reads format {FORMAT_VERSION}")
    return grid


def check_same_grid(model_dir: str | os.PathLike, data_dir: str | os.PathLike) -> int:
    """The grid that the model in ``model_dir`` and the dataset in ``data_dir`` both speak; raises
    MozartError, saying how to rebuild the dataset, when they speak different ones."""
    model_grid, data_grid = model_format(model_dir), model_format(data_dir)
    if model_grid != data_grid:
        raise MozartError(f"{data_dir}: dataset at grid {data_grid}, but the model {model_dir} speaks grid "
                          f"{model_grid}; rebuild the dataset with `mozart dataset --grid {model_grid}`")
    return model_grid


@dataclass
class LoadedModel:
    """A trained model ready to sample or score, with what it speaks."""

    model: PreTrainedModel | DecoderWeights  # DecoderWeights: load_sampler's, for sampling only
    tokenizer: object  # transformers.PreTrainedTokenizerFast over the format's words (load_sampler: tokenizers')
    arch: str  # one of ARCHS
    grid: int  # steps per quarter note of the token format it was trained on
    folder: Path
    programs: frozenset[int] | None = None  # the programs it was trained on (None: not recorded); standins.py


def known_programs(*folders: str | os.PathLike | None) -> frozenset[int] | None:
    """The programs a model (and its adapter) was trained on: the union of ``mozart_programs`` in each
    folder's ``tokenizer_config.json`` (``mozart dataset`` writes the training split's), or None when the
    model folder, the first, does not record them."""
    found: set[int] = set()
    for i, folder in enumerate(f for f in folders if f is not None):
        try:
            config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
            programs = config["mozart_programs"]
        except (OSError, ValueError, KeyError, TypeError):
            if i == 0:
                return None
            continue
        if not isinstance(programs, list) or not all(isinstance(p, int) and 0 <= p < 128 for p in programs):
            raise MozartError(f"{folder}/tokenizer_config.json: mozart_programs must be a list of programs 0-127")
        found.update(programs)
    return frozenset(found)


def load_base(folder: str | os.PathLike) -> tuple[PreTrainedModel, str]:
    """The model of a trained folder (any family, in training mode) and its family name."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar for loading 5 MB of weights is noise on stderr
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MozartError(f"{folder}: not a model folder (no config.json)")
    config = AutoConfig.from_pretrained(str(folder))
    model_type = config.model_type
    if model_type not in ARCHS:
        raise MozartError(f"{folder}: unsupported model type {model_type!r}")
    loader = AutoModelForSeq2SeqLM if is_seq2seq(model_type) else AutoModelForCausalLM
    if (folder / "model.safetensors").is_file():
        from .weights import read_safetensors

        read_safetensors(folder / "model.safetensors", header_only=True)  # one line, not transformers' traceback
    if getattr(config, PREVIOUS_TOKENS_KEY, 0):
        return _load_previous_tokens(folder, config), model_type
    # float32 whatever the file stores: the built-in model ships as float16 (half the bytes),
    # and float16 arithmetic on CPU is slow and loses the precision sampling needs.
    return loader.from_pretrained(str(folder), dtype=torch.float32), model_type


def _load_previous_tokens(folder: Path, config) -> PreTrainedModel:
    """A Llama with previous-token embeddings: built from its config, then its weights loaded
    (transformers' loader would drop the tables it does not know)."""
    from safetensors.torch import load_file

    from .previous_tokens import PreviousTokensLlamaForCausalLM

    k = getattr(config, PREVIOUS_TOKENS_KEY)
    if config.model_type != "llama" or not isinstance(k, int) or not 0 < k <= MAX_PREVIOUS_TOKENS:
        raise MozartError(f"{folder}: {PREVIOUS_TOKENS_KEY} {k!r}: previous-token embeddings are for llama models, "
                          f"1 to {MAX_PREVIOUS_TOKENS} tokens")
    model = PreviousTokensLlamaForCausalLM(config)
    path = folder / "model.safetensors"
    if not path.is_file():
        raise MozartError(f"{folder}: no model.safetensors")
    state = {name: t.float() for name, t in load_file(str(path)).items()}
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    wrong = sorted(n for n in expected.keys() | found.keys() if n != "lm_head.weight"
                   and expected.get(n) != found.get(n))
    if wrong:
        raise MozartError(f"{path}: does not match config.json ({wrong[0]}: {found.get(wrong[0], 'missing')}; "
                          f"the config says {expected.get(wrong[0], 'none')})")
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return model


def load_model(folder: str | os.PathLike, adapter: str | os.PathLike | None = None) -> LoadedModel:
    """A trained model folder (optionally with a LoRA adapter merged in), its tokenizer
    and its grid, in evaluation mode."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    grid = model_format(folder)
    model, arch = load_base(folder)
    if adapter is not None:
        from peft import PeftModel

        check_adapter(adapter, grid)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    return LoadedModel(model, AutoTokenizer.from_pretrained(str(folder)), arch, grid, folder,
                       known_programs(folder, adapter))


def check_adapter(adapter: str | os.PathLike, grid: int) -> dict:
    """The adapter's config (adapter_config.json); raises MozartError unless ``adapter`` is a LoRA adapter
    folder with a readable config, trained at ``grid`` (the model's)."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise MozartError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MozartError(f"{path}: unreadable ({type(e).__name__})") from None
    if not isinstance(config, dict):
        raise MozartError(f"{path}: unreadable (not a JSON object)")
    if model_format(adapter) != grid:
        raise MozartError(f"{adapter}: adapter trained at grid {model_format(adapter)}, model at grid {grid}")
    return config


def load_sampler(folder: str | os.PathLike, adapter: str | os.PathLike | None = None) -> LoadedModel:
    """A model folder for sampling (generate, infill, accompany, the studio): a GPT-2 or Llama decoder
    the numpy step decoders reproduce is read without torch or transformers (``weights.read_decoder``:
    seconds less to start), with a plain LoRA adapter merged in (``weights.merge_lora``); anything else
    (BART, another config, an adapter with other features) is ``load_model``'s."""
    from tokenizers import Tokenizer

    from .weights import merge_lora, read_decoder, reproducible

    folder = Path(folder)
    grid = model_format(folder)
    light = read_decoder(folder)
    if light is not None and not reproducible(light):
        light = None
    if light is not None and adapter is not None:
        light = merge_lora(light, Path(adapter), check_adapter(adapter, grid))
    if light is None:
        return load_model(folder, adapter)
    return LoadedModel(light, Tokenizer.from_file(str(folder / "tokenizer.json")), light.config.model_type, grid,
                       folder, known_programs(folder, adapter))


def default_model_dir():
    """The built-in model's folder inside the package, or None when it is not there."""
    from importlib import resources

    found = resources.files("mozart") / "default_model"
    return found if (found / "config.json").is_file() else None
