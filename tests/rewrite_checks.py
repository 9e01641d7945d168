"""What every infill and accompaniment must satisfy (shared by the library, CLI and studio tests)."""

from __future__ import annotations

from collections import Counter

import numpy as np

import mozart
from mozart.events import DRUM_OFFSET, Piece
from mozart.instruments import pitch_range
from mozart.masks import MAX_UNISON
from mozart.register import beat_steps, line_bounds
from mozart.rewrite import note_table, piece_bars
from mozart.tokens import decode_piece


def assert_rewrite(source: Piece, text: str, first: int, last: int, streams, keep: bool,
                   register: str = "any", fill: str = "bar") -> None:
    """The text is valid, has the source's bars, tempo map, meter and pedal, keeps every note
    outside bars first..last (and, with ``keep``, every note inside), and its new notes lie in
    those bars and streams, within each instrument's range; with ``keep`` (accompaniment) each
    new stream has a note in every bar of the range, and each new melodic note starts in the
    ``register`` (below the source's top line, above its bottom line) where its range has room; with
    ``fill`` ``beat`` each new melodic stream sounds on every beat of the range."""
    mozart.check(text)
    out = decode_piece(text)
    starts = piece_bars(source)[0]
    assert np.array_equal(piece_bars(out)[0], starts)
    for field in ("tempo_step", "tempo_centi", "ts_step", "ts_numerator", "ts_denominator"):
        assert np.array_equal(getattr(out, field), getattr(source, field)), field

    def pedals(piece: Piece) -> list[tuple[int, int, int]]:  # a loaded piece lists them by stream, a decoded by time
        return sorted(zip(piece.pedal_onset.tolist(), piece.pedal_stream.tolist(), piece.pedal_duration.tolist()))

    assert pedals(out) == pedals(source), "pedal"
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
    if keep:
        assert_register(before, new, register, int(starts[-1]))
    if keep:  # each added part plays in every bar of the range
        for stream in streams:
            onsets = [row[0] for row in new.elements() if row[1] == stream]
            bars = set(np.searchsorted(starts, onsets, side="right") - 1)
            assert bars == set(range(first, last + 1)), (stream, sorted(bars), first, last)
    if keep and fill == "beat":
        assert_every_beat(source, after, first, last, streams)


def assert_every_beat(source: Piece, after: np.ndarray, first: int, last: int, streams) -> None:
    """Each new melodic stream sounds on every beat of bars first..last: a note of it (new, or kept where
    the source has that program too) starts there or is held through it."""
    starts, ts = piece_bars(source)
    beats = beat_steps(starts[first: last + 2], ts[first: last + 1], source.grid)
    for stream in (s for s in streams if s < DRUM_OFFSET):
        notes = after[after[:, 1] == stream]
        on, end = notes[:, 0], notes[:, 0] + notes[:, 3]
        silent = [int(b) for b in beats if not ((on <= b) & (b < end)).any()]
        assert not silent, (stream, silent[:5], first, last)


def assert_register(kept: np.ndarray, new: Counter, register: str, n_steps: int) -> None:
    """Each new melodic note (``new``: a Counter of note rows) starts within ``register``'s bounds of
    the ``kept`` notes at its onset, unless no pitch of its instrument's range is there, or every one
    there already has its unison's share of new notes (masks.MAX_UNISON)."""
    bounds = line_bounds(kept, n_steps, register)
    if bounds is None:
        return
    new_keys = Counter(row[:3] for row in new.elements())
    for onset, stream, pitch, *_ in new:
        if stream >= DRUM_OFFSET:
            continue
        low, high = pitch_range(stream)
        room = [p for p in range(max(low, bounds[onset, 0]), min(high, bounds[onset, 1]) + 1)
                if new_keys[(onset, stream, p)] < MAX_UNISON or p == pitch]
        if room:
            assert bounds[onset, 0] <= pitch <= bounds[onset, 1], (register, onset, stream, pitch, bounds[onset])
