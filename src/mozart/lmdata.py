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
from .fim import FimIds, fim_ids, fim_input, fim_rearrange
from .tokenizer import BOS, CONTROL_TOKENS, EOS
from .tokens import bar_indices, note_word_ids
from .tokenstore import LENGTH, OFFSET, TokenStore

IGNORE = -100  # label value the loss skips
#: Test-only hook: when set to a path, PackedWindows appends every window index it serves to PATH.RANK
#: (so a test can check that ranks share an epoch's windows without overlap).
WINDOW_LOG_HOOK = "MOZART_TEST_WINDOW_LOG"


def _split_field(data_dir: Path, split: str, field: str, optional: bool = False) -> list:
    """One field of every record of one split, in file order (None where an ``optional`` one is absent)."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise MozartError(f"{data_dir}: no {split}.jsonl (is it a dataset made by `mozart dataset`?)")
    with open(path, encoding="utf-8") as f:
        records = (json.loads(line) for line in f if line.strip())
        return [r.get(field) if optional else r[field] for r in records]


def read_split(data_dir: Path, split: str) -> list[str]:
    """The token texts of one split of a dataset folder."""
    return _split_field(data_dir, split, "tokens")


def read_split_styles(data_dir: Path, split: str) -> list[str | None]:
    """The style label of each record of one split (None where it has none), in read_split's order."""
    return _split_field(data_dir, split, "style", optional=True)


def read_split_ids(data_dir: Path, split: str) -> list[str]:
    """The id of each record of one split (``source#segment``, with ``@tK`` on a copy transposed by K
    semitones), in read_split's order."""
    return _split_field(data_dir, split, "id")


def read_split_sources(data_dir: Path, split: str) -> list[str | None]:
    """The source file of each record of one split (None where it has none), in read_split's order: the
    segments of one work share it."""
    return _split_field(data_dir, split, "source", optional=True)


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


def infill_examples(texts: list[str], tokenizer: Tokenizer, context: int, with_suffix: bool, span_bars: int = 4,
                    prev_bars: int = 8, next_bars: int = 4, order: str = "psm") -> Examples:
    """Middles to score, for measuring what the bars after a gap are worth to a FIM model.

    Each piece is cut into gaps of ``span_bars`` bars (every ``span_bars`` bars from bar 2, each
    with at least one bar after it); only the gap's tokens are labels.  The model reads the
    ``prev_bars`` bars before the gap (with ``<bos>`` and the header when they reach the start)
    and, ``with_suffix``, the ``next_bars`` after it as ``<fim_prefix> before <fim_suffix> after
    <fim_middle> gap`` (or suffix first: ``order``, as the model was trained); otherwise ``before gap``.
    Both settings score the same gaps: those whose
    FIM arrangement fits ``context``."""
    vocab = tokenizer.get_vocab()
    markers = fim_ids(vocab)
    if markers is None:
        raise MozartError("the tokenizer has no fill-in-the-middle markers")
    notes = _is_note(tokenizer)
    out = []
    for text in texts:
        words = text.split()
        ids = [vocab[w] for w in words]
        bar_at = bar_indices(words)
        for a in range(1, len(bar_at) - span_bars, span_bars):
            b = a + span_bars
            start = 0 if a <= prev_bars else bar_at[a - prev_bars]
            stop = bar_at[b + next_bars] if b + next_bars < len(bar_at) else len(ids)
            before = ([markers.bos] if start == 0 else []) + ids[start:bar_at[a]]
            gap = ids[bar_at[a]:bar_at[b]]
            after = ids[bar_at[b]:stop] + ([markers.eos] if stop == len(ids) else [])
            if len(before) + len(after) + len(gap) + 3 > context:
                continue
            read = fim_input(before, after, markers, order) if with_suffix else before
            out.append(Example(read + gap, [IGNORE] * len(read) + gap, sum(1 for t in gap if t in notes)))
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
    controls = np.array([vocab[t] for t in CONTROL_TOKENS if t in vocab])
    for i in range(len(store)):
        ids = store.record(i)[1:-1].astype(np.int64)
        yield " ".join(words[ids[~np.isin(ids, controls)]])  # a style token is not a word of the text


def _store_vocab(store: TokenStore) -> dict[str, int]:
    return load_tokenizer(store.folder).get_vocab()


class FimWindows(torch.utils.data.Dataset):
    """Training windows of which a share ``rate`` is rearranged for fill-in-the-middle
    (``fim_rearrange``; the loss covers every token, as in the FIM papers), the rest left to
    right, so one model both continues and infills.  Which windows, and where they are cut,
    depend on (seed, index, how many times this process served the index): a new draw every
    epoch (on a small corpus a fixed draw would be learnt by heart), the same draws on a rerun."""

    def __init__(self, windows: torch.utils.data.Dataset, ids: FimIds, rate: float, seed: int = 0,
                 order: str = "psm"):
        self.windows, self.ids, self.rate, self.seed, self.order = windows, ids, rate, seed, order
        self.draws = np.zeros(len(windows), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        item = self.windows[i]
        rng = np.random.default_rng((self.seed, i, int(self.draws[i])))
        self.draws[i] += 1
        if rng.random() >= self.rate:
            return item
        rearranged = fim_rearrange(list(item["input_ids"]), self.ids, rng, self.order)
        if rearranged is None:
            return item
        return {"input_ids": rearranged, "labels": rearranged}


class PackedWindows(torch.utils.data.Dataset):
    """Training windows of exactly ``context`` tokens cut from a split's records laid back to back
    (``... <eos> <bos> ...``), so no compute goes to padding (only the last window can be short).

    The records are laid in a random order drawn from ``seed`` (``None``: the store's order).  Why:
    the store keeps a piece's segments and transposed copies next to each other, and windows cut
    from that order nearly always show a record after another copy of the same piece, so the model
    learnt to copy a piece's header (meter, tempo, instruments) from the record before it instead
    of choosing it from the style: generating from ``<bos> <style_chorale>`` it chose 4/4 a quarter
    of the time where the chorales have it 88% of the time (docs/training.md).
    Items are read from the memory map when asked for: nothing is held in RAM.  Attention runs
    across a record boundary inside a window (as in GPT-2's own training); the model sees
    ``<eos> <bos>`` there and learns that a new piece starts."""

    def __init__(self, store: TokenStore, context: int, seed: int | None = 0):
        self.store, self.context = store, context
        self.n_windows = -(-max(0, store.n_tokens - 1) // context) if store.n_tokens > 1 else 0
        order = np.arange(len(store)) if seed is None else np.random.default_rng(seed).permutation(len(store))
        self.offsets = store.index[order, OFFSET].astype(np.int64)  # where each laid record starts in the store
        self.lengths = store.index[order, LENGTH].astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])  # where it starts in the laid stream
        log = os.environ.get(WINDOW_LOG_HOOK)
        self.log = Path(f"{log}.{os.environ.get('RANK', '0')}") if log else None

    def __len__(self) -> int:
        return self.n_windows

    def stream(self, begin: int, end: int) -> np.ndarray:
        """Tokens ``begin``..``end`` of the records laid in order."""
        first = int(np.searchsorted(self.starts, begin, side="right")) - 1
        parts = []
        for r in range(first, len(self.lengths)):
            if self.starts[r] >= end:
                break
            lo, hi = max(begin, self.starts[r]) - self.starts[r], min(end, self.starts[r + 1]) - self.starts[r]
            parts.append(self.store.tokens[self.offsets[r] + lo: self.offsets[r] + hi])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n_windows:
            raise IndexError(i)
        window = self.stream(i * self.context, (i + 1) * self.context).astype(np.int64).tolist()
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

