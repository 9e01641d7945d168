"""The Hugging Face tokenizer of a grid's vocabulary.

Ids are fixed by (format version, grid): four special tokens first, then every word of
:func:`mozart.tokens.vocabulary` in its order, then the control specials (fill-in-the-middle
markers), which are not music words and never appear in a dataset's text.  So any two
datasets or models of the same format and grid share token ids, and adapters and data mix
freely; a model trained before the control specials existed simply lacks the last ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .files import write_atomic
from .tokens import FORMAT_VERSION, Piece, decode_piece_ids, vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Special tokens, in id order (0..3).
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"
#: Style labels a piece may carry (``corpus.STYLE_OF_COLLECTION`` labels music21's collections;
#: any corpus can label its files in a ``corpus.tsv``, docs/datasets.md).
STYLES = ("chorale", "renaissance", "baroque", "classical", "romantic", "folk")


def style_token(style: str) -> str:
    """The control token of a style: ``<style_folk>``."""
    return f"<style_{style}>"


#: The style control tokens, in STYLES order.
STYLE_TOKENS = tuple(style_token(s) for s in STYLES)


def without_chosen_style(words: list[str]) -> list[str]:
    """A piece sampled without constraints after ``<bos>`` alone, less the style token the model may
    begin it with: that is the model choosing a style, as its training pieces read ``<bos> <style_S>
    words`` (a control, not music).  A style token anywhere else stays (and fails ``check``)."""
    return words[1:] if words and words[0] in STYLE_TOKENS else words


#: Control specials, after the music words: a fill-in-the-middle example reads
#: ``<fim_prefix> <bos> before <fim_suffix> after <fim_middle> middle`` (lmdata.FimWindows); a
#: piece with a style reads ``<bos> <style_folk> words <eos>``.
CONTROL_TOKENS = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE) + STYLE_TOKENS


def build_tokenizer(grid: int = 24) -> Tokenizer:
    """A WordLevel tokenizer over whitespace-separated words: specials, the vocabulary, then the
    control specials."""
    words = list(SPECIAL_TOKENS) + list(vocabulary(grid).words) + list(CONTROL_TOKENS)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Decoding joins words with single spaces: exactly the canonical text.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS) + list(CONTROL_TOKENS))
    return tokenizer


def music_token_count(grid: int) -> int:
    """Ids a dataset's text can use (the specials and the music words): what a model needs at
    least, whether or not it was trained with the control specials after them."""
    return len(SPECIAL_TOKENS) + len(vocabulary(grid))


def save_tokenizer(folder: Path, grid: int = 24, programs: list[int] | None = None) -> None:
    """Write ``tokenizer.json`` plus the small config files that let
    ``transformers.AutoTokenizer.from_pretrained(folder)`` load it without Mozart.  ``programs``: those
    of a dataset's training split, recorded as ``mozart_programs`` (a model trained on it carries them
    on: ``models.known_programs``)."""
    tokenizer = build_tokenizer(grid)
    write_atomic(folder / "tokenizer.json", tokenizer.to_str(pretty=True))
    special = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "mozart_format_version": FORMAT_VERSION,
        "mozart_grid": grid,
        **({"mozart_programs": programs} if programs is not None else {}),
        **special,
    }
    write_atomic(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    write_atomic(folder / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")


def control_id(token: str, grid: int) -> int:
    """The id ``build_tokenizer(grid)`` gives a control special."""
    return music_token_count(grid) + CONTROL_TOKENS.index(token)


def piece_ids(words: list[str], grid: int, style: str | None = None) -> np.ndarray:
    """``<bos> [<style_S>] words <eos>`` as the ids ``build_tokenizer(grid)`` gives them (specials
    first, then the vocabulary in order, then the controls), without going through the tokenizer:
    an array lookup per word.  Raises KeyError for a word outside the vocabulary."""
    index = vocabulary(grid).index
    ids = np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words)) + len(SPECIAL_TOKENS)
    head = [SPECIAL_TOKENS.index(BOS)] + ([control_id(style_token(style), grid)] if style else [])
    return np.concatenate([head, ids, [SPECIAL_TOKENS.index(EOS)]])


def piece_of_ids(ids: np.ndarray, grid: int) -> Piece:
    """The piece that ``build_tokenizer(grid)`` ids spell (as :func:`piece_ids` writes them, or a
    model samples them): specials and control tokens are dropped, the words decoded straight from
    the ids (``tokens.decode_piece_ids``), with no text in between."""
    ids = np.asarray(ids, dtype=np.int64)
    words = ids[(ids >= len(SPECIAL_TOKENS)) & (ids < music_token_count(grid))]
    return decode_piece_ids(words - len(SPECIAL_TOKENS), grid)
