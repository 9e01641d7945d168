"""The token store: the same ids as the JSONL through the tokenizer, exact note counts, packed
training windows without padding, and bf16 training that tracks fp32."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mozart.dataset import DatasetConfig, build_dataset
from mozart.lmdata import (
    PackedWindows,
    causal_examples,
    collate,
    load_tokenizer,
    piece_ids,
    piece_windows,
    read_split,
)
from mozart.tokens import count_notes
from mozart.tokenstore import TokenStore
from mozart.train import build_examples, load_config, train

from conftest import corpus_files, link_all


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    midi = link_all(corpus_files()[:16], root / "midi")
    build_dataset(midi, root / "data", DatasetConfig(workers=2, max_tokens=512, valid=0.2, test=0.2,
                                                     transpose=(-1, 1)), progress=False)
    return root / "data"


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_store_holds_the_tokenizers_ids_and_exact_note_counts(data, split):
    store = TokenStore(data, split)
    texts = read_split(data, split)
    expected = piece_ids(texts, load_tokenizer(data))  # <bos> words <eos> through the HF tokenizer
    assert len(store) == len(texts) > 0
    for i, ids in enumerate(expected):
        assert store.record(i).tolist() == ids
    assert store.index[:, 2].tolist() == [count_notes(t.split()) for t in texts]
    stats = json.loads((data / "stats.json").read_text())["splits"][split]
    assert store.notes == stats["notes"] and store.n_tokens == stats["tokens"] + 2 * stats["records"]


def test_piece_windows_from_the_store_equal_the_jsonl_examples(data):
    for split in ("train", "valid"):
        from_store = piece_windows(TokenStore(data, split), 128)
        from_jsonl = causal_examples(read_split(data, split), load_tokenizer(data), 128)
        assert [e.input_ids for e in from_store.examples] == [e.input_ids for e in from_jsonl.examples]
        assert from_store.notes == from_jsonl.notes
    config = load_config(None, context=128, packing=False, fim_rate=0.0)
    train_jsonl = causal_examples(read_split(data, "train"), load_tokenizer(data), 128)
    assert [e.input_ids for e in build_examples(data, "train", config, 128).examples] == \
        [e.input_ids for e in train_jsonl.examples]


def test_packed_windows_are_the_stream_without_padding(data):
    store = TokenStore(data, "train")
    in_order = PackedWindows(store, 100, seed=None)
    rows = [in_order[i]["input_ids"] for i in range(len(in_order))]
    assert all(len(r) == 100 for r in rows[:-1]) and 1 <= len(rows[-1]) <= 100
    assert np.array_equal(np.concatenate(rows), np.asarray(store.tokens)[: sum(map(len, rows))])
    assert sum(map(len, rows)) >= store.n_tokens - 1
    # by default the records are laid in a seeded random order: every record once, whole, in that order
    windows = PackedWindows(store, 100)
    laid = np.concatenate([windows[i]["input_ids"] for i in range(len(windows))])
    order = np.random.default_rng(0).permutation(len(store))
    assert np.array_equal(laid, np.concatenate([store.record(int(r)) for r in order]))
    assert not np.array_equal(order, np.arange(len(store)))
    again = PackedWindows(store, 100, seed=3)[2]["input_ids"]
    assert again == PackedWindows(store, 100, seed=3)[2]["input_ids"]  # the same order on a rerun
    batch = collate([windows[i] for i in range(8)], 0)
    assert int(batch["attention_mask"].sum()) == batch["attention_mask"].numel()  # no padding at all
    padded = causal_examples(read_split(data, "train"), load_tokenizer(data), 100)
    per_piece = collate([padded[i] for i in range(len(padded))], 0)["attention_mask"]
    assert float(per_piece.float().mean()) < 1.0  # what packing saves: per-piece windows need padding
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_bf16_training_tracks_fp32(data, tmp_path):
    """Same data, same seed: the valid loss curves of bf16 autocast and fp32 agree within 2%."""
    curves = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        metrics = train(data, run, load_config(None, max_steps=24, eval_every=8, context=128, batch_size=4,
                                               lr=2e-3, validity_samples=0, precision=precision))
        assert metrics["precision"] == precision
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        curves[precision] = {key: [float(r[key]) for r in rows if r[key]] for key in ("train_loss", "eval_loss")}
    for key in ("train_loss", "eval_loss"):
        a, b = curves["fp32"][key], curves["bf16"][key]
        assert len(a) == len(b) >= 3
        assert all(abs(x - y) / x < 0.02 for x, y in zip(a, b)), curves
    assert curves["fp32"]["train_loss"][-1] < 0.9 * curves["fp32"]["train_loss"][0], curves  # it learns


def test_bart_continuation_pairs_from_the_store_equal_the_jsonls(data):
    from mozart.lmdata import continuation_examples, store_texts

    for split in ("train", "valid"):
        assert list(store_texts(TokenStore(data, split))) == read_split(data, split)
    config = load_config(None, arch="bart", context=128)
    from_store = build_examples(data, "valid", config, 128)
    from_jsonl = continuation_examples(read_split(data, "valid"), load_tokenizer(data), 128)
    assert [(e.input_ids, e.labels) for e in from_store.examples] == \
        [(e.input_ids, e.labels) for e in from_jsonl.examples]
    assert from_store.notes == from_jsonl.notes > 0
