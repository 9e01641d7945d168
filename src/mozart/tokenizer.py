"""The Hugging Face tokenizer of a grid's vocabulary.

Ids are fixed by (format version, grid): four special tokens first, then every word of
:func:`mozart.tokens.vocabulary` in its order.  So any two datasets or models of the
same format and grid share token ids, and adapters and data mix freely.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .files import write_atomic
from .tokens import FORMAT_VERSION, vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Special tokens, in id order (0..3).
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def build_tokenizer(grid: int = 24) -> Tokenizer:
    """A WordLevel tokenizer over whitespace-separated words: specials, then the vocabulary."""
    words = list(SPECIAL_TOKENS) + list(vocabulary(grid).words)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Decoding joins words with single spaces: exactly the canonical text.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def save_tokenizer(folder: Path, grid: int = 24) -> None:
    """Write ``tokenizer.json`` plus the small config files that let
    ``transformers.AutoTokenizer.from_pretrained(folder)`` load it without Mozart."""
    tokenizer = build_tokenizer(grid)
    write_atomic(folder / "tokenizer.json", tokenizer.to_str(pretty=True))
    special = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "mozart_format_version": FORMAT_VERSION,
        "mozart_grid": grid,
        **special,
    }
    write_atomic(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    write_atomic(folder / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")


def piece_ids(words: list[str], grid: int) -> np.ndarray:
    """``<bos> words <eos>`` as the ids ``build_tokenizer(grid)`` gives them (specials first, then
    the vocabulary in order), without going through the tokenizer: an array lookup per word.
    Raises KeyError for a word outside the vocabulary."""
    index = vocabulary(grid).index
    ids = np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words)) + len(SPECIAL_TOKENS)
    return np.concatenate([[SPECIAL_TOKENS.index(BOS)], ids, [SPECIAL_TOKENS.index(EOS)]])
