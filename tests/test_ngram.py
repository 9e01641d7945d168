"""The n-gram baselines against a tiny corpus worked out by hand, and as proper distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mozart.ngram import KneserNey, Unigram

# ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 "a", 4 "b"; predictable: <eos>, a, b
BOS, EOS, A, B = 1, 2, 3, 4
CORPUS = [[BOS, A, B, EOS], [BOS, A, A, EOS]]


def test_bigram_kneser_ney_by_hand():
    """Bigrams (raw): (bos a) 2, (a b) 1, (b eos) 1, (a a) 1, (a eos) 1 -> n1 = 4, n2 = 1, D2 = 4/6.
    Unigram continuation counts: a has left neighbours {bos, a} -> 2, b {a} -> 1, eos {b, a} -> 2;
    n1 = 1, n2 = 2 -> D1 = 1/5; total 5 over 3 types.
    P1(a) = (2 - 1/5)/5 + (1/5)(3/5)(1/3) = 0.40, P1(b) = 0.20, P1(eos) = 0.40.
    P2(a | bos) = (2 - 2/3)/2 + (2/3)(1/2) P1(a) = 2/3 + 2/15 = 0.8
    P2(b | a) = (1 - 2/3)/3 + (2/3)(3/3) P1(b) = 1/9 + 2/15 = 11/45
    P2(eos | b) = (1 - 2/3)/1 + (2/3)(1/1) P1(eos) = 1/3 + 4/15 = 0.6
    """
    model = KneserNey.fit(CORPUS, order=2, base=5, bos=BOS, predictable=3)
    assert model.orders[1].discount == pytest.approx(4 / 6)
    assert model.orders[0].discount == pytest.approx(1 / 5)
    probs = np.exp(model.log_probs([[BOS, A, B, EOS]]))
    assert probs == pytest.approx([0.8, 11 / 45, 0.6])
    unigram_level = np.exp(KneserNey.fit(CORPUS, order=1, base=5, bos=BOS, predictable=3).log_probs([[BOS, A, B]]))
    # order 1 is the raw counts a: 3, b: 1, eos: 2 (n1 = 1, n2 = 1 -> D = 1/3), with the uniform floor
    assert unigram_level == pytest.approx([(3 - 1 / 3) / 6 + (1 / 3) * (3 / 6) / 3, (1 - 1 / 3) / 6 + 1 / 18])


def test_unigram_add_one_by_hand():
    model = Unigram.fit(CORPUS, base=5, predictable=np.array([EOS, A, B]))
    # counts a 3, b 1, eos 2; N = 6, V = 3 -> (c + 1) / 9
    assert np.exp(model.log_probs([[BOS, A, B, EOS]])) == pytest.approx([4 / 9, 2 / 9, 3 / 9])


@given(st.lists(st.lists(st.integers(2, 6), min_size=1, max_size=12), min_size=1, max_size=6),
       st.lists(st.integers(2, 6), max_size=5), st.integers(1, 5))
def test_kneser_ney_is_a_distribution_for_any_history(corpus, history, order):
    """Summed over every predictable token, P(w | history) is 1, seen history or not."""
    sequences = [[BOS] + seq for seq in corpus]
    model = KneserNey.fit(sequences, order=order, base=7, bos=BOS, predictable=5)
    total = sum(math.exp(model.log_probs([[BOS] + history + [w]])[-1]) for w in range(2, 7))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_longer_context_helps_on_a_repetitive_corpus():
    rng = np.random.default_rng(0)
    pattern = [3, 4, 5, 3, 6, 4]
    corpus = [[BOS] + pattern * int(rng.integers(2, 6)) + [EOS] for _ in range(40)]
    test = [[BOS] + pattern * 3 + [EOS]]
    bits = {n: -KneserNey.fit(corpus, n, 8, BOS, 6).log_probs(test).sum() for n in (1, 2, 3, 4)}
    assert bits[4] < bits[3] < bits[2] < bits[1]
