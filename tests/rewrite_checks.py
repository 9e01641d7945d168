"""What every infill and accompaniment must satisfy (shared by the library, CLI and studio tests)."""

from __future__ import annotations

from collections import Counter

import numpy as np

import mozart
from mozart.events import Piece
from mozart.instruments import pitch_range
from mozart.masks import MAX_UNISON
from mozart.rewrite import note_table, piece_bars
from mozart.tokens import decode_piece


def assert_rewrite(source: Piece, text: str, first: int, last: int, streams, keep: bool) -> None:
    """The text is valid, has the source's bars, tempo map, meter and pedal, keeps every note
    outside bars first..last (and, with ``keep``, every note inside), and its new notes lie in
    those bars and streams, within each instrument's range; with ``keep`` (accompaniment) each
    new stream has a note in every bar of the range."""
    mozart.check(text)
    out = decode_piece(text)
    starts = piece_bars(source)[0]
    assert np.array_equal(piece_bars(out)[0], starts)
    for field in ("tempo_step", "tempo_centi", "ts_step", "ts_numerator", "ts_denominator", "pedal_onset",
                  "pedal_duration", "pedal_stream"):
        assert np.array_equal(getattr(out, field), getattr(source, field)), field
    lo, hi = starts[first], starts[last + 1]
    before, after = note_table(source), note_table(out)
    span_before = (before[:, 0] >= lo) & (before[:, 0] < hi)
    span_after = (after[:, 0] >= lo) & (after[:, 0] < hi)
    assert Counter(map(tuple, before[~span_before])) == Counter(map(tuple, after[~span_after]))
    new = Counter(map(tuple, after[span_after]))
    if keep:
        kept = Counter(map(tuple, before[span_before]))
        assert not kept - new, "a kept note is missing"
        new -= kept
    assert {row[1] for row in new} <= set(streams)
    for _onset, stream, pitch, *_ in new:  # new notes keep to their instrument's range
        low, high = pitch_range(stream)
        assert low <= pitch <= high, (stream, pitch)
    source_keys = Counter(map(tuple, before[:, :3]))
    new_keys = Counter(row[:3] for row in new.elements())
    assert all(count <= MAX_UNISON for key, count in new_keys.items() if not source_keys[key]), "a third unison"
    if keep:  # each added part plays in every bar of the range
        for stream in streams:
            onsets = [row[0] for row in new.elements() if row[1] == stream]
            bars = set(np.searchsorted(starts, onsets, side="right") - 1)
            assert bars == set(range(first, last + 1)), (stream, sorted(bars), first, last)
