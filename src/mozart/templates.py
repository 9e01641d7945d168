"""The mask of regeneration: a span of bars written around a bar layout and notes that must stay.

Infilling and accompaniment (rewrite.py) sample a *span* of bars after a prompt.  Inside it:

- the bar layout is the source's: every bar has the source's length and time signature (a bar
  the source cuts short before a time-signature change is cut at the same step);
- tempo and pedal words are never written (the source's tempo map and pedal are kept when the
  result is put together);
- the notes that must stay (accompaniment's source notes) are *forced*: a queue in canonical
  order, and at each step only the words that lead to the next forced note, or to a new note
  that canonical order lets stand before it, are allowed;
- new notes only use the requested streams (program + 128 for drum kits), each within its
  instrument's usual range (``instruments.pitch_range``).

``SpanConstraint`` has ``masks.Constraint``'s interface (``allowed`` -> mask and "may end",
``advance``), so ``masks.GrammarLogitsProcessor`` drives it.  Here "may end" means *the span
is complete*: the sampling loop stops on ``<eos>`` or on the ``Bar`` that would begin the next
bar, so a model that never learned to end a middle still ends it where the bar ends.
"""

from __future__ import annotations

import numpy as np

from .events import DRUM_OFFSET
from .grammar import GrammarState
from .instruments import pitch_range
from .masks import CLOSING_MARGIN, keep_new_notes_short, unison_full
from .register import DISSONANT
from .tokens import HI_BASE, TYPES

#: Most words one new note takes (position digits, program, pitch, velocity, one duration digit and
#: its low digit) plus the program word back to the forced notes' stream: what a bar to fill reserves.
FILL_WORDS = 8
#: Columns of a note table: onset step, stream, pitch, duration, velocity (canonical sort order).
ONSET, STREAM, PITCH, DURATION, VELOCITY = range(5)


def note_words(durations: np.ndarray, lo_base: int) -> np.ndarray:
    """Most words each note can take: position, program, pitch, velocity, duration digits."""
    high = np.asarray(durations) // lo_base
    digits = np.zeros(high.shape, dtype=np.int64)
    while np.any(high > 0):
        digits += high > 0
        high = high // HI_BASE
    return 5 + digits


