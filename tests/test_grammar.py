"""The incremental grammar agrees with `check`: canonical texts are allowed word by word,
and random walks over allowed words always give texts that `check` accepts."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

import mozart
from mozart.grammar import new_state

from conftest import corpus_files


def walk_allows(text: str) -> None:
    state = new_state(24)
    index = state.vocab.index
    for i, word in enumerate(text.split()):
        mask = state.allowed()
        assert mask[index[word]], f"token {i} {word!r} not allowed after {text.split()[max(0, i - 8):i]}"
        state.advance(index[word])
    assert state.can_end()


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_canonical_text_is_allowed(path):
    walk_allows(mozart.encode(symusic.Score(str(path))))


def test_format_examples_are_allowed():
    from test_docs import examples

    for text in examples():
        walk_allows(text)


@pytest.mark.parametrize("seed", range(60))
def test_random_walks_always_check(seed):
    rng = np.random.default_rng(seed)
    state = new_state(24)
    words = state.vocab.words
    out = []
    target = int(rng.integers(5, 400))
    while True:
        if state.can_end() and (len(out) >= target or rng.random() < 0.02):
            break
        allowed = np.flatnonzero(state.allowed())
        assert allowed.size, f"dead end after {out[-10:]}"
        # favour small ids inside each choice so walks stay musical-ish and short numbers appear
        token = int(rng.choice(allowed))
        out.append(words[token])
        state.advance(token)
        assert len(out) < 5000
    text = " ".join(out)
    mozart.check(text)
    assert mozart.encode(mozart.decode(text)) == text
