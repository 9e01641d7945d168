"""Where added parts sit against the existing music (below its top line, above its bottom line, or
anywhere), what they may sound against it (consonant or free harmony) and how much of it they fill
(every beat, or every bar).

Asked for "a bass and a piano under my melody", a model left free voices the piano over the melody:
the built-in model started 71-75% of its notes at or above the pitch of a chorale's soprano
(docs/generation.md), and the melody is lost in them.  An arranger keeps an
accompaniment under the tune, and a descant over the bass.  So accompaniment bounds the pitch of
every new melodic note by the kept notes sounding where it starts:

- ``below``: at least a minor third (GAP) under the highest kept note sounding at its onset (the
  top line, the melody);
- ``above``: at least a minor third over the lowest kept note sounding at its onset (the bottom
  line, the bass);
- ``any``: no bound beyond the instrument's range.

With ``below`` or ``above`` and several new melodic parts, the one of lowest range (``lowest_part``)
is their bass, as is a bass instrument added alone: its new notes start under the other new parts'
notes sounding then, theirs over its; it is a line (one new note at a time); and under ``below`` it
keeps an octave (BASS_GAP) under the top line where its range has room.

Harmony (``consonant``, the default, or ``free``): a model of this size harmonizes badly.  Left free,
the built-in model's piano under a chorale soprano had 19% of its notes dissonant with the melody note
and 62% with another piano note sounding as they started: clusters.  Under ``consonant`` harmony a new
note does not start a second, a tritone or a seventh (octaves aside) from any note sounding then, kept
or new, where that leaves a pitch: the parts move in consonant intervals and triads.  Only onsets are
checked, so a held note may clash with a later melody note (10% of melody notes, against 42% left free;
Bach's chorale: 18%, most of them prepared).

Fill (``beat``, the default, or ``bar``): left to keep one note in every bar, the built-in model's
bass under a chorale soprano sounded on 47% of the beats and its piano on 67% (Bach's lower voices: all
of them): parts that drop out for a beat or two in every bar.  Under ``beat`` every new melodic part
sounds on every beat of the span, with a note that starts there or is held through it (``beat_steps``:
the time signature's beat, a dotted one in compound meters); under ``bar`` it plays at least one note
in every bar and may rest between.  Drum parts keep to ``bar``: a drum note is a stroke, not a held sound.

Where no kept note sounds (the melody rests), the line is where it last was; before it first
plays, where it first plays.  Drum notes neither make the line nor are bound by it.  Only the onset
is bound: a held note may sound past a later, lower melody note.  Where the bound leaves an
instrument no pitch of its range (a violin under a melody at A3), the instrument's range alone
applies there, so the part still plays (templates.SpanConstraint).
"""

from __future__ import annotations

import numpy as np

from .errors import MozartError
from .events import DRUM_OFFSET, WHOLE
from .instruments import pitch_range
from .tokens import TS_PACK

#: The choices, the default first.
REGISTERS = ("below", "above", "any")
#: What ``accompany`` does unless asked: an accompaniment goes under the melody.
DEFAULT_REGISTER = "below"
#: Semitones a new note keeps from the line: a minor third.  With one (just under the melody), the built-in
#: model's piano pressed its chords against the tune: a third of its notes a tone or a semitone under the
#: melody note and 54% of them dissonant with it (a second, seventh or tritone, octaves aside); three
#: semitones away, 24% (left free, over the tune, 42%).  Bach's lower voices in the chorale of
#: tests/data: 4% and 2% within a tone of the soprano (docs/generation.md).
GAP = 3
#: Semitones the bass of the new parts (``lowest_part``) keeps under the top line (``below``): an octave.  With GAP
#: alone the built-in model's bass under a folk tune and strings began at G4, with the strings squeezed
#: between it and the tune.
BASS_GAP = 12


def check_register(register: str) -> str:
    """``register`` if it is one of REGISTERS, else a MozartError naming them."""
    if register not in REGISTERS:
        raise MozartError(f"--register {register!r}: expected one of {', '.join(REGISTERS)}")
    return register


def _melodic(notes: np.ndarray) -> np.ndarray:
    """The rows of a note table (onset, stream, pitch, duration, velocity) that are not drum notes."""
    return notes[notes[:, 1] < DRUM_OFFSET] if notes.size else notes.reshape(-1, 5)


def _sounding(onset: int, duration: int, n_steps: int) -> slice:
    """The steps (of ``n_steps``) a note sounds at: from its onset, at least one."""
    return slice(max(onset, 0), min(onset + max(duration, 1), n_steps))


