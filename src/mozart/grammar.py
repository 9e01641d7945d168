"""The token grammar, incrementally: which words may come next after a prefix.

``GrammarState`` follows a piece token by token and answers ``allowed()`` (a boolean mask
over the vocabulary) and ``can_end()``.  It is driven by the same type table as
``check`` (``tokens.GRAMMAR``) plus the value rules (``tokens.RULES``), so every text
built only from allowed words, and ended only where ``can_end()`` holds, passes
``check``; and every canonical text is allowed word by word.  The constrained sampler
(generation) masks logits with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np

from .events import CENTI_MINUTE_US, DRUM_OFFSET, bar_steps
from .tokens import (
    FORMAT_VERSION,
    GRAMMAR,
    HI_BASE,
    MAX_HI_DIGITS,
    MAX_PLAIN_TEMPO_QPM,
    MIN_TEMPO_CENTI,
    TEMPO_BASE,
    TS_PACK,
    TYPES,
    Vocabulary,
    tempo_representable,
    vocabulary,
)

#: Every whole-qpm tempo below this has all its hundredths representable in MIDI.
_ALL_REPRESENTABLE_BELOW = MAX_PLAIN_TEMPO_QPM
#: Whole parts (qpm) of the representable tempos above that: one per microseconds-per-quarter value
#: (77,460 us per quarter is 774.6 qpm, where the plain range ends).
_m = np.arange(1, 77461, dtype=np.int64)
_HIGH_WHOLES = np.unique((2 * CENTI_MINUTE_US + _m) // (2 * _m) // 100)
del _m


def _some_tempo_between(lo_whole: int, hi_whole: int) -> bool:
    """Whether some representable tempo has its whole part in [lo_whole, hi_whole)."""
    lo_whole = max(lo_whole, MIN_TEMPO_CENTI // 100)  # slower tempos do not fit MIDI's 24 bits
    if lo_whole < _ALL_REPRESENTABLE_BELOW:
        return hi_whole > lo_whole
    i = np.searchsorted(_HIGH_WHOLES, lo_whole)
    return bool(i < _HIGH_WHOLES.size and _HIGH_WHOLES[i] < hi_whole)


@cache
def _wholes_that_fit(high: int) -> np.ndarray:
    """For a tempo whose high digits are ``high``: which of the TEMPO_BASE whole parts (qpm)
    some hundredths turn into a tempo MIDI can hold."""
    wholes = high * TEMPO_BASE + np.arange(TEMPO_BASE)
    return tempo_representable(np.maximum(1, wholes[:, None] * 100 + np.arange(100)[None, :])).any(axis=1)


@lru_cache(maxsize=8192)
def _digit_mask(kind: str, high: int, digits: int, a: int, b: int, base: int, last_pos: int, bar_len: int,
                min_duration: int) -> np.ndarray:
    """For each next high digit d in a..b: whether high part ``high * HI_BASE + d`` (``digits``
    digits) can be completed, with more digits or none, into a value the rules allow (a position
    after ``last_pos`` inside a bar of ``bar_len`` steps, a duration of at least ``min_duration``, a
    tempo MIDI can hold).  Read-only: callers copy it into their mask."""
    out = np.zeros(b - a + 1, dtype=bool)
    for i, d in enumerate(range(a, b + 1)):
        value = high * HI_BASE + d
        for extra in range(MAX_HI_DIGITS[kind] - digits + 1):
            scale = HI_BASE**extra * base
            lo, hi = value * scale, (value + 1) * scale - 1  # values reachable with `extra` more digits
            if (kind == "Tempo" and _some_tempo_between(lo, hi + 1)) \
                    or (kind == "Pos" and max(lo, last_pos + 1) <= min(hi, bar_len - 1)) \
                    or (kind == "Dur" and hi >= min_duration):
                out[i] = True
                break
    out.flags.writeable = False
    return out


@dataclass
class _Number:
    """A composite number being spelled: the high part so far (None before any digit)."""

    high: int | None = None
    digits: int = 0


@dataclass
class GrammarState:
    """Where a piece stands after a prefix of tokens; ``advance`` one token at a time."""

    vocab: Vocabulary
    prev: str = "Start"  # type of the last token ("Start" before any)
    header_done: bool = False
    ts: int = 0  # current time signature, packed numerator * 64 + denominator
    tempo: int = 0  # current tempo, hundredths of qpm
    bars: int = 0  # Bar tokens so far
    bar_start: int = 0  # step where the current bar starts
    last_pos: int = -1  # last position in the current bar (-1: none yet)
    now: int = -1  # absolute step of the current position (-1: none in this bar)
    cut: bool = False  # a bar was just cut ("Pos_p Bar"): a TS must follow
    stream: int = -1  # program in force (-1: none yet)
    streams_used: set[int] = field(default_factory=set)  # every program / drum kit switched to so far
    group: tuple[int, int] | None = None  # (step, stream) of the current group of notes
    last_note: tuple[int, int, int] | None = None  # (pitch, duration, velocity) last in this group
    unison: int = 0  # notes of last_note's pitch in this group (the format allows any number; samplers cap it)
    note: list[int] = field(default_factory=list)  # pitch, velocity of the note being spelled
    pedal_end: dict[int, int] = field(default_factory=dict)  # stream -> end step of its last pedal
    in_pedal: bool = False  # the Dur being spelled is a pedal's
    number: _Number = field(default_factory=_Number)  # composite number being spelled
    number_kind: str = ""  # "Pos", "Dur", "Tempo" while spelling, else ""
    tempo_whole: int = -1  # whole-qpm part of a tempo just spelled, waiting for TempoFrac
    tempo_before: int = -1  # tempo in force before the one being spelled (-1 in the header)
    ended: bool = False
    counts: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.counts = {t: int(np.count_nonzero(self.vocab.type_of == i)) for i, t in enumerate(TYPES)}

    # ------------------------------------------------------------------ queries

    @property
    def bar_len(self) -> int:
        return bar_steps(self.ts // TS_PACK, self.ts % TS_PACK, self.vocab.grid)

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary of the words that may come next."""
        v = self.vocab
        mask = np.zeros(len(v), dtype=bool)
        if self.ended:
            return mask
        for type_name in self._next_types():
            if type_name == "End":
                continue  # not a word: see can_end()
            lo, hi = self._value_bounds(type_name)
            if lo is None or (type_name.endswith("Hi") and self.number.digits >= MAX_HI_DIGITS[type_name[:-2]]):
                continue
            first, start = v.first_id[type_name], v.first_value[type_name]
            count = self.counts[type_name]
            if type_name == "TS":
                ids = np.arange(first, first + count)
                ok = v.value_of[ids] != self.ts if self.header_done else np.ones(count, bool)
                mask[ids[ok]] = True
                continue
            a, b = max(lo, start), min(hi, start + count - 1)
            if a <= b:
                mask[first + a - start: first + b - start + 1] = True
            if type_name.endswith("Hi") and a <= b:  # a digit must leave some allowed value reachable
                kind = type_name[:-2]
                high = (self.number.high or 0) if self.number_kind == kind else 0
                mask[first + a - start: first + b - start + 1] = self._digit_mask(kind, high, a, b)
            if type_name == "TempoFrac":
                fracs = np.arange(1, 100)
                mask[first: first + 99] &= tempo_representable(self.tempo_whole * 100 + fracs)
                same = self.tempo_before - self.tempo_whole * 100  # the hundredths that would not change it
                if self.tempo_before >= 0 and 1 <= same <= 99:
                    mask[first + same - start] = False
            if type_name == "Tempo":
                high = (self.number.high or 0) if self.number_kind == "Tempo" else 0
                # keep whole parts some hundredths fit (not below 3.58 qpm, nor the gaps of large tempi)
                mask[first: first + TEMPO_BASE] &= _wholes_that_fit(high)
            if type_name in ("Prog", "Drums") and self.stream >= 0 and first <= first + self.stream - start:
                if 0 <= self.stream - start < count:
                    mask[first + self.stream - start] = False  # Prog/Drums only when it changes
        return mask

    def can_end(self) -> bool:
        """Whether the piece may end here."""
        return not self.ended and "End" in self._next_types() and self._value_bounds("End")[0] is not None

    # ------------------------------------------------------------------ rules

    def _next_types(self) -> list[str]:
        if not self.header_done:
            order = {"Start": ["Format"], "Format": ["Grid"], "Grid": ["TS"], "TS": ["TempoHi", "Tempo"],
                     "TempoHi": ["TempoHi", "Tempo"]}
            return order.get(self.prev, [])
        if self.cut:
            return ["TS"]
        whole = self.tempo_whole * 100
        if self.prev == "Tempo" and (whole == 0 or whole == self.tempo_before or not tempo_representable(whole)):
            return ["TempoFrac"]  # 0 qpm, no change yet, or not a MIDI tempo: the hundredths must follow
        if self.bars == 0:  # still in the header: its tempo may take hundredths, then bars begin
            return ["TempoFrac", "Bar", "End"] if self.prev == "Tempo" else ["Bar", "End"]
        return list(GRAMMAR[self.prev])

    def _value_bounds(self, type_name: str) -> tuple[int | None, int]:
        """Inclusive value range allowed for ``type_name`` now (lo None: not allowed)."""
        big = 1 << 60
        lo_base = self.vocab.lo_base
        if type_name == "End":
            if self.prev == "Bar" or self.cut or self.number_kind:
                return None, 0
            return 0, 0
        if type_name in ("Format", "Grid"):
            return (FORMAT_VERSION, FORMAT_VERSION) if type_name == "Format" else (self.vocab.grid, self.vocab.grid)
        if type_name == "Bar":
            if self.prev == "Pos" and self.last_pos <= 0:
                return None, 0  # a bar cannot be cut at position 0
            return 0, 0
        if type_name == "TS":
            return (0, big) if not self.header_done or self.bars > 1 or self.cut else (None, 0)  # bar 1: the header's
        if type_name in ("PosHi", "Pos"):
            high = self.number.high if self.number_kind == "Pos" else None
            limit = self.bar_len - 1
            floor = self.last_pos + 1
            if type_name == "PosHi":
                return (1 if high is None else 0), HI_BASE - 1
            h = (high or 0) * lo_base
            lo, hi = max(0, floor - h), min(lo_base - 1, limit - h)
            return (lo, hi) if lo <= hi else (None, 0)
        if type_name in ("TempoHi", "Tempo"):
            if self.header_done and self.now == 0 and self.number_kind != "Tempo":
                return None, 0  # the tempo at step 0 is the header's
            high = self.number.high if self.number_kind == "Tempo" else None
            if type_name == "TempoHi":
                return (1 if high is None else 0), HI_BASE - 1
            return 0, TEMPO_BASE - 1
        if type_name == "TempoFrac":
            return 1, 99
        if type_name in ("Prog", "Drums"):
            lo, hi = (0, 127) if type_name == "Prog" else (DRUM_OFFSET, DRUM_OFFSET + 127)
            if self.group is not None and self.group[0] == self.now:
                lo = max(lo, self.group[1] + 1)
            return (lo, hi) if lo <= hi else (None, 0)
        if type_name == "Pedal":
            if self.stream < 0 or self.pedal_end.get(self.stream, -1) >= self.now:
                return None, 0
            return 0, 0  # the type table already says where a pedal may stand
        if type_name == "Pitch":
            if self.stream < 0:
                return None, 0
            if self._same_group() and self.last_note is not None:
                return self.last_note[0], 127
            return 0, 127
        if type_name == "Vel":
            if self._same_group() and self.last_note is not None and self.note[0] == self.last_note[0]:
                if self.last_note[1] >= self._max_value():  # no longer duration exists: vel must not drop
                    return self.last_note[2], 127
            return 1, 127
        if type_name in ("DurHi", "Dur"):
            high = self.number.high if self.number_kind == "Dur" else None
            if type_name == "DurHi":
                return (1 if high is None else 0), HI_BASE - 1
            need = max(1, self._min_duration())
            h = (high or 0) * lo_base
            lo = max(0, need - h)
            return (lo, lo_base - 1) if lo <= lo_base - 1 else (None, 0)
        return None, 0

    def _digit_mask(self, kind: str, high: int, a: int, b: int) -> np.ndarray:
        """Which next high digits a..b of a ``kind`` number (high part so far ``high``) can still be
        completed into a value the rules allow.  Cached on what it depends on: a sampler asks for
        the same few masks at almost every note."""
        base = TEMPO_BASE if kind == "Tempo" else self.vocab.lo_base
        # only what the rule of ``kind`` reads: the others stay fixed so the cache is shared
        last_pos, bar_len = (self.last_pos, self.bar_len) if kind == "Pos" else (0, 0)
        min_duration = self._min_duration() if kind == "Dur" else 0
        return _digit_mask(kind, high, self.number.digits + 1, a, b, base, last_pos, bar_len, min_duration)

    def _max_value(self) -> int:
        """Largest duration the format spells (MAX_HI_DIGITS high digits)."""
        return HI_BASE ** MAX_HI_DIGITS["Dur"] * self.vocab.lo_base - 1

    def _same_group(self) -> bool:
        return self.group is not None and self.group == (self.now, self.stream)

    def _min_duration(self) -> int:
        """Smallest duration keeping notes of a group in (pitch, duration, velocity) order."""
        if self.in_pedal or not self.note or not self._same_group() or self.last_note is None:
            return 1
        pitch, velocity = self.note[0], self.note[1]
        lp, ld, lv = self.last_note
        if pitch > lp:
            return 1
        return ld if velocity >= lv else ld + 1

    # ------------------------------------------------------------------ transitions

    def advance(self, token_id: int) -> None:
        """Take one token (which must be allowed)."""
        v = self.vocab
        type_name = TYPES[int(v.type_of[token_id])]
        value = int(v.value_of[token_id])
        if type_name.endswith("Hi"):
            kind = type_name[:-2]
            self.number_kind = kind
            self.number.high = (self.number.high or 0) * HI_BASE + value
            self.number.digits += 1
        elif type_name in ("Pos", "Dur", "Tempo"):
            high = self.number.high if self.number_kind == type_name else None
            base = TEMPO_BASE if type_name == "Tempo" else v.lo_base
            full = (high or 0) * base + value
            self.number, self.number_kind = _Number(), ""
            getattr(self, f"_take_{type_name.lower()}")(full)
        else:
            getattr(self, f"_take_{type_name.lower()}")(value)
        self.prev = type_name

    def _take_format(self, value: int) -> None:
        pass

    def _take_grid(self, value: int) -> None:
        pass

    def _take_ts(self, value: int) -> None:
        self.ts = value
        self.cut = False

    def _take_tempo(self, whole: int) -> None:
        self.tempo_whole = whole
        self.tempo_before = self.tempo if self.header_done else -1
        self.tempo = whole * 100
        self.header_done = True  # the header's tempo may still take TempoFrac

    def _take_tempofrac(self, value: int) -> None:
        self.tempo = self.tempo_whole * 100 + value

    def _take_bar(self, value: int) -> None:
        if self.prev == "Pos":  # "Pos_p Bar": the bar ends early at p
            self.bar_start += self.last_pos
            self.cut = True
        elif self.bars:
            self.bar_start += self.bar_len
        self.bars += 1
        self.last_pos, self.now = -1, -1
        self.tempo_whole = -1

    def _take_pos(self, position: int) -> None:
        self.last_pos = position
        self.now = self.bar_start + position
        self.tempo_whole = -1

    def _take_prog(self, value: int) -> None:
        self._switch(value)

    def _take_drums(self, value: int) -> None:
        self._switch(value)

    def _switch(self, stream: int) -> None:
        self.stream = stream
        self.streams_used.add(stream)
        self.group = (self.now, stream)
        self.last_note = None

    def _start_group_if_new(self) -> None:
        if self.group != (self.now, self.stream):
            self.group = (self.now, self.stream)
            self.last_note = None
            self.unison = 0

    def _take_pedal(self, value: int) -> None:
        self._start_group_if_new()
        self.in_pedal = True

    def _take_pitch(self, value: int) -> None:
        self._start_group_if_new()
        self.note = [value]
        self.in_pedal = False

    def _take_vel(self, value: int) -> None:
        self.note.append(value)

    def _take_dur(self, duration: int) -> None:
        if self.in_pedal:
            self.pedal_end[self.stream] = self.now + duration
            self.in_pedal = False
        else:
            same = self.last_note is not None and self.last_note[0] == self.note[0]
            self.unison = self.unison + 1 if same else 1
            self.last_note = (self.note[0], duration, self.note[1])
            self.note = []


def new_state(grid: int = 24) -> GrammarState:
    """The state before the first token of a piece at ``grid``."""
    return GrammarState(vocabulary(grid))


__all__ = ["GrammarState", "new_state"]
