"""The grammar mask of constrained sampling: which words may come next, as a logits processor.

At every step the logits of words the grammar (``grammar.GrammarState``) or the controls
forbid are set to -inf *before* temperature, top-k and top-p, so every sample passes
``check``.  Controls: exactly N new bars, only the requested programs (drums only when
allowed), a fixed tempo and time signature; and always, new notes in their instrument's range and ending by
the piece's last bar line, and parts that rest at most MAX_REST_BARS bars in a row.
When the token budget runs short, the mask switches to a closing mode that takes the shortest way to a complete piece.
The mask is a logits processor as transformers calls them (``GrammarLogitsProcessor``), usable in
our own loop (sampling.py) and inside ``model.generate`` (``hf_logits_processors``); torch and
transformers are imported only for the latter (sampling does not need them, and importing them costs seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .controls import Controls, SamplingSettings
from .events import DRUM_OFFSET, bar_steps
from .grammar import GrammarState, new_state
from .instruments import pitch_range
from .tokenizer import EOS, PAD
from .tokens import HI_BASE, TS_PACK, TYPES

#: New bars in which a piece may still bring in instruments (programs, drum kits) when the controls
#: leave them free; after them it keeps the ones it has (no fiddle tune turning into an agogo).
SETTLE_BARS = 4
#: Bars in a row a part (a stream that has sounded) may rest; in the next bar it must sound again.  Real
#: parts rarely rest: in the classical and romantic train pieces with several parts, 3.0% and 1.5% of a part's
#: bars are silent, and 163 of 191 classical rests last one or two bars; the built-in model's parts fell silent
#: for good (31% and 41% of their bars silent, docs/generation.md).
MAX_REST_BARS = 2
#: Tokens kept in reserve per missing bar (and for finishing the current note) before the
#: sampler starts closing the piece.
CLOSING_MARGIN = 12


def keep_new_notes_short(state: GrammarState, mask: np.ndarray, type_ids: dict[str, np.ndarray]) -> None:
    """A new note lasts under 32 whole notes: one high duration digit.  The first DurHi must be one a
    Dur can complete, and after a DurHi no second one while a Dur can follow; after a note that long,
    the same pitch at the same step keeps its velocity from dropping, since canonical order would then
    demand a longer note.  (A random model stacking same-pitch notes, each forced longer than the
    last, wrote 14 to 18 minutes of audio into 3 bars.)"""
    lo_base = state.vocab.lo_base
    if state.prev == "Vel":
        digits = type_ids["DurHi"]
        one_digit = (state.vocab.value_of[digits] + 1) * lo_base - 1 >= state._min_duration()
        if one_digit[mask[digits]].any():  # only when one digit can reach the shortest allowed note
            mask[digits] &= one_digit
    if state.prev == "DurHi" and mask[type_ids["Dur"]].any():
        mask[type_ids["DurHi"]] = False
    last = state.last_note
    if state.prev == "Pitch" and last is not None and state.group == (state.now, state.stream) \
            and state.note[0] == last[0] and last[1] >= HI_BASE * lo_base - 1:
        velocities = type_ids["Vel"]
        mask[velocities] &= state.vocab.value_of[velocities] >= last[2]


def end_with_the_piece(state: GrammarState, mask: np.ndarray, type_ids: dict[str, np.ndarray], room: int) -> None:
    """A new note or pedal ends within ``room`` steps, where the piece ends: its duration digits are masked to
    values up to ``room``.  A note of the same pitch as the group's last note, which canonical order makes at
    least as long (longer if its velocity drops), keeps its velocity from dropping when the last one ends
    exactly there.  When the rules leave no such duration (canonical order demands more, after a prompt's
    note that rings past the end), the mask stays as it was.  (Left free, the built-in model let 17 of 56
    samples of 16 bars ring on after their last bar, one violin note for 4.5 bars from bar 13.)"""
    v = state.vocab
    if state.prev == "Pitch":
        last = state.last_note
        if last is not None and state.group == (state.now, state.stream) and state.note[0] == last[0] \
                and last[1] == room:
            velocities = type_ids["Vel"]
            mask[velocities] &= v.value_of[velocities] >= last[2]
        return
    if state.prev not in ("Vel", "Pedal", "DurHi"):
        return
    high = (state.number.high or 0) if state.number_kind == "Dur" else 0
    digits, lows = type_ids["DurHi"], type_ids["Dur"]
    # a high digit's shortest completion is itself followed by Dur_0
    digits_ok = mask[digits] & ((high * HI_BASE + v.value_of[digits]) * v.lo_base <= room)
    lows_ok = mask[lows] & (high * v.lo_base + v.value_of[lows] <= room)
    if digits_ok.any() or lows_ok.any():
        mask[digits], mask[lows] = digits_ok, lows_ok


#: Most new notes of one pitch at one step in one instrument.  Two is a unison of two voices, as chorales
#: write (bwv66.6 has 9 in 163 notes); beyond it the notes are one sound (FluidSynth cuts a key's voice at
#: its next note-on), and a model caught in a loop wrote 44 bass notes on one key at one step.
MAX_UNISON = 2


def unison_full(state: GrammarState) -> int | None:
    """The pitch that a new note may not take now (its group already has MAX_UNISON of it), or None."""
    if state.last_note is not None and state.unison >= MAX_UNISON and state.group == (state.now, state.stream):
        return state.last_note[0]
    return None


@dataclass
class Constraint:
    """The grammar plus the controls, for one sample."""

    state: GrammarState
    controls: Controls
    target_bars: int  # Bar tokens the finished piece has
    prompt_bars: int = 0  # bars the prompt owns: nothing new may be written into them
    # stream -> (lowest, highest) pitch the prompt gave it: a part that a prompt plays outside its instrument's
    # usual range may go on where it is
    prompt_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    type_ids: dict[str, np.ndarray] = field(init=False)  # vocabulary ids of each token type
    never: np.ndarray = field(init=False)  # words the controls forbid everywhere
    after_header: np.ndarray = field(init=False)  # words the controls forbid once the header is written
    only_bar: np.ndarray = field(init=False)  # the Bar word alone
    stream_ids: np.ndarray = field(init=False)  # the Prog and Drums words
    stream_values: np.ndarray = field(init=False)  # the stream (GrammarState.stream) each one switches to
    # (the streams used, the Prog/Drums words that would bring in another): np.isin over them at every step cost
    # 0.13 ms, half of a row's mask; the set changes only when a piece brings in an instrument
    settled: tuple[frozenset, np.ndarray] | None = field(init=False, default=None)
    pitch_ids: np.ndarray = field(init=False)  # the Pitch words
    pitch_values: np.ndarray = field(init=False)  # the pitch each one spells
    out_of_range: dict[int, np.ndarray] = field(init=False)  # stream -> Pitch words its new notes may not take
    ts_lengths: np.ndarray = field(init=False)  # the bar length of each TS word, in steps
    sounding_until: int = field(init=False, default=0)  # the step where the last new note or pedal ends
    # stream -> the last bar (GrammarState.bars) in which one of its notes sounds, the prompt's included
    heard: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v, c = self.state.vocab, self.controls
        self.type_ids = {t: np.flatnonzero(v.type_of == i) for i, t in enumerate(TYPES)}
        # what the controls forbid, computed once: sampling asks every token
        self.never = np.zeros(len(v), dtype=bool)
        if c.programs is not None:
            progs = self.type_ids["Prog"]
            self.never[progs[~np.isin(v.value_of[progs], np.asarray(c.programs))]] = True
        if not c.drums:
            self.never[self.type_ids["Drums"]] = True
        self.after_header = np.zeros(len(v), dtype=bool)
        if c.tempo is not None:  # the given header tempo holds: no hundredths added, no changes
            for t in ("Tempo", "TempoHi", "TempoFrac"):
                self.after_header[self.type_ids[t]] = True
        if c.time_signature is not None:  # no changes, and so no bar cut short for one
            self.after_header[self.type_ids["TS"]] = True
        self.only_bar = np.zeros(len(v), dtype=bool)
        self.only_bar[self.type_ids["Bar"]] = True
        self.stream_ids = np.concatenate([self.type_ids["Prog"], self.type_ids["Drums"]])
        self.stream_values = v.value_of[self.stream_ids]
        self.pitch_ids = self.type_ids["Pitch"]
        self.pitch_values = v.value_of[self.pitch_ids]
        self.out_of_range = {}  # filled as streams come in (_out_of_range)
        ts = v.value_of[self.type_ids["TS"]]
        self.ts_lengths = bar_steps(ts // TS_PACK, ts % TS_PACK, v.grid)

    def allowed(self, budget_left: int) -> tuple[np.ndarray, bool]:
        """(mask over the vocabulary, whether the piece may end now)."""
        s, c = self.state, self.controls
        mask = s.allowed()
        bar_now = mask[self.type_ids["Bar"]].any()
        if s.header_done and s.bars <= self.prompt_bars and bar_now:  # close the prompt's bars first
            return mask & self.only_bar, False
        if s.bars >= self.target_bars:
            mask[self.type_ids["Bar"]] = False  # exactly the requested bars
        mask &= ~self.never
        if c.programs is None and s.streams_used and s.bars > self.prompt_bars + SETTLE_BARS:
            # the instruments have settled: only those the piece already has
            used = frozenset(s.streams_used)
            if self.settled is None or self.settled[0] != used:
                self.settled = (used, self.stream_ids[~np.isin(self.stream_values, list(used))])
            mask[self.settled[1]] = False
        keep_new_notes_short(s, mask, self.type_ids)
        if s.now >= 0:
            end_with_the_piece(s, mask, self.type_ids, self._piece_end() - s.now)
        self._keep_the_end_after_new_notes(mask)
        full = unison_full(s)
        if full is not None:
            mask[self.pitch_ids[self.pitch_values == full]] = False
        if s.stream >= 0:
            mask[self._out_of_range(s.stream)] = False
        if s.header_done:
            mask &= ~self.after_header
            if c.time_signature is not None and s.prev == "Pos":
                mask[self.type_ids["Bar"]] = False
        can_end = s.can_end() and s.bars == self.target_bars
        if budget_left <= self._tokens_to_close() + CLOSING_MARGIN:  # the shortest way out, whatever rests
            return self._closing_mask(mask, can_end), can_end
        if not mask.any() and not can_end:  # controls left nothing: fall back to closing
            return self._closing_mask(s.allowed(), can_end), can_end
        due = self._parts_due()
        if due:
            kept = mask.copy()
            self._bring_back(mask, due)
            if not mask.any():  # no way to bring them back from here: the rest goes on
                return kept, can_end
            can_end = False
        return mask, can_end

    def _parts_due(self) -> list[int]:
        """The parts that have rested MAX_REST_BARS bars and have not yet sounded in this (new) bar."""
        s = self.state
        if not s.header_done or s.bars <= self.prompt_bars or s.bars > self.target_bars:
            return []
        return sorted(stream for stream, bar in self.heard.items() if s.bars - bar > MAX_REST_BARS)

    def _bring_back(self, mask: np.ndarray, due: list[int]) -> None:
        """The parts ``due`` come back on the bar's downbeat: its first position is step 0, and there the parts
        due come first, in the grammar's order (streams ascending within a step), before the music moves on
        or the bar (or the piece: the caller) ends.  A part forced in at the end of a bar played a token note
        on its last step."""
        s, ids = self.state, self.type_ids
        mask[ids["Bar"]] = False
        mask[ids["PosHi"]] = False
        if s.now < 0:  # the bar's first position: its downbeat
            positions = ids["Pos"]
            mask[positions[s.vocab.value_of[positions] != 0]] = False
            return
        mask[ids["Pos"]] = False  # no later step until they have come in
        first = due[0]
        mask[self.stream_ids[self.stream_values > first]] = False
        if s.stream > first and s.group != (s.now, s.stream):  # a note now would start a group past it
            mask[ids["Pitch"]] = False
            mask[ids["Pedal"]] = False

    def _out_of_range(self, stream: int) -> np.ndarray:
        """The Pitch words a new note of ``stream`` may not take: those outside its instrument's usual range
        (``instruments.pitch_range``; a violin never under its G string, 20.7% of the built-in model's
        violin notes before this rule), or the range of the program a stand-in stands in for
        (``controls.ranges``), widened to what the prompt plays in it.  Drum kits are free unless
        ``controls.ranges`` names them: their keys are sounds, not a register."""
        words = self.out_of_range.get(stream)
        if words is None:
            bounds = next(((low, high) for s, low, high in self.controls.ranges if s == stream), None)
            if bounds is None and stream < DRUM_OFFSET:
                bounds = pitch_range(stream)
            if bounds is None:
                words = np.zeros(0, dtype=np.int64)
            else:
                low, high = bounds
                if stream in self.prompt_ranges:
                    low, high = min(low, self.prompt_ranges[stream][0]), max(high, self.prompt_ranges[stream][1])
                words = self.pitch_ids[(self.pitch_values < low) | (self.pitch_values > high)]
            self.out_of_range[stream] = words
        return words

    def _piece_end(self) -> int:
        """The step where the piece ends if the meter in force holds to its last bar."""
        s = self.state
        return s.bar_start + (self.target_bars - s.bars + 1) * s.bar_len

    def _keep_the_end_after_new_notes(self, mask: np.ndarray) -> None:
        """A change of meter (a new bar's TS word) may not bring the piece's end before a new note's:
        only meters whose bars, from this one to the last, reach past every new note.  The durations were
        capped at the meter in force, so keeping it (no TS word) always qualifies."""
        ts_words = self.type_ids["TS"]
        if not self.state.header_done or self.sounding_until == 0 or not mask[ts_words].any():
            return
        s = self.state
        reach = s.bar_start + (self.target_bars - s.bars + 1) * self.ts_lengths >= self.sounding_until
        if (mask[ts_words] & reach).any():
            mask[ts_words] &= reach

    def _tokens_to_close(self) -> int:
        return (self.target_bars - self.state.bars) + 6

    def _closing_mask(self, mask: np.ndarray, can_end: bool) -> np.ndarray:
        """One word: the shortest way to a complete piece."""
        out = np.zeros_like(mask)
        if can_end:
            return out  # only the end may come
        s, v = self.state, self.state.vocab
        # a time signature only where one must come (after a cut bar): otherwise each bar would cost two words
        order = ["Dur", "DurHi", "Vel", "TempoFrac", "Tempo", "TempoHi"] + (["TS"] if s.cut else [])
        if s.bars < self.target_bars and s.prev != "Pos":
            order.append("Bar")
        order += ["Pos", "PosHi", "Prog", "Drums", "Pitch", "Bar"]
        for t in order:
            ids = self.type_ids[t][mask[self.type_ids[t]]]
            if ids.size:
                if t == "Vel":
                    pick = ids[np.argmin(np.abs(v.value_of[ids] - 64))]
                elif t == "Pitch":
                    pick = ids[np.argmin(np.abs(v.value_of[ids] - 60))]
                else:
                    pick = ids[0]
                out[pick] = True
                return out
        return mask  # nothing in the list: any allowed word

    def advance(self, vocab_id: int) -> None:
        s = self.state
        pedal = s.in_pedal
        s.advance(vocab_id)
        if s.prev == "Dur":  # a note or pedal just ended its spelling: where does it stop sounding?
            end = s.pedal_end[s.stream] if pedal else s.now + s.last_note[1]
            self.sounding_until = max(self.sounding_until, end)
            if not pedal:
                note_heard(s, self.heard)


class GrammarLogitsProcessor:
    """A transformers logits processor (duck-typed: ``__call__(input_ids, scores)``) that sets to -inf,
    row by row, the logits of every token the grammar or the controls forbid (``Constraint.allowed``),
    ``<eos>`` included until the piece may end.

    Each row's constraint is advanced with the tokens that appeared in ``input_ids`` since
    the last call, so the processor works inside ``model.generate`` as well as in
    ``sample_pieces``.  Put it *before* temperature, top-k and top-p: transformers appends
    custom processors after its own warpers, so with ``generate`` pass the warpers in the
    same list after this one and turn generate's own off (``hf_logits_processors``).
    """

    def __init__(self, constraints: list[Constraint], tokenizer, budget: int, start: int):
        vocab_words = tokenizer.get_vocab()
        words = constraints[0].state.vocab.words
        self.to_model = np.array([vocab_words[w] for w in words])
        self.from_model = np.full(max(vocab_words.values()) + 1, -1)
        self.from_model[self.to_model] = np.arange(len(words))
        self.eos, self.pad = vocab_words[EOS], vocab_words[PAD]
        self.constraints, self.budget, self.start = constraints, budget, start
        self.seen = [start] * len(constraints)  # input_ids columns already fed to each constraint
        self.ended = [False] * len(constraints)

    def row_mask(self, row: int, new_tokens: list[int], used: int, size: int) -> np.ndarray:
        """Feed ``row``'s new tokens to its constraint; the mask of tokens allowed next (``size`` booleans)."""
        constraint = self.constraints[row]
        for token in new_tokens:
            if token == self.eos or token == self.pad:
                self.ended[row] = True
            if not self.ended[row]:
                constraint.advance(int(self.from_model[token]))
        allowed = np.zeros(size, dtype=bool)
        if self.ended[row]:  # generate pads finished rows; anything is fine there
            allowed[self.pad] = True
            return allowed
        mask, can_end = constraint.allowed(self.budget - used)
        allowed[self.to_model[mask]] = True
        allowed[self.eos] = can_end
        if not allowed.any():  # nothing left (cannot happen with a satisfiable control): end the piece
            allowed[self.eos] = True
        return allowed

    def __call__(self, input_ids, scores):
        """transformers' logits-processor call: ``scores`` (rows, vocabulary) with the forbidden words at -inf."""
        import torch

        used = input_ids.shape[1] - self.start
        for row in range(scores.shape[0]):
            new = input_ids[row, self.seen[row]:].tolist()
            self.seen[row] = input_ids.shape[1]
            allowed = torch.from_numpy(self.row_mask(row, new, used, scores.shape[1])).to(scores.device)
            scores[row] = scores[row].masked_fill(~allowed, float("-inf"))
        return scores


def note_heard(state: GrammarState, heard: dict[int, int]) -> None:
    """Record in ``heard`` (stream -> last bar it sounds in) the note ``state`` has just read (its Dur)."""
    duration = state.last_note[1]
    last_bar = state.bars + (state.now - state.bar_start + duration - 1) // state.bar_len  # at the meter in force
    heard[state.stream] = max(heard.get(state.stream, 0), last_bar)


def new_constraint(prompt_words: list[str], controls: Controls, prompt_bars: int, grid: int) -> Constraint:
    """The constraint of one sample that goes on from ``prompt_words`` (a piece's words, or none)."""
    state = new_state(grid)
    played: dict[int, tuple[int, int]] = {}  # stream -> lowest and highest pitch the prompt gives it
    heard: dict[int, int] = {}
    for w in prompt_words:
        pedal = state.in_pedal
        state.advance(state.vocab.index[w])
        if state.prev == "Pitch":  # the grammar holds the pitch just read
            pitch = state.note[0]
            low, high = played.get(state.stream, (pitch, pitch))
            played[state.stream] = (min(low, pitch), max(high, pitch))
        elif state.prev == "Dur" and not pedal:
            note_heard(state, heard)
    return Constraint(state, controls, target_bars=max(prompt_bars, state.bars) + controls.bars,
                      prompt_bars=max(prompt_bars, state.bars), prompt_ranges=played, heard=heard)


def hf_logits_processors(model, tokenizer, prompt_words: list[str], controls: Controls, settings: SamplingSettings,
                         prompt_bars: int = 0, *, grid: int, batch: int = 1):
    """The grammar mask then temperature, top-k, top-p, for ``model.generate(..., do_sample=True,
    temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=budget)`` with input ``<bos> + prompt``:
    a transformers ``LogitsProcessorList``."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    budget = settings.token_budget(controls.bars)
    start = 1 if model.config.is_encoder_decoder else len(prompt_words) + 1
    constraints = [new_constraint(prompt_words, controls, prompt_bars, grid) for _ in range(batch)]
    out = LogitsProcessorList([GrammarLogitsProcessor(constraints, tokenizer, budget, start),
                               TemperatureLogitsWarper(settings.temperature)])
    if settings.top_k:
        out.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        out.append(TopPLogitsWarper(settings.top_p))
    return out
