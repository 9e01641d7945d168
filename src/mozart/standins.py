"""Stand-ins: instruments a model never saw, read and written as instruments it knows.

A model learns what each program token means from its training data.  The built-in model's data have 16
programs (piano, voices, strings, a few winds); asked for an electric bass (33), which it never saw, it
wrote clusters of middle-register chords, not a bass line, and a flute melody (73) in the source threw
it off entirely (docs/generation.md).  Its cello (42) lines, on the same melodies, were bass lines.

So infilling, accompaniment and constrained generation give every program the model does not know a
*stand-in*: a program it
knows, chosen below, that the model reads and writes in its place.  The new notes keep to the
requested program's own range (``instruments.pitch_range``), and the result names the requested
programs again: the model's view changes, not the piece.  A model folder says which programs it knows
in ``tokenizer_config.json`` (``mozart_programs``, the programs of its training split, written by
``mozart dataset``); a folder without the list gets no stand-ins.

The choice, for each unknown melodic program in turn (ascending), among the known programs that no
other stream of the piece uses: one of the same General MIDI family of eight (pianos, basses, brass...)
if there is one, else the melodic program whose usual range has the nearest middle (a bass, MIDI 28-67,
gets the cello, 36-76); percussion (chromatic percussion, timpani, programs 112-127) stands in only for
percussion; ties go to the lower program.  Drum kits are never replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from .events import DRUM_OFFSET, Piece
from .instruments import pitch_range

#: Programs that sound as percussion: chromatic percussion, timpani, percussive and sound effects.
PERCUSSIVE = frozenset(range(8, 16)) | {47} | frozenset(range(112, 128))


def _middle(program: int) -> float:
    low, high = pitch_range(program)
    return (low + high) / 2


def stand_ins(known: Iterable[int] | None, streams: Iterable[int]) -> dict[int, int]:
    """``{program: stand-in}`` for the melodic ``streams`` (every stream in play: the source's and the
    requested ones) that are not in ``known``; empty when ``known`` is None.  A program is left as it is
    when no known program is free."""
    if known is None:
        return {}
    known, streams = frozenset(known), sorted(set(streams))
    taken = set(streams)
    chosen: dict[int, int] = {}
    for program in streams:
        if program >= DRUM_OFFSET or program in known:
            continue
        free = [k for k in sorted(known - taken) if (k in PERCUSSIVE) == (program in PERCUSSIVE)]
        if not free:
            continue
        family = [k for k in free if k // 8 == program // 8]
        best = min(family or free, key=lambda k: (abs(_middle(k) - _middle(program)), k))
        chosen[program] = best
        taken.add(best)
    return chosen


def stand_in_ranges(mapping: dict[int, int]) -> dict[int, tuple[int, int]]:
    """``{stand-in: (lowest, highest)}``: each stand-in's new notes keep to the usual range of the program it
    stands in for."""
    return {stand_in: pitch_range(program) for program, stand_in in mapping.items()}


def inverse(mapping: dict[int, int]) -> dict[int, int]:
    """The renaming that takes a piece in the model's view back to the requested programs."""
    return {stand_in: program for program, stand_in in mapping.items()}


def restream(piece: Piece, mapping: dict[int, int]) -> Piece:
    """``piece`` with its notes' and pedals' streams renamed by ``mapping`` (the others unchanged)."""
    if not mapping:
        return piece
    table = np.arange(2 * DRUM_OFFSET, dtype=np.int64)
    for old, new in mapping.items():
        table[old] = new
    return replace(piece, note_stream=table[piece.note_stream], pedal_stream=table[piece.pedal_stream])


__all__ = ["PERCUSSIVE", "inverse", "restream", "stand_in_ranges", "stand_ins"]
