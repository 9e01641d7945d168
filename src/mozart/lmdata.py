"""Dataset shards -> model examples.

Decoder models read whole pieces, ``<bos> tokens <eos>``, cut into windows of the
context length: for training, by default *packed* (``PackedWindows``: full windows cut from
the split's token store, the records back to back, no padding); for scoring, one piece at a
time (``piece_windows``), so that bits per note stay exact.  BART learns continuation: the
encoder reads the header and the previous K bars, the decoder writes the next M bars (then
``<eos>`` where the piece ends).
Likelihood is reported per note as well as per token, so the notes each example
predicts are counted here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from .errors import MozartError
from .tokenizer import BOS, EOS
from .tokens import bar_indices, note_word_ids
from .tokenstore import TokenStore

IGNORE = -100  # label value the loss skips
#: Test-only hook: when set to a path, PackedWindows appends every window index it serves to PATH.RANK
#: (so a test can check that ranks share an epoch's windows without overlap).
WINDOW_LOG_HOOK = "MOZART_TEST_WINDOW_LOG"


def read_split(data_dir: Path, split: str) -> list[str]:
    """The token texts of one split of a dataset folder."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise MozartError(f"{data_dir}: no {split}.jsonl (is it a dataset made by `mozart dataset`?)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["tokens"] for line in f if line.strip()]


def load_tokenizer(data_dir: Path) -> Tokenizer:
    path = Path(data_dir) / "tokenizer.json"
    if not path.is_file():
        raise MozartError(f"{data_dir}: no tokenizer.json (is it a dataset made by `mozart dataset`?)")
    return Tokenizer.from_file(str(path))


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # for decoders: input_ids with IGNORE where not predicted; for bart: the target
    notes: int  # notes whose tokens this example predicts


