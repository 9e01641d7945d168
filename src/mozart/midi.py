"""MIDI files and symusic Scores <-> quantized :class:`~mozart.events.Piece`.

The only module that imports symusic.  ``quantize`` is the quantization Q of
docs/format.md; ``to_score`` is its inverse at the grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from .errors import MozartError
from .events import (
    CENTI_MINUTE_US,
    DEFAULT_TEMPO_CENTI,
    DEFAULT_TIME_SIGNATURE,
    DENOMINATORS,
    DRUM_OFFSET,
    MAX_NUMERATOR,
    Piece,
    changes_only,
    validate_grid,
)
from .files import check_regular_file, write_atomic

#: Sustain-pedal controller number.
SUSTAIN_CC = 64


def read_midi(path: str | os.PathLike) -> symusic.Score:
    """Read a MIDI file with symusic, turning every failure into a one-line MozartError."""
    p = Path(path)
    check_regular_file(p, "a MIDI file")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise MozartError(f"{p}: cannot read: {e.strerror or e}") from None
    if size == 0:
        raise MozartError(f"{p}: empty file")
    if magic != b"MThd":
        riff = magic == b"RIFF"
        kind = "a RIFF (RMID) container, not a plain MIDI file" if riff else "not a MIDI file (no MThd header)"
        raise MozartError(f"{p}: {kind}")
    try:
        score = symusic.Score(str(p))
    except Exception as e:  # symusic raises RuntimeError/ValueError with C++ messages
        raise MozartError(f"{p}: unreadable MIDI: {_one_line(e)}") from None
    if score.ticks_per_quarter <= 0:
        raise MozartError(f"{p}: invalid MIDI header: {score.ticks_per_quarter} ticks per quarter note")
    return score


def write_midi(score: symusic.Score, path: str | os.PathLike) -> None:
    """Write ``score`` to ``path`` atomically (temporary file, then rename), every note's duration intact:
    notes that restrike a pitch still sounding in their track go to extra tracks (:func:`unison_layers`)."""
    data = unison_layers(score).dumps_midi()
    write_atomic(path, data)


def note_layers(onset: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """For each note, the first layer (0, 1, ...) in which no earlier note of the same pitch still sounds at
    its onset: within a layer, notes of one pitch never overlap.  Notes that overlap nothing stay in 0."""
    layer = np.zeros(onset.size, dtype=np.int64)
    if not onset.size:
        return layer
    order = np.lexsort((end, onset, pitch))
    p, s, e = pitch[order].astype(np.int64), onset[order], end[order]
    # the latest end of the notes of a pitch so far: one running maximum over all pitches, each pitch
    # lifted above the ones before it (sorted by pitch), so a running maximum never crosses pitches
    lift = int(e.max()) + 1
    running = np.maximum.accumulate(p * lift + e) - p * lift
    clash = np.r_[False, (p[1:] == p[:-1]) & (s[1:] < running[:-1])]
    for pitch_value in np.unique(p[clash]):  # greedy interval partitioning, only for pitches that need it
        ends: list[int] = []  # the end of the last note in each layer
        for i in np.flatnonzero(p == pitch_value):
            free = next((k for k, last in enumerate(ends) if last <= s[i]), len(ends))
            if free == len(ends):
                ends.append(0)
            ends[free] = int(e[i])
            layer[order[i]] = free
    return layer


def unison_layers(score: symusic.Score) -> symusic.Score:
    """``score`` with each track split into as few tracks of the same program as keep notes of one pitch
    from overlapping within a track; the score itself when nothing overlaps.

    A MIDI file cannot say which note-off ends which of two sounding notes of the same pitch on one
    channel, so read back, their durations pair differently (a short restrike inside a long note turned it
    into a note held for bars).  symusic writes each track on its own channel and pairs note-offs per track,
    so the extra tracks read back exactly, and ``quantize`` merges tracks of one program again: a written
    file encodes to the text it was decoded from.  Each extra track repeats its track's controllers, pedals
    and pitch bends, so it plays as the original channel would.
    """
    if "tick" not in str(score.ttype).lower():
        score = score.to("tick")
    layered, tracks = False, []
    for track in score.tracks:
        n = track.notes.numpy() if len(track.notes) else None
        layer = None if n is None else note_layers(
            n["time"].astype(np.int64), n["time"].astype(np.int64) + n["duration"].astype(np.int64), n["pitch"])
        if layer is None or not layer.any():
            tracks.append(track)
            continue
        layered = True
        for k in range(int(layer.max()) + 1):
            part = track.copy()
            if k:
                part.lyrics = type(track.lyrics)()  # lyrics once, on the first track
            sel = layer == k
            part.notes = symusic.Note.from_numpy(n["time"][sel], n["duration"][sel], n["pitch"][sel],
                                                 n["velocity"][sel])
            tracks.append(part)
    if not layered:
        return score
    out = score.copy()
    out.tracks = tracks
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _round_half_up_ratio(num: np.ndarray, den: int | np.ndarray) -> np.ndarray:
    """floor(num / den + 1/2) for non-negative integers, exactly."""
    return (2 * num + den) // (2 * den)


def _last_per_step(step: np.ndarray) -> np.ndarray:
    """Indices (in time order) of the last event at each distinct step; ties keep file order."""
    order = np.argsort(step, kind="stable")
    s = step[order]
    keep = np.append(s[1:] != s[:-1], True)
    return order[keep]


def quantize(score: symusic.Score, grid: int = 24) -> Piece:
    """Quantization Q: a symusic Score -> a :class:`Piece` on ``grid`` steps per quarter.

    Onsets round half-up to the grid; durations round half-up with a minimum of one step;
    tracks with the same (program, drum flag) merge into one stream; the tempo and
    time-signature maps keep, at each step, the last event there, with 120 qpm and 4/4
    where the piece sets none; sustain-pedal intervals of a stream are quantized like
    notes and merged where they overlap or touch.
    """
    grid = validate_grid(grid)
    if "tick" not in str(score.ttype).lower():
        score = score.to("tick")
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MozartError(f"invalid score: {tpq} ticks per quarter note")

    def q_time(t: np.ndarray) -> np.ndarray:
        t = t.astype(np.int64)
        if t.size and t.min() < 0:
            raise MozartError("invalid score: event before time 0")
        return _round_half_up_ratio(t * grid, tpq)

    def q_duration(d: np.ndarray) -> np.ndarray:
        d = d.astype(np.int64)
        return np.maximum(1, _round_half_up_ratio(np.maximum(d, 0) * grid, tpq))

    notes, pedals = [], []
    for track in score.tracks:
        stream = int(track.program) + DRUM_OFFSET * int(track.is_drum)
        if not 0 <= track.program <= 127:
            raise MozartError(f"invalid score: program {track.program} outside 0..127")
        if len(track.notes):
            n = track.notes.numpy()
            notes.append((n["time"], n["duration"], n["pitch"], n["velocity"], stream))
        onset, duration = sustain_intervals(track)
        if onset.size:
            pedals.append((onset, duration, stream))

    piece = Piece(grid=grid)
    if notes:
        time = np.concatenate([n[0] for n in notes])
        piece.note_onset = q_time(time)
        piece.note_duration = q_duration(np.concatenate([n[1] for n in notes]))
        # symusic stores pitch and velocity as int8; view as unsigned to catch bad values
        piece.note_pitch = np.concatenate([n[2] for n in notes]).astype(np.int64)
        piece.note_velocity = np.concatenate([n[3] for n in notes]).astype(np.int64)
        piece.note_stream = np.concatenate([np.full(n[0].size, n[4], np.int64) for n in notes])
        if piece.note_pitch.min() < 0 or piece.note_pitch.max() > 127:
            raise MozartError("invalid score: note pitch outside 0..127")
        if piece.note_velocity.min() < 1:
            raise MozartError("invalid score: note velocity outside 1..127")
    if pedals:
        onset = q_time(np.concatenate([p[0] for p in pedals]))
        end = onset + q_duration(np.concatenate([p[1] for p in pedals]))
        stream = np.concatenate([np.full(p[0].size, p[2], np.int64) for p in pedals])
        piece.pedal_onset, piece.pedal_duration, piece.pedal_stream = _merge_intervals(onset, end, stream)

    _quantize_tempos(score, piece, q_time)
    _quantize_time_signatures(score, piece, q_time)
    return piece


def sustain_intervals(track: symusic.Track) -> tuple[np.ndarray, np.ndarray]:
    """Sustain-pedal intervals (ticks) of a track: from its CC64 events when it has any
    (value >= 64 is down; a pedal still down at the end closes at the track's end),
    else from ``track.pedals`` (scores built in memory).

    symusic's own CC64 -> pedal conversion carries pedal state from one track to the
    next (0.6.0), so files are read from the controller events directly.
    """
    if len(track.controls):
        c = track.controls.numpy()
        sustain = c["number"] == SUSTAIN_CC
        if sustain.any():
            order = np.argsort(c["time"][sustain], kind="stable")
            time = c["time"][sustain][order].astype(np.int64)
            down = (c["value"][sustain][order] >= 64).astype(np.int8)
            change = np.diff(down, prepend=0)
            start, end = time[change == 1], time[change == -1]
            if end.size < start.size:
                end = np.append(end, max(int(track.end()), int(start[-1])))
            return start, end - start
    if len(track.pedals):
        p = track.pedals.numpy()
        return p["time"].astype(np.int64), p["duration"].astype(np.int64)
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def _merge_intervals(onset: np.ndarray, end: np.ndarray, stream: np.ndarray):
    """Union of [onset, end) intervals per stream; overlapping or touching ones merge."""
    order = np.lexsort((onset, stream))
    onset, end, stream = onset[order], end[order], stream[order]
    # Offset each stream far apart so one running maximum serves all streams at once.
    span = int(end.max()) + 1
    reach = np.maximum.accumulate(end + stream * span)
    starts_group = np.ones(onset.size, dtype=bool)
    starts_group[1:] = (onset[1:] + stream[1:] * span) > reach[:-1]
    first = np.flatnonzero(starts_group)
    group_end = np.maximum.reduceat(end, first)
    return onset[first], group_end - onset[first], stream[first]


def _quantize_tempos(score: symusic.Score, piece: Piece, q_time) -> None:
    if len(score.tempos):
        t = score.tempos.numpy()
        mspq = t["mspq"].astype(np.int64)
        if mspq.min() <= 0:
            raise MozartError("invalid score: tempo with non-positive microseconds per quarter")
        step, centi = q_time(t["time"]), _round_half_up_ratio(np.full(mspq.size, CENTI_MINUTE_US), mspq)
        keep = _last_per_step(step)
        step, centi = step[keep], centi[keep]
        if centi.min() < 1:
            raise MozartError("invalid score: tempo below 0.01 quarter notes per minute")
    else:
        step, centi = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not step.size or step[0] > 0:
        step, centi = np.append(0, step), np.append(DEFAULT_TEMPO_CENTI, centi)
    keep = changes_only(centi)
    piece.tempo_step, piece.tempo_centi = step[keep], centi[keep]


def _quantize_time_signatures(score: symusic.Score, piece: Piece, q_time) -> None:
    if len(score.time_signatures):
        ts = score.time_signatures.numpy()
        step = q_time(ts["time"])
        keep = _last_per_step(step)
        step, num, den = step[keep], ts["numerator"][keep].astype(np.int64), ts["denominator"][keep].astype(np.int64)
    else:
        step = num = den = np.zeros(0, np.int64)
    if not step.size or step[0] > 0:
        step = np.append(0, step)
        num = np.append(DEFAULT_TIME_SIGNATURE[0], num)
        den = np.append(DEFAULT_TIME_SIGNATURE[1], den)
    keep = changes_only(num, den)
    step, num, den = step[keep], num[keep], den[keep]
    bad = (num < 1) | (num > MAX_NUMERATOR) | ~np.isin(den, DENOMINATORS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MozartError(
            f"unsupported time signature {num[i]}/{den[i]} (numerators 1..{MAX_NUMERATOR}, "
            f"denominators {', '.join(map(str, DENOMINATORS))})"
        )
    piece.ts_step, piece.ts_numerator, piece.ts_denominator = step, num, den


def default_ticks_per_quarter(grid: int) -> int:
    """Resolution of decoded scores: the multiple of ``grid`` nearest below 480 (a common
    MIDI resolution), so every grid step is a whole number of ticks."""
    return grid * max(1, 480 // grid)


#: The largest time a MIDI event can sit at: a delta time is at most 0x0FFFFFFF ticks.
MAX_MIDI_TICKS = 0x0FFFFFFF


def to_score(piece: Piece, ticks_per_quarter: int | None = None) -> symusic.Score:
    """Build a symusic Score from a Piece: one track per stream, in stream order.

    Sustain pedals are written both as symusic pedals and as CC64 on/off pairs (127, 0),
    so that they survive ``dump_midi``.
    """
    tpq = ticks_per_quarter or default_ticks_per_quarter(piece.grid)
    if tpq % piece.grid:
        raise MozartError(f"ticks per quarter {tpq} is not a multiple of the grid {piece.grid}")
    scale = tpq // piece.grid
    last = max(int((piece.note_onset + piece.note_duration).max(initial=0)),
               int((piece.pedal_onset + piece.pedal_duration).max(initial=0)), piece.last_step())
    if last * scale > MAX_MIDI_TICKS:
        raise MozartError(f"the piece ends at tick {last * scale:,}, beyond the {MAX_MIDI_TICKS:,} a MIDI file can "
                          f"hold (its largest delta time) at {tpq} ticks per quarter")
    score = symusic.Score(tpq)
    streams = np.union1d(piece.note_stream, piece.pedal_stream).astype(np.int64)
    for stream in streams.tolist():
        program, is_drum = stream % DRUM_OFFSET, stream >= DRUM_OFFSET
        track = symusic.Track(name="", program=program, is_drum=is_drum)
        sel = piece.note_stream == stream
        if sel.any():
            track.notes = symusic.Note.from_numpy(
                (piece.note_onset[sel] * scale).astype(np.int32),
                (piece.note_duration[sel] * scale).astype(np.int32),
                piece.note_pitch[sel].astype(np.int8),
                piece.note_velocity[sel].astype(np.int8),
            )
        sel = piece.pedal_stream == stream
        if sel.any():
            start = (piece.pedal_onset[sel] * scale).astype(np.int32)
            dur = (piece.pedal_duration[sel] * scale).astype(np.int32)
            track.pedals = symusic.Pedal.from_numpy(start, dur)
            times = np.stack([start, start + dur], axis=1).ravel()
            values = np.tile(np.array([127, 0], dtype=np.uint8), start.size)
            track.controls = symusic.ControlChange.from_numpy(
                times, np.full(times.size, SUSTAIN_CC, np.uint8), values
            )
        score.tracks.append(track)
    mspq = _round_half_up_ratio(np.full(piece.tempo_centi.size, CENTI_MINUTE_US), piece.tempo_centi)
    score.tempos = symusic.Tempo.from_numpy((piece.tempo_step * scale).astype(np.int32), mspq.astype(np.int32))
    score.time_signatures = symusic.TimeSignature.from_numpy(
        (piece.ts_step * scale).astype(np.int32),
        piece.ts_numerator.astype(np.uint8),
        piece.ts_denominator.astype(np.uint8),
    )
    return score


@dataclass
class PlaybackStream:
    """One (program, drum flag) stream of a score, with times in seconds, for synthesis."""

    program: int
    is_drum: bool
    note_on: np.ndarray  # seconds
    note_off: np.ndarray  # seconds
    pitch: np.ndarray
    velocity: np.ndarray
    pedal_on: np.ndarray  # seconds
    pedal_off: np.ndarray  # seconds


def ticks_to_seconds(score: symusic.Score, ticks: np.ndarray) -> np.ndarray:
    """Seconds at each tick, following the score's tempo map (120 qpm before the first
    tempo; at a tick with several tempo events the last one wins)."""
    tpq = score.ticks_per_quarter
    if len(score.tempos):
        t = score.tempos.numpy()
        keep = _last_per_step(t["time"].astype(np.int64))
        at, mspq = t["time"][keep].astype(np.int64), t["mspq"][keep].astype(np.float64)
        if at[0] > 0:
            at, mspq = np.append(0, at), np.append(500_000.0, mspq)
    else:
        at, mspq = np.zeros(1, np.int64), np.full(1, 500_000.0)
    seconds_per_tick = mspq / 1e6 / tpq
    start_s = np.concatenate([[0.0], np.cumsum(np.diff(at) * seconds_per_tick[:-1])])
    i = np.searchsorted(at, ticks, side="right") - 1
    return start_s[i] + (ticks - at[i]) * seconds_per_tick[i]


def playback_streams(score: symusic.Score) -> list[PlaybackStream]:
    """The score's notes and sustain pedal per (program, drum) stream, in seconds; tracks
    of the same stream merge.  Streams are sorted (melodic programs, then drum kits)."""
    if "tick" not in str(score.ttype).lower():
        score = score.to("tick")
    groups: dict[int, list] = {}
    for track in score.tracks:
        stream = int(track.program) + DRUM_OFFSET * int(track.is_drum)
        groups.setdefault(stream, []).append(track)
    out = []
    for stream in sorted(groups):
        cols = {k: [] for k in ("on", "off", "pitch", "velocity", "p_on", "p_off")}
        for track in groups[stream]:
            if len(track.notes):
                n = track.notes.numpy()
                cols["on"].append(n["time"].astype(np.int64))
                cols["off"].append(n["time"].astype(np.int64) + n["duration"].astype(np.int64))
                cols["pitch"].append(n["pitch"].astype(np.int64))
                cols["velocity"].append(n["velocity"].astype(np.int64))
            start, duration = sustain_intervals(track)
            cols["p_on"].append(start)
            cols["p_off"].append(start + duration)
        joined = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in cols.items()}
        if not joined["on"].size and not joined["p_on"].size:
            continue
        out.append(PlaybackStream(
            program=stream % DRUM_OFFSET, is_drum=stream >= DRUM_OFFSET,
            note_on=ticks_to_seconds(score, joined["on"]), note_off=ticks_to_seconds(score, joined["off"]),
            pitch=joined["pitch"], velocity=joined["velocity"],
            pedal_on=ticks_to_seconds(score, joined["p_on"]), pedal_off=ticks_to_seconds(score, joined["p_off"]),
        ))
    return out
