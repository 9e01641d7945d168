"""The quantized, symbolic form of a piece that sits between MIDI and text.

A :class:`Piece` holds plain integer numpy arrays in *grid steps* (``grid`` steps per
quarter note).  ``midi.py`` produces and consumes it; ``tokens.py`` spells it as text.
Everything here is independent of symusic, so the token format can be tested and used
without any MIDI library.

Streams: a note or pedal belongs to one *stream*, the pair (program, drum flag), packed
into one integer ``stream = program + 128 * is_drum`` so that melodic programs sort
before drum kits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import MozartError

#: Quarter notes per whole note; bar length in steps is ``num * grid * WHOLE // den``.
WHOLE = 4
#: Time-signature denominators the format supports.
DENOMINATORS = (1, 2, 4, 8, 16)
#: Largest supported time-signature numerator.
MAX_NUMERATOR = 32
#: Tempo used where a piece sets none, in hundredths of a quarter note per minute.
DEFAULT_TEMPO_CENTI = 12000
#: Time signature used where a piece sets none.
DEFAULT_TIME_SIGNATURE = (4, 4)
#: Supported grids: multiples of this value up to MAX_GRID, so that every bar of every
#: supported time signature (down to x/16) is a whole number of steps.
GRID_MULTIPLE = 4
MAX_GRID = 96

DRUM_OFFSET = 128
#: Microseconds per minute times 100: microseconds per quarter = CENTI_MINUTE_US / centi-qpm.
CENTI_MINUTE_US = 6_000_000_000


def validate_grid(grid: int) -> int:
    """Return ``grid`` if the format supports it, else raise MozartError saying why."""
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)):
        raise MozartError(f"grid must be an integer, got {grid!r}")
    if grid < GRID_MULTIPLE or grid > MAX_GRID or grid % GRID_MULTIPLE:
        raise MozartError(
            f"grid {grid} is not supported: it must be a multiple of {GRID_MULTIPLE} between "
            f"{GRID_MULTIPLE} and {MAX_GRID}, so that every bar of every supported time "
            f"signature (denominators {', '.join(map(str, DENOMINATORS))}) is a whole number of steps"
        )
    return int(grid)


def bar_steps(numerator: int | np.ndarray, denominator: int | np.ndarray, grid: int):
    """Length of one bar of ``numerator/denominator`` in grid steps."""
    return numerator * grid * WHOLE // denominator


def _empty(dtype=np.int64) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class Piece:
    """A piece quantized to the grid; every time is an integer number of steps.

    Arrays of one group have equal length.  Tempo and time-signature maps are
    *effective change lists*: sorted by step, the first entry at step 0, and each entry
    differs from the one before it.
    """

    grid: int
    # notes
    note_onset: np.ndarray = field(default_factory=_empty)  # step of the note-on
    note_duration: np.ndarray = field(default_factory=_empty)  # steps, >= 1
    note_pitch: np.ndarray = field(default_factory=_empty)  # 0..127
    note_velocity: np.ndarray = field(default_factory=_empty)  # 1..127, exact
    note_stream: np.ndarray = field(default_factory=_empty)  # program + 128 * is_drum
    # sustain pedal (CC64 >= 64), per stream, disjoint and non-touching intervals
    pedal_onset: np.ndarray = field(default_factory=_empty)
    pedal_duration: np.ndarray = field(default_factory=_empty)
    pedal_stream: np.ndarray = field(default_factory=_empty)
    # tempo map, hundredths of a quarter note per minute (12000 = 120 qpm)
    tempo_step: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    tempo_centi: np.ndarray = field(default_factory=lambda: np.full(1, DEFAULT_TEMPO_CENTI, np.int64))
    # time-signature map; a change starts a new bar at its step
    ts_step: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    ts_numerator: np.ndarray = field(default_factory=lambda: np.full(1, DEFAULT_TIME_SIGNATURE[0], np.int64))
    ts_denominator: np.ndarray = field(default_factory=lambda: np.full(1, DEFAULT_TIME_SIGNATURE[1], np.int64))

    @property
    def n_notes(self) -> int:
        return int(self.note_onset.size)

    def last_step(self) -> int:
        """Step of the latest event start (note, pedal, tempo or time signature)."""
        candidates = [self.tempo_step[-1], self.ts_step[-1]]
        if self.note_onset.size:
            candidates.append(self.note_onset.max())
        if self.pedal_onset.size:
            candidates.append(self.pedal_onset.max())
        return int(max(candidates))

    def is_empty(self) -> bool:
        """True when nothing happens after step 0 and there are no notes or pedals."""
        return self.last_step() == 0 and not self.note_onset.size and not self.pedal_onset.size


def bar_layout(piece: Piece) -> tuple[np.ndarray, np.ndarray]:
    """Start step of every bar up to the one holding the piece's last event.

    Returns ``(bar_start, bar_ts)`` where ``bar_ts`` indexes the time-signature map.
    A time-signature change starts a new bar at its step, which shortens the bar
    before it when the change falls inside that bar.  An empty piece has no bars.
    """
    if piece.is_empty():
        return _empty(), _empty()
    end = piece.last_step()
    lengths = bar_steps(piece.ts_numerator, piece.ts_denominator, piece.grid)
    segment_end = np.append(piece.ts_step[1:], end + 1)
    starts, which = [], []
    for i in range(piece.ts_step.size):
        s = np.arange(piece.ts_step[i], segment_end[i], lengths[i], dtype=np.int64)
        starts.append(s)
        which.append(np.full(s.size, i, dtype=np.int64))
    return np.concatenate(starts), np.concatenate(which)


def changes_only(*columns: np.ndarray) -> np.ndarray:
    """Mask of rows that differ from the previous row in any of ``columns`` (first row kept): what makes
    a tempo or time-signature list an *effective change list*."""
    differs = np.zeros(columns[0].size, dtype=bool)
    differs[0] = True
    for c in columns:
        differs[1:] |= c[1:] != c[:-1]
    return differs


def _in_force(step: np.ndarray, at: int) -> int:
    """Index of the map entry in force at step ``at`` (maps start at step 0)."""
    return int(np.searchsorted(step, at, side="right") - 1)


def slice_steps(piece: Piece, start: int, stop: int | None) -> Piece:
    """The part of ``piece`` whose events start in [start, stop), shifted to begin at 0.

    ``start`` must be a bar start so that the slice's bars line up with the piece's.
    Notes and pedals keep their full durations (they may sound past ``stop``); the tempo
    and time signature in force at ``start`` become the slice's initial ones.
    """
    end = np.iinfo(np.int64).max if stop is None else stop

    def inside(step: np.ndarray) -> np.ndarray:
        return (step >= start) & (step < end)

    n, p = inside(piece.note_onset), inside(piece.pedal_onset)
    t0, s0 = _in_force(piece.tempo_step, start), _in_force(piece.ts_step, start)
    t = np.flatnonzero(inside(piece.tempo_step) & (np.arange(piece.tempo_step.size) > t0))
    s = np.flatnonzero(inside(piece.ts_step) & (np.arange(piece.ts_step.size) > s0))
    return Piece(
        grid=piece.grid,
        note_onset=piece.note_onset[n] - start,
        note_duration=piece.note_duration[n],
        note_pitch=piece.note_pitch[n],
        note_velocity=piece.note_velocity[n],
        note_stream=piece.note_stream[n],
        pedal_onset=piece.pedal_onset[p] - start,
        pedal_duration=piece.pedal_duration[p],
        pedal_stream=piece.pedal_stream[p],
        tempo_step=np.concatenate([[0], piece.tempo_step[t] - start]),
        tempo_centi=np.concatenate([piece.tempo_centi[[t0]], piece.tempo_centi[t]]),
        ts_step=np.concatenate([[0], piece.ts_step[s] - start]),
        ts_numerator=np.concatenate([piece.ts_numerator[[s0]], piece.ts_numerator[s]]),
        ts_denominator=np.concatenate([piece.ts_denominator[[s0]], piece.ts_denominator[s]]),
    )


def transpose(piece: Piece, semitones: int) -> Piece | None:
    """``piece`` with every melodic note shifted by ``semitones`` (drums never move), or
    None when the shift would push a melodic note outside 0..127."""
    melodic = piece.note_stream < DRUM_OFFSET
    pitch = piece.note_pitch + np.where(melodic, semitones, 0)
    if pitch.size and (pitch.min() < 0 or pitch.max() > 127):
        return None
    return replace(piece, note_pitch=pitch)


def content_digest(piece: Piece) -> str:
    """A hash of the piece's notes alone (stream, onset, duration, pitch, velocity), in a
    canonical order: the same for re-saved, type-0/1 converted or padded copies of a file."""
    cols = (piece.note_stream, piece.note_onset, piece.note_duration, piece.note_pitch, piece.note_velocity)
    order = np.lexsort(cols[::-1])
    table = np.stack([c[order] for c in cols]).astype("<i8")
    return hashlib.sha256(piece.grid.to_bytes(4, "little") + table.tobytes()).hexdigest()
