"""Hypothesis strategies: random but valid symusic Scores and token-text mutations."""

from __future__ import annotations

import symusic
from hypothesis import strategies as st

from mozart.events import DENOMINATORS, MAX_NUMERATOR


@st.composite
def scores(draw) -> symusic.Score:
    """A Score with random resolution, tracks (drums too), notes of any length (same-pitch
    overlaps and duplicates likely), CC64 pedals, tempo and time-signature maps."""
    tpq = draw(st.sampled_from([1, 5, 24, 96, 100, 220, 384, 480, 960, 10080]) | st.integers(1, 20000))
    horizon = tpq * draw(st.sampled_from([4, 16, 64, 400]))
    score = symusic.Score(tpq)
    for _ in range(draw(st.integers(0, 4))):
        track = symusic.Track(program=draw(st.integers(0, 127)), is_drum=draw(st.booleans()))
        pitch = st.integers(0, 127) if draw(st.booleans()) else st.integers(58, 62)
        for _ in range(draw(st.integers(0, 30))):
            track.notes.append(symusic.Note(
                draw(st.integers(0, horizon)),
                draw(st.integers(0, tpq * 8) | st.integers(0, tpq * 2000)),
                draw(pitch),
                draw(st.integers(1, 127)),
            ))
        for _ in range(draw(st.integers(0, 6))):
            track.controls.append(symusic.ControlChange(
                draw(st.integers(0, horizon)), draw(st.sampled_from([64, 64, 7])), draw(st.integers(0, 127))))
        score.tracks.append(track)
    for _ in range(draw(st.integers(0, 5))):
        mspq = draw(st.integers(200_000, 2_000_000) | st.integers(1, 16_777_215))
        score.tempos.append(symusic.Tempo(draw(st.integers(0, horizon)), mspq=mspq))
    for _ in range(draw(st.integers(0, 4))):
        score.time_signatures.append(symusic.TimeSignature(
            draw(st.integers(0, horizon)), draw(st.integers(1, MAX_NUMERATOR)), draw(st.sampled_from(DENOMINATORS))))
    return score


@st.composite
def mutations(draw, words: list[str], vocabulary: tuple[str, ...]) -> list[str]:
    """``words`` with one token deleted, duplicated, swapped with its neighbour or replaced."""
    out = list(words)
    i = draw(st.integers(0, len(out) - 1))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
    if kind == "delete":
        del out[i]
    elif kind == "duplicate":
        out.insert(i, out[i])
    elif kind == "swap" and i + 1 < len(out):
        out[i], out[i + 1] = out[i + 1], out[i]
    else:
        out[i] = draw(st.sampled_from(vocabulary))
    return out
