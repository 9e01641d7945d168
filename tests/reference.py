"""An independent re-implementation of the quantization Q of docs/format.md.

Written note by note with exact fractions, sharing no code with mozart's vectorised
quantizer, so that the fidelity tests compare the codec against the spec, not itself.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from math import floor

import symusic

HALF = Fraction(1, 2)


def to_steps(ticks: int, tpq: int, grid: int) -> int:
    """Round half-up ticks -> grid steps."""
    return floor(Fraction(ticks * grid, tpq) + HALF)


def duration_steps(ticks: int, tpq: int, grid: int) -> int:
    return max(1, to_steps(ticks, tpq, grid))


def note_multiset(score: symusic.Score, grid: int) -> Counter:
    """Counter of (program, is_drum, pitch, onset, duration, velocity) in steps."""
    tpq = score.ticks_per_quarter
    out: Counter = Counter()
    for track in score.tracks:
        for n in track.notes:
            out[(track.program, bool(track.is_drum), n.pitch, to_steps(n.time, tpq, grid),
                 duration_steps(n.duration, tpq, grid), n.velocity)] += 1
    return out


def centi_qpm(mspq: int) -> int:
    """Tempo in hundredths of qpm, rounded half-up."""
    return floor(Fraction(6_000_000_000, mspq) + HALF)


def _step_map(events: list[tuple[int, object]], default, n_steps: int) -> list:
    """Value in force at every step 0..n_steps-1; events at the same step: the last wins."""
    by_step: dict[int, object] = {}
    for step, value in events:  # file order: a later event at the same step overwrites
        by_step[step] = value
    values, current = [], default
    for s in range(n_steps):
        if s in by_step:
            current = by_step[s]
        values.append(current)
    return values


def tempo_map(score: symusic.Score, grid: int, n_steps: int) -> list[int]:
    tpq = score.ticks_per_quarter
    events = [(to_steps(t.time, tpq, grid), centi_qpm(t.mspq)) for t in score.tempos]
    return _step_map(events, 12000, n_steps)


def time_signature_map(score: symusic.Score, grid: int, n_steps: int) -> list[tuple[int, int]]:
    tpq = score.ticks_per_quarter
    events = [(to_steps(t.time, tpq, grid), (t.numerator, t.denominator)) for t in score.time_signatures]
    return _step_map(events, (4, 4), n_steps)


def sustain_ticks(track: symusic.Track) -> list[tuple[int, int]]:
    """(start, duration) in ticks of each sustain interval: CC64 >= 64 is down; a pedal
    still down at the end of the track closes at the track's end.  Tracks without CC64
    (built in memory) use their pedal list."""
    events = sorted(((c.time, c.value >= 64) for c in track.controls if c.number == 64), key=lambda e: e[0])
    if not events:
        return [(p.time, p.duration) for p in track.pedals]
    out, down_at = [], None
    for time, down in events:
        if down and down_at is None:
            down_at = time
        elif not down and down_at is not None:
            out.append((down_at, time - down_at))
            down_at = None
    if down_at is not None:
        out.append((down_at, max(track.end(), down_at) - down_at))
    return out


def pedal_steps(score: symusic.Score, grid: int) -> dict[tuple[int, bool], set[int]]:
    """For each (program, is_drum): the set of grid steps during which the pedal is down."""
    tpq = score.ticks_per_quarter
    out: dict[tuple[int, bool], set[int]] = {}
    for track in score.tracks:
        for time, duration in sustain_ticks(track):
            start = to_steps(time, tpq, grid)
            steps = out.setdefault((track.program, bool(track.is_drum)), set())
            steps.update(range(start, start + duration_steps(duration, tpq, grid)))
    return out


def last_step(score: symusic.Score, grid: int) -> int:
    """Latest quantized event start over notes, pedals, tempos and time signatures."""
    tpq = score.ticks_per_quarter
    times = [t.time for t in score.tempos] + [t.time for t in score.time_signatures]
    for track in score.tracks:
        times += [n.time for n in track.notes] + [start for start, _ in sustain_ticks(track)]
    return max((to_steps(t, tpq, grid) for t in times), default=0)
