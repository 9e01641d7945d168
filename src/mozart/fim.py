"""Fill-in-the-middle arrangements: what a decoder reads to write the bars between a prefix and a suffix.

Training (lmdata.FimWindows) rearranges a share of its windows so; infilling (rewrite.py) builds the
same arrangement around the bars to rewrite.  Torch-free, so that sampling need not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tokenizer import BOS, EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from .tokens import BAR

#: Most bars a training middle spans: infilling asks for a few bars at a time (a phrase).
FIM_MAX_BARS = 8
#: Tokens a FIM rearrangement adds (three markers); they are taken from the start of the window.
FIM_MARKERS = 3


@dataclass(frozen=True)
class FimIds:
    """Token ids a fill-in-the-middle rearrangement needs."""

    prefix: int
    suffix: int
    middle: int
    bar: int
    bos: int
    eos: int


def fim_ids(vocab: dict[str, int]) -> FimIds | None:
    """The FIM ids of a tokenizer's vocabulary, or None when it has no FIM markers."""
    if FIM_PREFIX not in vocab:
        return None
    return FimIds(vocab[FIM_PREFIX], vocab[FIM_SUFFIX], vocab[FIM_MIDDLE], vocab[BAR], vocab[BOS], vocab[EOS])


#: Orders of a fill-in-the-middle arrangement: prefix first (``psm``, this project's first) or suffix
#: first (``spm``: the middle follows the bars before it directly, as in left-to-right text).
FIM_ORDERS = ("psm", "spm")


def fim_input(before: list[int], after: list[int], ids: FimIds, order: str = "psm") -> list[int]:
    """What a FIM model reads before it writes the middle: ``<fim_prefix> before <fim_suffix> after
    <fim_middle>`` (``psm``) or ``<fim_suffix> after <fim_prefix> before <fim_middle>`` (``spm``)."""
    if order == "spm":
        return [ids.suffix, *after, ids.prefix, *before, ids.middle]
    return [ids.prefix, *before, ids.suffix, *after, ids.middle]


def fim_order_of(model) -> str:
    """The FIM order a model was trained with (its config's ``fim_order``; models from before the
    option were trained prefix first)."""
    return getattr(model.config, "fim_order", "psm")


def fim_rearrange(window: list[int], ids: FimIds, rng: np.random.Generator, order: str = "psm") -> list[int] | None:
    """``window`` as ``<fim_prefix> before <fim_suffix> after <fim_middle> middle`` (or suffix
    first, ``order="spm"``: ``fim_input``), same length.

    The middle is 1..FIM_MAX_BARS whole bars of one piece (from a ``Bar`` token to the next
    bar's ``Bar``, the piece's ``<eos>`` or the window's end), so the model learns to write
    bars that lead into the music after them.  The first three tokens of the window make room
    for the markers.  None when the window has no bar to cut there."""
    w = np.asarray(window)
    bars = np.flatnonzero(w == ids.bar)
    starts = bars[bars >= FIM_MARKERS]
    if starts.size == 0:
        return None
    a = int(rng.choice(starts))
    boundary = np.flatnonzero((w[a:] == ids.bos) | (w[a:] == ids.eos))
    end = a + int(boundary[0]) if boundary.size else len(window)  # the middle stays inside its piece
    ends = [int(b) for b in bars[(bars > a) & (bars < end)]] + [end]
    b = ends[int(rng.integers(min(FIM_MAX_BARS, len(ends))))]
    return fim_input(window[FIM_MARKERS:a], window[b:], ids, order) + window[a:b]