class SpanConstraint:
    """The grammar, the bar layout, the forced notes and the allowed new streams, for one span.

    ``state`` has read the prompt (a canonical prefix: header and ``prompt_bars`` bars, whose
    trailing empty bars may be missing); the span is the next ``span_bars`` bars.
    ``bar_starts[k]`` is the start step of bar k + 1 (one more entry than bars, the last one
    the end of the span), ``bar_ts[k]`` the packed time signature of bar k + 1.  ``forced``
    is a note table (rows sorted canonically) on the same step axis.  ``fill_last``: the span's
    last bar must get a note (it is the piece's last bar and nothing else starts in it, so the
    piece keeps its bar count).  ``fill_every_bar`` (accompaniment): every new stream must get at
    least one note in every bar of the span, entering on the bar's downbeat where that is still
    open, so each added part plays in every bar (left free, the model adds a part in a bar or two
    and then leaves it: its training pieces bring their instruments in at the start, never in the
    middle).  ``ranges`` overrides the usual range of a stream (a stand-in keeps to the range of the
    program it stands in for).  ``bounds`` (accompaniment, register.py): the (lowest, highest) pitch a
    new melodic note may start on at each step of the same axis, where that leaves its range a pitch.
    ``lowest_part`` (accompaniment, register.py): the new stream that is the bass of the new parts; its
    new notes start under the other new parts' notes sounding then, and theirs over its, where that
    leaves a pitch, and ``bass_below`` semitones further under the upper bound of ``bounds`` where that
    leaves one (register below: the bass an octave under the melody).  ``clashes`` (accompaniment,
    consonant harmony, register.py): the pitch classes dissonant with a kept note sounding at each step;
    a new note starts on none of them nor on one dissonant with another new note sounding then, where
    that leaves a pitch.  ``beats`` (accompaniment, ``fill`` beat, register.beat_steps): the steps of the
    span's beats, on each of which every new melodic stream sounds, with a note that starts there or is
    held through it: the position does not move past a beat where one is silent, and there the silent
    ones enter (the lowest first, other new streams before it as canonical order allows).  ``held``:
    note-table rows of the new streams' notes from before the span (earlier chunks) that sound into it,
    on the same axis.  The closing budget keeps room for a note per beat and silent stream still to come
    (``FILL_WORDS`` each)."""

    def __init__(self, state: GrammarState, prompt_bars: int, span_bars: int, bar_starts: np.ndarray,
                 bar_ts: np.ndarray, forced: np.ndarray, new_streams, fill_last: bool = False,
                 fill_every_bar: bool = False, ranges: dict[int, tuple[int, int]] | None = None,
                 bounds: np.ndarray | None = None, lowest_part: int | None = None, clashes: np.ndarray | None = None,
                 beats: np.ndarray | None = None, held: np.ndarray | None = None, bass_below: int = 0):
        self.state = state
        self.bass_below = bass_below
        self.beats = None if beats is None else np.asarray(beats, dtype=np.int64)
        self._due_here: tuple[int, np.ndarray] | None | bool = False  # _due() until the next word (False: unknown)
        self.bounds = bounds
        self.clashes = clashes
        self.lowest_part = lowest_part
        self.new_notes: list[tuple[int, int, int, int]] = [  # (onset, end, stream, pitch) of new notes that may sound
            (int(n[ONSET]), int(n[ONSET] + n[DURATION]), int(n[STREAM]), int(n[PITCH]))
            for n in (np.zeros((0, 5), np.int64) if held is None else held)]
        self.ranges = ranges or {}  # stream -> (lowest, highest) new pitch, where not its own range (standins.py)
        self.prompt_bars, self.target_bars = prompt_bars, prompt_bars + span_bars
        if bar_starts.size < self.target_bars + 1:
            raise ValueError("the bar layout must cover the span")
        self.bar_starts, self.bar_ts = bar_starts, bar_ts
        order = np.lexsort(forced.T[::-1]) if forced.size else np.zeros(0, dtype=np.int64)
        self.forced = forced.reshape(-1, 5)[order]
        v = state.vocab
        self.new_streams = np.zeros(256, dtype=bool)
        self.new_streams[list(new_streams)] = True
        # kept notes of a requested stream (a part the source has too) sound for it on the beats they cover
        kept = self.forced[self.new_streams[self.forced[:, STREAM]]]
        self.kept_cover = (kept[:, ONSET], kept[:, ONSET] + kept[:, DURATION], kept[:, STREAM])
        self.new_melodic = self.new_streams.copy()  # the streams ``beats`` applies to
        self.new_melodic[DRUM_OFFSET:] = False
        self.type_ids = {t: np.flatnonzero(v.type_of == i) for i, t in enumerate(TYPES)}
        self.never = np.zeros(len(v), dtype=bool)
        for t in ("TempoHi", "Tempo", "TempoFrac", "Pedal"):
            self.never[self.type_ids[t]] = True
        costs = note_words(self.forced[:, DURATION], v.lo_base)
        self.cost_after = np.concatenate([np.cumsum(costs[::-1])[::-1], [0]])  # words of forced[i:]
        self.fill_last, self.fill_every_bar = fill_last, fill_every_bar
        self.new_in_bar: dict[int, set[int]] = {}  # bar (GrammarState.bars) -> streams with a new note there
        self._owing_here: np.ndarray | None = None  # _owing() until the next word: asked many times per step
        self.next = 0  # index of the next forced note
        self.forcing = False  # the note being spelled is forced[next]
        self.notes: list[tuple[int, int, int, int, int]] = []  # notes written in the span

    # ------------------------------------------------------------------ where we are

    def _pending(self) -> np.ndarray | None:
        return self.forced[self.next] if self.next < len(self.forced) else None

    def _forced_here(self) -> bool:
        """Whether the next forced note sits at the current position (it must come before any move)."""
        f, s = self._pending(), self.state
        return f is not None and s.now >= 0 and f[ONSET] == s.now

    def _bar_end(self) -> int:
        """Start step of the bar after the current one."""
        return int(self.bar_starts[self.state.bars])

    def _cut_at(self) -> int | None:
        """Position where the current bar is cut short, or None when it runs its full length."""
        s = self.state
        length = self._bar_end() - int(self.bar_starts[s.bars - 1])
        return length if length < s.bar_len else None

    def _bar_may_end(self) -> bool:
        """Whether the current bar may close here (the next word being ``Bar``)."""
        s = self.state
        if s.bars == 0:
            return True
        f = self._pending()
        if f is not None and f[ONSET] < self._bar_end():
            return False  # forced notes of this bar are still to come
        if self._due() is not None:
            return False  # a beat where a new part would be silent
        if self._must_fill():
            return False
        cut = self._cut_at()
        if cut is None:
            return s.prev != "Pos"
        return s.prev == "Pos" and s.last_pos == cut

    def _must_fill(self) -> bool:
        """Whether the current bar still needs a note: the piece's last bar (``fill_last``), or a
        new stream without a note in this bar of the span while one still fits (``fill_every_bar``)."""
        s = self.state
        if self._owes_new_note() and self._room_for_new():
            return True
        return self.fill_last and s.bars == self.target_bars and \
            not any(n[0] >= self.bar_starts[s.bars - 1] for n in self.notes[-1:])

    def _owes_downbeat(self) -> bool:
        """Whether the current position must stay the bar's first step until the streams that owe
        this bar a note have entered: ``fill_every_bar``, and position 0 still open to one of them
        (not yet left, and an owing stream after the one just written there).  A bass or a pad that
        enters on the downbeat hears the harmony there first (forced notes of lower streams are
        written before it)."""
        s = self.state
        if not self._owes_new_note():
            return False
        if s.last_pos < 0:
            return s.prev != "PosHi"
        return s.last_pos == 0 and s.prev == "Dur" and self._owing_after_current()

    def _owing(self) -> np.ndarray:
        """Per stream: whether it is a new stream still owing the current bar of the span a note
        (``fill_every_bar``; all False outside the span), or a silent one owing the beat at the current
        position (``beats``)."""
        if self._owing_here is None:
            s = self.state
            owing = np.zeros_like(self.new_streams)
            if self.fill_every_bar and self.prompt_bars < s.bars <= self.target_bars:
                owing[:] = self.new_streams
                owing[list(self.new_in_bar.get(s.bars, ()))] = False
            due = self._due_now()
            if due is not None:
                owing |= due
            self._owing_here = owing
        return self._owing_here

    def _sounding_at(self, steps: np.ndarray) -> np.ndarray:
        """(steps, 256): whether a note of each stream sounds at each of ``steps`` (the current step or later
        ones: ``new_notes`` keeps every new note that may still sound; kept notes of new streams count too)."""
        sounding = np.zeros((steps.size, 256), dtype=bool)
        onset, end, stream = self.kept_cover
        rows, notes = np.nonzero((steps[:, None] >= onset) & (steps[:, None] < end))
        sounding[rows, stream[notes]] = True
        for onset, end, stream, _ in self.new_notes:
            sounding[(steps >= onset) & (steps < end), stream] = True
        return sounding

    def _due(self) -> tuple[int, np.ndarray] | None:
        """The first beat of the current bar, from the current position on, where a new melodic stream is
        silent: (its position in the bar, the silent streams that may still enter there: at the current
        position, those after the streams already written there); None where there is none or outside
        the span."""
        if self._due_here is False:
            self._due_here = None
            s = self.state
            if self.beats is not None and self.prompt_bars < s.bars <= self.target_bars:
                start = int(self.bar_starts[s.bars - 1])
                here = start + max(s.last_pos, 0)
                low = self._open_from()
                first, stop = np.searchsorted(self.beats, [here, self._bar_end()])
                beats = self.beats[first:stop]
                for beat, sounding in zip(beats, self._sounding_at(beats)):
                    silent = self.new_melodic & ~sounding
                    if beat == here:
                        silent[:low] = False
                    if silent.any():
                        self._due_here = (int(beat) - start, silent)
                        break
        return self._due_here

    def _due_now(self) -> np.ndarray | None:
        """Per stream: the silent new streams that must enter at the current position, a beat (None if
        it is not one where a stream is due)."""
        due, s = self._due(), self.state
        if due is None or due[0] != max(s.last_pos, 0) or (s.last_pos < 0 and s.prev == "PosHi"):
            return None
        return due[1]

    def _owes_new_note(self) -> bool:
        """Whether a new stream still owes the current bar of the span a note."""
        return bool(self._owing().any())

    def _at_downbeat(self) -> bool:
        """Whether the current position is the bar's first step (written, or implied before any Pos word)."""
        s = self.state
        return s.last_pos == 0 or (s.last_pos < 0 and s.prev != "PosHi")

    def _last_free(self) -> int:
        """The bar's last position a note may take (before its cut, if it is cut short)."""
        start = int(self.bar_starts[self.state.bars - 1])
        cut = self._cut_at()
        return (cut if cut is not None else self._bar_end() - start) - 1

    def _owing_strict(self) -> bool:
        """Whether the streams owing the bar a note take precedence here: at its downbeat (where they
        enter) and at its last free position (their last chance), no other new stream, and they come
        before a forced note of a higher stream."""
        s = self.state
        return self._owes_new_note() and (self._at_downbeat() or s.last_pos == self._last_free())

    def _next_owing(self) -> np.ndarray:
        """Per stream: whether it is the lowest owing stream that may still come at this position
        (canonical order: after the streams already written here).  Where owing streams take
        precedence only it may: choosing a higher one would shut the lower out of this position."""
        low = self._open_from()
        out = np.zeros_like(self.new_streams)
        out[np.flatnonzero(self._owing()[low:])[:1] + low] = True
        return out

    def _open_from(self) -> int:
        """The lowest stream that may still begin an owed note at the current position (canonical order):
        inside a note, its stream's (a lower one can no longer come here); after a note, the next stream;
        else (a position or a bar just begun) any."""
        s = self.state
        if s.prev == "Dur":
            return s.stream + 1
        return max(s.stream, 0) if s.prev in ("Prog", "Drums", "Pitch", "Vel", "DurHi") else 0

    def _owing_after_current(self) -> bool:
        """Whether an owing stream may still come at the current position (canonical order: after this one)."""
        return bool(self._owing()[self.state.stream + 1:].any())

    def _room_for_new(self) -> bool:
        """Whether a new note still fits in the current bar: a later position, or (notes of a
        stream just written) a new stream after it at the same position; while forced notes of the
        bar are still to come, the bar cannot end anyway, so this is asked again after them."""
        s = self.state
        return s.last_pos < self._last_free() or (s.prev == "Dur" and self._owing_after_current())

    def _positions(self, allow_new: bool) -> tuple[int, int, int | None]:
        """(lowest, highest) position new notes may take in this bar, and the one forced
        position (or the cut) that must come; lowest > highest when none is free."""
        s = self.state
        start = int(self.bar_starts[s.bars - 1])
        f = self._pending()
        cut = self._cut_at()
        end = self._bar_end()
        target = None
        if f is not None and f[ONSET] < end:
            target = int(f[ONSET]) - start
        elif cut is not None:
            target = cut
        highest = (target - 1 if target is not None else end - start - 1) if allow_new else -1
        due = self._due()
        if due is not None and due[0] > s.last_pos and (target is None or target > due[0]):
            # no move past a beat where a new part is silent: it is the position that must come
            highest, target = min(highest, due[0] - 1), due[0]
        return s.last_pos + 1, highest, target

    # ------------------------------------------------------------------ the mask

    def closing(self, budget_left: int) -> bool:
        """Whether the budget only leaves room for the words that must come."""
        bars_left = self.target_bars - self.state.bars
        return budget_left <= int(self.cost_after[self.next]) + 3 * bars_left \
            + FILL_WORDS * (self._bars_to_fill() + self._beats_to_fill()) + 6 + CLOSING_MARGIN

    def _bars_to_fill(self) -> int:
        """New notes ``fill_every_bar`` still owes from the current bar on: one per new stream and bar."""
        if not self.fill_every_bar:
            return 0
        first = max(self.state.bars, self.prompt_bars + 1)
        parts = int(self.new_streams.sum())
        return sum(parts - len(self.new_in_bar.get(bar, ())) for bar in range(first, self.target_bars + 1))

    def _beats_to_fill(self) -> int:
        """Notes ``beats`` may still need from the current position on: one per beat and new melodic
        stream not sounding there (at most: a held note may cover the beats after it)."""
        if self.beats is None:
            return 0
        s = self.state
        if s.bars <= self.prompt_bars:
            here = int(self.bar_starts[self.prompt_bars])
        else:
            here = int(self.bar_starts[s.bars - 1]) + max(s.last_pos, 0)
        rest = self.beats[self.beats >= here]
        parts = np.flatnonzero(self.new_melodic)
        if not rest.size or not parts.size:
            return 0
        return int(rest.size * parts.size - self._sounding_at(rest)[:, parts].sum())

    def allowed(self, budget_left: int) -> tuple[np.ndarray, bool]:
        """(mask over the vocabulary, whether the span is complete here)."""
        s, ids = self.state, self.type_ids
        closing = self.closing(budget_left)
        # closing: no new notes, but one already begun (a position or program written) is finished
        begun = s.prev in ("PosHi", "Prog", "Drums") or (s.prev == "Pos" and not self._forced_here())
        allow_new = s.bars > self.prompt_bars and (not closing or begun or self._must_fill())
        mask = s.allowed() & ~self.never
        bar_ok = self._bar_may_end()
        done = bool(s.bars == self.target_bars and bar_ok and mask[ids["Bar"]].any())
        mask[ids["Bar"]] &= bar_ok
        self._mask_time_signature(mask)
        if s.bars >= 1 and s.header_done:
            self._mask_positions(mask, allow_new)
        owing, first = None, None
        due = self._due_now()
        if self._owing_strict():
            owing = self._next_owing()
            first = int(np.argmax(owing)) if owing.any() else None
        elif due is not None:  # the silent parts' beat: new notes up to the lowest of them, then it
            first = int(np.argmax(due))
            owing = self.new_streams.copy()
            owing[:s.stream + 1 if s.last_pos >= 0 and s.prev == "Dur" and not closing else first] = False
            owing[first + 1:] = False
        elif closing and self._owes_new_note():
            owing = self._owing()
        if owing is not None and first is not None and not closing and s.prev == "Dur" and s.last_pos >= 0 \
                and 0 <= s.stream < first and self.new_streams[s.stream] and s.stream != self.lowest_part:
            owing = owing.copy()
            # the stream just written may go on with its chord before the owing one (not the bass: a line)
            owing[s.stream] = True
        self._mask_streams(mask, allow_new, owing, first)
        self._mask_note(mask)
        if closing:
            mask = self._closing_mask(mask, done)
        elif self.clashes is not None:
            self._drop_sour(mask)
        return mask, done

    def _mask_time_signature(self, mask: np.ndarray) -> None:
        s, v, ts_ids = self.state, self.state.vocab, self.type_ids["TS"]
        keep = np.zeros(ts_ids.size, dtype=bool)
        if s.header_done and (s.prev == "Bar" or s.cut) and s.bars >= 2:
            wanted = int(self.bar_ts[s.bars - 1])
            if wanted != s.ts or s.cut:
                keep = v.value_of[ts_ids] == wanted
            if s.prev == "Bar" and wanted != s.ts:
                # the source's meter changes with this bar: its TS word must come now, or the bar would
                # keep the old length (and a kept note past that length could never be written)
                allowed = mask[ts_ids] & keep
                mask[:] = False
                mask[ts_ids] = allowed
                return
        mask[ts_ids] &= keep

    def _pos_high(self) -> int:
        """The value of the PosHi digits written just before (0 when the position has none)."""
        s = self.state
        return (s.number.high or 0) if s.number_kind == "Pos" else 0

    def _pos_values(self, pos_ids: np.ndarray) -> np.ndarray:
        """The position (steps into the bar) each of these Pos words would complete, after the PosHi
        digits already written."""
        v = self.state.vocab
        return self._pos_high() * v.lo_base + (v.value_of[pos_ids] - v.first_value["Pos"])

    def _mask_positions(self, mask: np.ndarray, allow_new: bool) -> None:
        s, v = self.state, self.state.vocab
        pos, hi = self.type_ids["Pos"], self.type_ids["PosHi"]
        if self._forced_here():  # forced notes here come first
            mask[pos] = mask[hi] = False
            return
        if self._owes_downbeat():  # position 0 (or, already there, no move before the new note)
            mask[hi] = False
            mask[pos] &= self._pos_values(pos) == 0
            return
        if s.last_pos >= 0 and self._due_now() is not None:  # a beat where a silent new part enters first
            mask[pos] = mask[hi] = False
            return
        lowest, highest, target = self._positions(allow_new)
        high = self._pos_high()
        values = self._pos_values(pos)
        ok = (values >= lowest) & (values <= highest)
        if target is not None:
            ok |= values == target
        mask[pos] &= ok
        digits = high * HI_BASE + (v.value_of[hi] - v.first_value["PosHi"])
        first, last = digits * v.lo_base, digits * v.lo_base + v.lo_base - 1  # positions one Pos word away
        reach = (last >= lowest) & (first <= highest)
        if target is not None:
            reach |= (first <= target) & (target <= last)
        mask[hi] &= reach
        cut = self._cut_at()
        if s.prev == "Pos" and cut is not None and s.last_pos == cut:  # the cut: only Bar may follow
            only = mask[self.type_ids["Bar"]].copy()
            mask[:] = False
            mask[self.type_ids["Bar"]] = only

    def _mask_streams(self, mask: np.ndarray, allow_new: bool, owing: np.ndarray | None = None,
                      first: int | None = None) -> None:
        """Streams and pitches: new notes only in the new streams (only in ``owing`` where given: the
        streams that owe the bar or the beat a note take precedence, or a closing budget goes to what
        must come), each in its instrument's range; the forced note's stream and pitch where it is due,
        after the owing stream ``first`` where that stream is lower."""
        s, v = self.state, self.state.vocab
        f, here = self._pending(), self._forced_here()
        new_streams = self.new_streams if owing is None else owing
        owing_first = here and first is not None and first < f[STREAM]
        for t in ("Prog", "Drums"):
            t_ids = self.type_ids[t]
            streams = v.value_of[t_ids]
            ok = new_streams[streams] & allow_new
            if here:
                ok = (ok & (streams < f[STREAM])) | ((streams == f[STREAM]) & (not owing_first))
            mask[t_ids] &= ok
        pitch_ids = self.type_ids["Pitch"]
        if not mask[pitch_ids].any():
            return
        g = s.stream
        pitches = v.value_of[pitch_ids]
        new_ok = np.zeros(pitches.size, dtype=bool)
        # a stream just chosen keeps its note (it was allowed then); one carried over from before obeys ``owing``
        pool = new_streams if s.prev not in ("Prog", "Drums") else self.new_streams
        if allow_new and g >= 0 and pool[g] and not (g == self.lowest_part and s.prev == "Dur"):
            # (the bass of the new parts is a line: no second new note of it at one position)
            new_ok, sweet = self._new_pitches(g, pitches, unison_full(s))
            if sweet is not None and not (sweet & mask[pitch_ids]).any() and self._owing()[g]:
                # a part that must play here (its bar's note, a beat): consonant out of the parts' order
                # (a piano note under a high bass) rather than dissonant (a semitone over it)
                sweet = self._new_pitches(g, pitches, unison_full(s), ordered=False)[1]
            if sweet is not None and (sweet & mask[pitch_ids]).any():
                new_ok = sweet  # (else dissonant pitches stay, and _drop_sour skips them if it can)
        if here and g == f[STREAM] and owing_first:
            ok = np.zeros(pitches.size, dtype=bool)  # the owing stream first: a Prog word to it
        elif here and g == f[STREAM]:
            ok = (pitches == f[PITCH]) | (new_ok & (pitches < f[PITCH]))
        elif here and g > f[STREAM]:
            ok = np.zeros(pitches.size, dtype=bool)  # a higher stream here would pass the forced one
        else:
            ok = new_ok
        mask[pitch_ids] &= ok

    def _new_pitches(self, g: int, pitches: np.ndarray, full: int | None = None,
                     ordered: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(the pitches a new note of stream ``g`` may start on now, the consonant ones among them or None
        without consonant harmony): its range, less ``full`` (unison_full), then each rule that leaves a
        pitch: the register's bounds, the order of the new parts (else the pitches before that rule; not
        with ``ordered`` False)."""
        now = max(self.state.now, 0)
        low, high = self.ranges.get(g) or pitch_range(g)  # new notes keep to the instrument's range
        ok = (pitches >= low) & (pitches <= high)
        if full is not None:  # no third new note on one key at one step (forced ones are kept as they are)
            ok &= pitches != full
        if g >= DRUM_OFFSET:
            return ok, None
        if self.bounds is not None and len(self.bounds):
            below, above = self.bounds[min(now, len(self.bounds) - 1)]
            placed = ok & (pitches >= below) & (pitches <= above)
            if g == self.lowest_part and self.bass_below:
                deeper = placed & (pitches <= above - self.bass_below)
                placed = deeper if deeper.any() else placed
            ok = placed if placed.any() else ok  # no pitch of its range there: the range alone
        if self.lowest_part is not None and ordered:
            low, high = self._part_order_bounds(g)
            in_order = ok & (pitches >= low) & (pitches <= high)
            ok = in_order if in_order.any() else ok
        if self.clashes is None or not len(self.clashes):
            return ok, None
        clash = self.clashes[min(now, len(self.clashes) - 1)].copy()
        for stream, pitch in self._new_sounding():
            if stream < DRUM_OFFSET:
                clash[(pitch + DISSONANT) % 12] = True
        return ok, ok & ~clash[pitches % 12]

    def _drop_sour(self, mask: np.ndarray) -> None:
        """Consonant harmony, once the mask is built: no dissonant new note where anything else may come.
        Where the current new stream has only dissonant pitches left (canonical order wants a higher one
        than any consonant), its note is skipped, and a Prog word to a new stream with no consonant pitch
        now is too (it plays later); never a part that still owes the bar its note, never a kept note."""
        s, v = self.state, self.state.vocab
        pitch_ids, prog_ids = self.type_ids["Pitch"], self.type_ids["Prog"]
        pitches = v.value_of[pitch_ids]
        owing, f = self._owing(), self._pending()
        drop = np.zeros_like(mask)
        g = s.stream
        kept_due = self._forced_here() and f is not None and g == f[STREAM]
        if mask[pitch_ids].any() and 0 <= g < DRUM_OFFSET and self.new_streams[g] and not owing[g] \
                and not kept_due and s.prev not in ("Prog", "Drums"):
            sweet = self._new_pitches(g, pitches)[1]
            if sweet is not None and not (sweet & mask[pitch_ids]).any():
                drop[pitch_ids] = True
        if s.prev not in ("Prog", "Drums"):
            for word in prog_ids[mask[prog_ids]]:
                stream = int(v.value_of[word])
                if self.new_streams[stream] and not owing[stream] and not (f is not None and stream == f[STREAM]):
                    sweet = self._new_pitches(stream, pitches)[1]
                    drop[word] = sweet is not None and not sweet.any()
        if drop.any() and (mask & ~drop).any():
            mask &= ~drop

    def _new_sounding(self) -> list[tuple[int, int]]:
        """(stream, pitch) of the new notes sounding at the current step."""
        now = self.state.now
        self.new_notes = [n for n in self.new_notes if n[1] > now]  # steps only go forward
        return [(stream, pitch) for onset, end, stream, pitch in self.new_notes if onset <= now < end]

    def _part_order_bounds(self, g: int) -> tuple[int, int]:
        """(lowest, highest) pitch of a new note of stream ``g`` that keeps the new parts in order at this
        step: the lowest part under the others' new notes sounding now, the others over its."""
        lowest, sounding = self.lowest_part, self._new_sounding()
        if g == lowest:
            others = [pitch for stream, pitch in sounding if stream != lowest and stream < DRUM_OFFSET]
            return 0, (min(others) - 1 if others else 127)
        bass = [pitch for stream, pitch in sounding if stream == lowest]
        return (max(bass) + 1 if bass else 0), 127

    def _mask_note(self, mask: np.ndarray) -> None:
        """The forced note's velocity and duration digits; otherwise at most one duration digit."""
        s, v, ids = self.state, self.state.vocab, self.type_ids
        if not self.forcing:
            keep_new_notes_short(s, mask, ids)
            return
        f = self.forced[self.next]
        if s.prev == "Pitch":
            mask[ids["Vel"]] &= v.value_of[ids["Vel"]] == f[VELOCITY]
            return
        high, low = divmod(int(f[DURATION]), v.lo_base)
        digits = []
        while high:
            high, d = divmod(high, HI_BASE)
            digits.insert(0, d)
        spelled = s.number.digits if s.number_kind == "Dur" else 0
        mask[ids["DurHi"]] &= (v.value_of[ids["DurHi"]] == digits[spelled]) if spelled < len(digits) else False
        mask[ids["Dur"]] &= (v.value_of[ids["Dur"]] == low) if spelled == len(digits) else False

    def _closing_mask(self, mask: np.ndarray, done: bool) -> np.ndarray:
        """One word: the shortest way through what must still come."""
        out = np.zeros_like(mask)
        if done:
            return out  # only the end
        v = self.state.vocab
        for t in ("Dur", "DurHi", "Vel", "TS", "Bar", "Pos", "PosHi", "Prog", "Drums", "Pitch"):
            ids = self.type_ids[t][mask[self.type_ids[t]]]
            if ids.size:
                pick = ids[np.argmin(np.abs(v.value_of[ids] - 64))] if t == "Vel" else ids[0]
                target = self._positions(False)[2] if t == "Pos" else None
                if target is not None:
                    # the forced note's (or the cut's) position, not the lowest: after a PosHi digit on the
                    # way there, new positions are open too, and the lowest would begin a new note, and
                    # again after it, until the budget ran out
                    there = ids[self._pos_values(ids) == target]
                    pick = there[0] if there.size else pick
                out[pick] = True
                return out
        return mask

    # ------------------------------------------------------------------ transitions

    def advance(self, vocab_id: int) -> None:
        s = self.state
        type_name = TYPES[int(s.vocab.type_of[vocab_id])]
        f = self._pending()
        if type_name == "Pitch" and f is not None and s.now == f[ONSET] and s.stream == f[STREAM] \
                and int(s.vocab.value_of[vocab_id]) == f[PITCH]:
            self.forcing = True
        s.advance(vocab_id)
        self._owing_here, self._due_here = None, False
        if type_name == "Dur" and not s.in_pedal and s.last_note is not None and s.prev == "Dur":
            pitch, duration, velocity = s.last_note
            self.notes.append((s.now, s.stream, pitch, duration, velocity))
            if self.forcing:
                self.next += 1
                self.forcing = False
            else:
                self.new_in_bar.setdefault(s.bars, set()).add(s.stream)
                if self.lowest_part is not None or self.clashes is not None or self.beats is not None:
                    self.new_notes.append((s.now, s.now + duration, s.stream, pitch))

    def complete(self) -> bool:
        """Whether every forced note was written and the span has all its bars."""
        return self.next == len(self.forced) and self.state.bars == self.target_bars


__all__ = ["FILL_WORDS", "SpanConstraint", "note_words"]