class Examples(torch.utils.data.Dataset):
    """A list of examples with the counts bits-per-note needs."""

    def __init__(self, examples: list[Example]):
        self.examples = examples
        self.notes = sum(e.notes for e in examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        e = self.examples[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


def _is_note(tokenizer: Tokenizer) -> set[int]:
    return set(note_word_ids(tokenizer.get_vocab()))


def piece_ids(texts: list[str], tokenizer: Tokenizer) -> list[list[int]]:
    """Each text as the ids a decoder reads: ``<bos> words <eos>``."""
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    return [[bos] + enc.ids + [eos] for enc in tokenizer.encode_batch(texts)]


def causal_examples(texts: list[str], tokenizer: Tokenizer, context: int) -> Examples:
    """``<bos> piece <eos>`` cut into windows of ``context`` tokens (no overlap)."""
    notes = _is_note(tokenizer)
    out = []
    for ids in piece_ids(texts, tokenizer):
        for start in range(0, max(1, len(ids) - 1), context):
            window = ids[start:start + context]
            if len(window) < 2:
                continue
            # the first token of a window is context, not a prediction
            out.append(Example(window, window, sum(1 for t in window[1:] if t in notes)))
    return Examples(out)


def sliding_examples(texts: list[str], tokenizer: Tokenizer, context: int, stride: int) -> Examples:
    """``<bos> piece <eos>`` scored with a sliding window, for evaluation.

    Windows of ``context`` tokens start every ``stride`` tokens; each window predicts only
    the tokens no earlier window predicted, so every token after ``<bos>`` is predicted
    exactly once, and (after the first window) with at least ``context - stride`` tokens
    before it.  Pieces that fit the context give one window, as in ``causal_examples``.
    """
    if not 0 < stride <= context - 1:
        raise MozartError(f"stride {stride}: expected 1..{context - 1} for a context of {context}")
    notes = _is_note(tokenizer)
    out = []
    for ids in piece_ids(texts, tokenizer):
        predicted_until = 0  # index of the last token already predicted (<bos> is never predicted)
        for start in range(0, len(ids), stride):
            window = ids[start:start + context]
            labels = [IGNORE if start + j <= predicted_until else t for j, t in enumerate(window)]
            out.append(Example(window, labels, sum(1 for t in labels[1:] if t in notes)))
            predicted_until = start + len(window) - 1
            if predicted_until >= len(ids) - 1:
                break
    return Examples(out)


def continuation_examples(texts: Iterable[str], tokenizer: Tokenizer, context: int, bars_in: int = 4,
                          bars_out: int = 4) -> Examples:
    """(header + previous ``bars_in`` bars) -> (next ``bars_out`` bars [+ <eos>]) pairs."""
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    notes = _is_note(tokenizer)
    out = []
    for text in texts:
        words = text.split()
        bar_at = bar_indices(words)
        if not bar_at:
            continue
        header = words[: bar_at[0]]
        bars = [words[a:b] for a, b in zip(bar_at, bar_at[1:] + [len(words)])]
        for i in range(0, len(bars), bars_out):
            source = header + [w for bar in bars[max(0, i - bars_in): i] for w in bar]
            target_words = [w for bar in bars[i: i + bars_out] for w in bar]
            source_ids = [bos] + [tokenizer.token_to_id(w) for w in source][-(context - 1):]
            target_ids = [tokenizer.token_to_id(w) for w in target_words]
            if i + bars_out >= len(bars):
                target_ids.append(eos)
            target_ids = target_ids[: context - 1]
            out.append(Example(source_ids, target_ids, sum(1 for t in target_ids if t in notes)))
    return Examples(out)


def piece_windows(store: TokenStore, context: int) -> Examples:
    """Each record of a token store cut into windows of ``context`` tokens (no overlap): the same
    examples as ``causal_examples`` over the split's JSONL, read from the memory map."""
    out = []
    notes = set(note_word_ids(_store_vocab(store)))
    for i in range(len(store)):
        ids = store.record(i).astype(np.int64)
        for start in range(0, max(1, ids.size - 1), context):
            window = ids[start:start + context].tolist()
            if len(window) < 2:
                continue
            out.append(Example(window, window, sum(1 for t in window[1:] if t in notes)))
    return Examples(out)


def store_texts(store: TokenStore) -> Iterator[str]:
    """The records of a token store as token texts (the words between ``<bos>`` and ``<eos>``)."""
    vocab = _store_vocab(store)
    words = np.empty(max(vocab.values()) + 1, dtype=object)
    for word, i in vocab.items():
        words[i] = word
    for i in range(len(store)):
        yield " ".join(words[store.record(i)[1:-1].astype(np.int64)])


def _store_vocab(store: TokenStore) -> dict[str, int]:
    return load_tokenizer(store.folder).get_vocab()


class PackedWindows(torch.utils.data.Dataset):
    """Training windows of exactly ``context`` tokens cut from a split's token store, records
    back to back (``... <eos> <bos> ...``), so no compute goes to padding (only the last window
    can be short).  Items are read from the memory map when asked for: nothing is held in RAM.
    Attention runs across a record boundary inside a window (as in GPT-2's own training); the
    model sees ``<eos> <bos>`` there and learns that a new piece starts."""

    def __init__(self, store: TokenStore, context: int):
        self.store, self.context = store, context
        self.n_windows = -(-max(0, store.n_tokens - 1) // context) if store.n_tokens > 1 else 0
        log = os.environ.get(WINDOW_LOG_HOOK)
        self.log = Path(f"{log}.{os.environ.get('RANK', '0')}") if log else None

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n_windows:
            raise IndexError(i)
        window = self.store.tokens[i * self.context: (i + 1) * self.context].astype(np.int64).tolist()
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(f"{i}\n")
        return {"input_ids": window, "labels": window}


def collate(batch: list[dict], pad_id: int) -> dict:
    """Pad a batch; decoder labels mirror the inputs (IGNORE at padding)."""
    width = max(len(b["input_ids"]) for b in batch)
    label_width = max(len(b["labels"]) for b in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), label_width), IGNORE, dtype=torch.long)
    for row, b in enumerate(batch):
        n, m = len(b["input_ids"]), len(b["labels"])
        input_ids[row, :n] = torch.tensor(b["input_ids"])
        attention[row, :n] = 1
        labels[row, :m] = torch.tensor(b["labels"])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