def line_bounds(notes: np.ndarray, n_steps: int, register: str) -> np.ndarray | None:
    """The (lowest, highest) pitch a new melodic note may start on at each of ``n_steps`` steps,
    as an (n_steps, 2) array, given the kept notes' table (rows of onset, stream, pitch, duration,
    velocity); None for ``any`` or when no kept note is melodic (nothing to place new notes against)."""
    check_register(register)
    melodic = _melodic(notes)
    if register == "any" or melodic.size == 0 or n_steps <= 0:
        return None
    above = register == "above"
    # the top line is each step's highest sounding pitch: write the notes lowest first, so a higher
    # note sounding at the same step overwrites a lower one (the bottom line: highest first)
    order = np.argsort(melodic[:, 2] * (-1 if above else 1), kind="stable")
    line = np.full(n_steps, -1, dtype=np.int64)
    for onset, _, pitch, duration, _ in melodic[order]:
        line[_sounding(onset, duration, n_steps)] = pitch
    sounding = line >= 0
    if not sounding.any():
        return None
    # rests: the line stays where it last was (forward fill), and before it starts, where it starts
    last = np.maximum.accumulate(np.where(sounding, np.arange(n_steps), -1))
    line = np.where(last >= 0, line[np.maximum(last, 0)], line[np.argmax(sounding)])
    bounds = np.empty((n_steps, 2), dtype=np.int64)
    bounds[:, 0] = line + GAP if above else 0
    bounds[:, 1] = 127 if above else line - GAP
    return bounds


#: Harmony of the new parts: ``consonant`` (the default) or ``free`` (the model's own).
HARMONIES = ("consonant", "free")
DEFAULT_HARMONY = "consonant"
#: Intervals (semitones, octaves aside) a new note does not start on against a note sounding then, under
#: ``consonant`` harmony: seconds, the tritone, sevenths.
DISSONANT = np.array([1, 2, 6, 10, 11])


def check_harmony(harmony: str) -> str:
    """``harmony`` if it is one of HARMONIES, else a MozartError naming them."""
    if harmony not in HARMONIES:
        raise MozartError(f"--harmony {harmony!r}: expected one of {', '.join(HARMONIES)}")
    return harmony


def clash_classes(notes: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps, 12) booleans: the pitch classes DISSONANT with a kept melodic note sounding at each
    step (drum notes have no pitch class)."""
    clashes = np.zeros((max(n_steps, 0), 12), dtype=bool)
    for onset, _, pitch, duration, _ in _melodic(notes):
        clashes[_sounding(onset, duration, n_steps), (pitch + DISSONANT) % 12] = True
    return clashes


#: How much of the span each new part fills: ``beat`` (the default), sounding on every beat, or ``bar``,
#: one note or more in every bar.
FILLS = ("beat", "bar")
DEFAULT_FILL = "beat"


def check_fill(fill: str) -> str:
    """``fill`` if it is one of FILLS, else a MozartError naming them."""
    if fill not in FILLS:
        raise MozartError(f"--fill {fill!r}: expected one of {', '.join(FILLS)}")
    return fill


def beat_length(numerator: int, denominator: int, grid: int) -> int:
    """Steps of one beat of ``numerator/denominator`` at ``grid`` steps per quarter: the denominator's
    note, or three of them in a compound meter (6/8, 9/8, 12/8, 6/4...: numerator a multiple of 3 over 3)."""
    unit = max(1, grid * WHOLE // denominator)
    return unit * 3 if numerator > 3 and numerator % 3 == 0 else unit


def beat_steps(bar_starts: np.ndarray, bar_ts: np.ndarray, grid: int) -> np.ndarray:
    """The step of every beat of the bars whose starts (and then the end of the last) are ``bar_starts``
    and whose packed time signatures (numerator * TS_PACK + denominator) are ``bar_ts``; a bar cut short
    has its beats up to the cut."""
    beats = [np.arange(int(start), int(end), beat_length(int(ts) // TS_PACK, int(ts) % TS_PACK, grid))
             for start, end, ts in zip(bar_starts[:-1], bar_starts[1:], bar_ts)]
    return np.concatenate(beats).astype(np.int64) if beats else np.zeros(0, dtype=np.int64)


#: The middle of a bass instrument's usual range is at or under this (D3): the basses and the contrabass
#: (28-67, middle 47.5) and the tuba (28-58); not the cello (36-76) nor the bassoon (34-75).
BASS_MIDDLE = 50


def lowest_part(streams, ranges: dict[int, tuple[int, int]] | None = None) -> int | None:
    """The new melodic stream that is the bass of the added parts: of several, the one whose range
    (``ranges``, else its instrument's) has the lowest middle, strictly (None for a tie); one alone, if it
    is a bass instrument (its range's middle at or under BASS_MIDDLE); else None."""
    melodic = [s for s in streams if s < DRUM_OFFSET]
    middles = sorted((sum((ranges or {}).get(s) or pitch_range(s)) / 2, s) for s in melodic)
    if not middles:
        return None
    if len(middles) == 1:
        return middles[0][1] if middles[0][0] <= BASS_MIDDLE else None
    return middles[0][1] if middles[0][0] < middles[1][0] else None


__all__ = ["BASS_GAP", "BASS_MIDDLE", "DEFAULT_FILL", "DEFAULT_HARMONY", "DEFAULT_REGISTER", "DISSONANT", "FILLS",
           "HARMONIES", "REGISTERS", "beat_length", "beat_steps", "check_fill", "check_harmony", "check_register",
           "clash_classes", "line_bounds", "lowest_part"]
