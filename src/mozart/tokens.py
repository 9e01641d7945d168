"""The Mozart text token format: vocabulary, grammar, Piece <-> text, and ``check``.

The spec is docs/format.md.  Everything is vectorised over numpy arrays: a piece is
turned into a table with one row per event (bar, tempo change, pedal, note) whose
columns hold token ids, the rows are sorted into canonical order, redundant position
and program tokens are blanked, and the table is flattened.  Decoding runs the grammar
checks as whole-array comparisons and reads the events back the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from .errors import MozartError
from .events import (
    CENTI_MINUTE_US,
    DENOMINATORS,
    DRUM_OFFSET,
    MAX_NUMERATOR,
    Piece,
    bar_layout,
    bar_steps,
    validate_grid,
)

#: Version of the token format, stated by the first token of every piece (``Format_1``).
FORMAT_VERSION = 1
#: Base of the high-digit tokens (PosHi, DurHi, TempoHi) that spell large values.
HI_BASE = 16
#: Whole-qpm tempos below this are one ``Tempo_q`` token; larger ones add TempoHi digits.
TEMPO_BASE = 256
#: Positions and durations below ``LO_WHOLES`` whole notes are a single token.
LO_WHOLES = 2
#: Most high digits a number may have: positions and durations up to 16**4 * 8 * grid steps (12.6M at
#: grid 24, ~1,700 hours at 120 qpm), so decoded times fit 32-bit MIDI ticks; tempos up to 268M qpm,
#: beyond MIDI's fastest (60M qpm).
MAX_HI_DIGITS = {"Pos": 4, "Dur": 4, "Tempo": 5}

#: Every tempo below this many qpm, to the hundredth, is a whole number of microseconds per quarter
#: (above it only some are: ``tempo_representable``); generation controls accept tempos up to it.
MAX_PLAIN_TEMPO_QPM = 774
#: MIDI's tempo is microseconds per quarter in 24 bits; the slowest tempo that fits, in
#: hundredths of qpm (3.58 qpm: 16,759,777 us per quarter).
MAX_MIDI_MSPQ = 2**24 - 1
MIN_TEMPO_CENTI = 358

# Token types, in vocabulary order.  A word is ``Type_value`` (``Bar`` and ``Pedal`` bare).
TYPES = (
    "Format", "Grid", "Bar", "TS", "PosHi", "Pos", "TempoHi", "Tempo", "TempoFrac",
    "Prog", "Drums", "Pedal", "Pitch", "Vel", "DurHi", "Dur",
)
T = {name: i for i, name in enumerate(TYPES)}
#: Pseudo-types for the grammar table: the end of the header, the end of the piece.
HEADER, END = "Header", "End"

#: The grammar of the body (everything after the header), as data: which token types may
#: follow each type.  ``check``, the decoder and the constrained sampler all read this.
#: Value rules that a type table cannot express are listed in ``RULES``.
GRAMMAR: dict[str, tuple[str, ...]] = {
    HEADER: ("Bar", END),
    "Bar": ("Bar", "TS", "PosHi", "Pos", END),
    "TS": ("Bar", "PosHi", "Pos", END),
    "PosHi": ("PosHi", "Pos"),
    "Pos": ("Bar", "TempoHi", "Tempo", "Prog", "Drums", "Pedal", "Pitch"),
    "TempoHi": ("TempoHi", "Tempo"),
    "Tempo": ("TempoFrac", "Prog", "Drums", "Pedal", "Pitch", "PosHi", "Pos", "Bar", END),
    "TempoFrac": ("Prog", "Drums", "Pedal", "Pitch", "PosHi", "Pos", "Bar", END),
    "Prog": ("Pedal", "Pitch"),
    "Drums": ("Pedal", "Pitch"),
    "Pedal": ("DurHi", "Dur"),
    "Pitch": ("Vel",),
    "Vel": ("DurHi", "Dur"),
    "DurHi": ("DurHi", "Dur"),
    "Dur": ("Pitch", "Prog", "Drums", "PosHi", "Pos", "Bar", END),
}
#: The header: ``Format_1 Grid_g TS_n/d`` then a tempo (``TempoHi_* Tempo_q [TempoFrac_f]``).
HEADER_TYPES = ("Format", "Grid", "TS")

#: Value rules of the grammar, checked after the type table (docs/format.md explains each).
RULES = (
    "a high digit run does not start with 0",
    "a duration is at least one step; a tempo at least 3.58 qpm (MIDI's 24 bits) and a whole number of "
    "microseconds per quarter",
    "positions in a bar strictly increase and stay inside the bar",
    "'Pos_p Bar' (a bar cut short at p) is followed by a time signature",
    "a time signature or tempo differs from the one in force; at the start, the header's are used",
    "a note or pedal has a program: Prog/Drums before the first one",
    "Prog/Drums changes the program; within a position programs ascend (Prog before Drums)",
    "within a position and program, notes ascend by (pitch, duration, velocity)",
    "pedal intervals of a program neither overlap nor touch",
    "the last bar is not empty",
)

_NO_VALUE = ("Bar", "Pedal")
#: A TS word's value packs its time signature: numerator * TS_PACK + denominator.
TS_PACK = 64


@dataclass(frozen=True)
class Vocabulary:
    """The fixed vocabulary of one (format version, grid): determined by nothing else."""

    grid: int
    words: tuple[str, ...]
    index: dict[str, int]
    type_of: np.ndarray  # token id -> type code (index into TYPES), uint8: decoding compares whole texts of them
    value_of: np.ndarray  # token id -> integer value (see docs/format.md)
    first_id: dict[str, int]  # type -> id of its first word
    first_value: dict[str, int]  # type -> value of its first word
    lo_base: int  # number of Pos_/Dur_ low-digit words

    def __len__(self) -> int:
        return len(self.words)

    def id_of(self, type_name: str, value: np.ndarray | int) -> np.ndarray | int:
        """Token id(s) of ``type_name`` with ``value`` (values must be in range)."""
        return self.first_id[type_name] + (value - self.first_value[type_name])


def _type_values(grid: int) -> dict[str, list[int]]:
    lo_base = LO_WHOLES * 4 * grid
    ts = [n * TS_PACK + d for n in range(1, MAX_NUMERATOR + 1) for d in DENOMINATORS]
    return {
        "Format": [FORMAT_VERSION],
        "Grid": [grid],
        "Bar": [0],
        "TS": ts,
        "PosHi": list(range(HI_BASE)),
        "Pos": list(range(lo_base)),
        "TempoHi": list(range(HI_BASE)),
        "Tempo": list(range(TEMPO_BASE)),
        "TempoFrac": list(range(1, 100)),
        "Prog": list(range(128)),
        "Drums": list(range(DRUM_OFFSET, DRUM_OFFSET + 128)),
        "Pedal": [0],
        "Pitch": list(range(128)),
        "Vel": list(range(1, 128)),
        "DurHi": list(range(HI_BASE)),
        "Dur": list(range(lo_base)),
    }


def _word(type_name: str, value: int) -> str:
    if type_name in _NO_VALUE:
        return type_name
    if type_name == "TS":
        return f"TS_{value // TS_PACK}/{value % TS_PACK}"
    if type_name == "Drums":
        return f"Drums_{value - DRUM_OFFSET}"
    return f"{type_name}_{value}"


@cache
def vocabulary(grid: int = 24) -> Vocabulary:
    """The vocabulary of format version ``FORMAT_VERSION`` at ``grid`` steps per quarter."""
    grid = validate_grid(grid)
    words, types, values, first_id, first_value = [], [], [], {}, {}
    for name, vals in _type_values(grid).items():
        first_id[name], first_value[name] = len(words), vals[0]
        # TS values are not contiguous; they are looked up through the index instead.
        for v in vals:
            words.append(_word(name, v))
            types.append(T[name])
            values.append(v)
    return Vocabulary(
        grid=grid,
        words=tuple(words),
        index={w: i for i, w in enumerate(words)},
        type_of=np.array(types, dtype=np.uint8),
        value_of=np.array(values, dtype=np.int64),
        first_id=first_id,
        first_value=first_value,
        lo_base=LO_WHOLES * 4 * grid,
    )


def _ts_ids(vocab: Vocabulary, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den_index = np.searchsorted(np.array(DENOMINATORS), den)
    return vocab.first_id["TS"] + (num - 1) * len(DENOMINATORS) + den_index


def tempo_representable(centi: np.ndarray | int) -> np.ndarray | bool:
    """Whether a tempo in hundredths of qpm survives MIDI's integer microseconds per quarter
    (rounded half-up both ways) in its 24 bits.  Every tempo from 3.58 (``MIN_TEMPO_CENTI``)
    to 774.6 qpm does, and so does every tempo read from a MIDI file; canonical text holds
    only such tempos.  Below 3.58 qpm a quarter lasts more than 2^24 - 1 microseconds, which
    a MIDI file cannot hold (it would wrap to a fast tempo)."""
    c = np.maximum(np.asarray(centi, dtype=np.int64), 1)
    mspq = (2 * CENTI_MINUTE_US + c) // (2 * c)
    return (mspq > 0) & (mspq <= MAX_MIDI_MSPQ) & ((2 * CENTI_MINUTE_US + mspq) // (2 * np.maximum(mspq, 1)) == c)


def _allowed_matrix() -> np.ndarray:
    """GRAMMAR as a boolean matrix [previous type, next type]; rows/cols len(TYPES) are
    the Header pseudo-type (row) and End pseudo-type (column)."""
    n = len(TYPES)
    allowed = np.zeros((n + 1, n + 1), dtype=bool)
    for prev, nexts in GRAMMAR.items():
        row = n if prev == HEADER else T[prev]
        for nxt in nexts:
            allowed[row, n if nxt == END else T[nxt]] = True
    return allowed


ALLOWED = _allowed_matrix()


# --------------------------------------------------------------------------- encode


def _digit_columns(vocab: Vocabulary, value: np.ndarray, base: int, hi: str, lo: str, width: int) -> np.ndarray:
    """Token ids spelling ``value`` as high digits (base HI_BASE, right-aligned in
    ``width`` columns, -1 where absent) followed by one low-digit column."""
    high, low = np.divmod(value, base)
    cols = np.full((value.size, width + 1), -1, dtype=np.int64)
    for j in range(width):
        place = HI_BASE ** (width - 1 - j)
        cols[:, j] = np.where(high >= place, vocab.id_of(hi, (high // place) % HI_BASE), -1)
    cols[:, width] = vocab.id_of(lo, low)
    return cols


def _n_digits(max_value: int, base: int, kind: str) -> int:
    """High digits needed for values up to ``max_value``."""
    high, n = max_value // base, 0
    while high:
        high //= HI_BASE
        n += 1
    if n > MAX_HI_DIGITS[kind]:
        raise MozartError(f"{kind.lower()} {max_value} is too large for the format "
                          f"({MAX_HI_DIGITS[kind]} high digits)")
    return n


def _tempo_columns(vocab: Vocabulary, centi: np.ndarray, width: int) -> np.ndarray:
    whole, frac = np.divmod(centi, 100)
    cols = _digit_columns(vocab, whole, TEMPO_BASE, "TempoHi", "Tempo", width)
    frac_col = np.where(frac > 0, vocab.id_of("TempoFrac", np.maximum(frac, 1)), -1)
    return np.column_stack([cols, frac_col])


def encode_piece(piece: Piece) -> str:
    """Spell a quantized Piece as canonical token text (one line, single spaces)."""
    vocab = vocabulary(piece.grid)
    lo_base = vocab.lo_base
    bar_start, bar_ts = bar_layout(piece)
    n_bars = bar_start.size

    def locate(step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bar = np.searchsorted(bar_start, step, side="right") - 1
        return bar, step - bar_start[bar]

    # Bars: a bar that ends before its full length is cut at its last step.
    full = bar_steps(piece.ts_numerator[bar_ts], piece.ts_denominator[bar_ts], piece.grid)
    actual = np.diff(np.append(bar_start, bar_start[-1] + full[-1] if n_bars else 0))
    cut_before = np.zeros(n_bars, dtype=np.int64) - 1  # cut position of the previous bar
    if n_bars > 1:
        cut = actual[:-1] < full[:-1]
        cut_before[1:] = np.where(cut, actual[:-1], -1)
    ts_changes = np.zeros(n_bars, dtype=bool)
    ts_changes[1:] = bar_ts[1:] != bar_ts[:-1]

    tempo_bar, tempo_pos = locate(piece.tempo_step[1:])
    note_bar, note_pos = locate(piece.note_onset)
    pedal_bar, pedal_pos = locate(piece.pedal_onset)

    all_pos = np.concatenate([cut_before, tempo_pos, note_pos, pedal_pos, [0]])
    all_dur = np.concatenate([piece.note_duration, piece.pedal_duration, [1]])
    kp = _n_digits(int(all_pos.max()), lo_base, "Pos")
    kd = _n_digits(int(all_dur.max()), lo_base, "Dur")
    kt = _n_digits(int(piece.tempo_centi.max()) // 100, TEMPO_BASE, "Tempo")
    pos_w = kp + 1
    body_w = max(2, kt + 2, kd + 4)

    def table(n: int) -> np.ndarray:
        return np.full((n, pos_w + body_w), -1, dtype=np.int64)

    # Rows: [position columns | body columns]; keys sort them into canonical order.
    bars = table(n_bars)
    has_cut = cut_before >= 0
    bars[has_cut, :pos_w] = _digit_columns(vocab, cut_before[has_cut], lo_base, "PosHi", "Pos", kp)
    bars[:, pos_w] = vocab.id_of("Bar", 0)
    bars[ts_changes, pos_w + 1] = _ts_ids(
        vocab, piece.ts_numerator[bar_ts[ts_changes]], piece.ts_denominator[bar_ts[ts_changes]]
    )

    tempos = table(tempo_pos.size)
    tempos[:, :pos_w] = _digit_columns(vocab, tempo_pos, lo_base, "PosHi", "Pos", kp)
    tempos[:, pos_w : pos_w + kt + 2] = _tempo_columns(vocab, piece.tempo_centi[1:], kt)

    stream_id = np.where(
        np.concatenate([piece.pedal_stream, piece.note_stream]) >= DRUM_OFFSET,
        vocab.first_id["Drums"] - DRUM_OFFSET,
        vocab.first_id["Prog"],
    ) + np.concatenate([piece.pedal_stream, piece.note_stream])
    n_ped = piece.pedal_onset.size
    pedals = table(n_ped)
    pedals[:, :pos_w] = _digit_columns(vocab, pedal_pos, lo_base, "PosHi", "Pos", kp)
    pedals[:, pos_w] = stream_id[:n_ped]
    pedals[:, pos_w + 1] = vocab.id_of("Pedal", 0)
    pedals[:, pos_w + 2 : pos_w + kd + 3] = _digit_columns(vocab, piece.pedal_duration, lo_base, "DurHi", "Dur", kd)

    notes = table(piece.n_notes)
    notes[:, :pos_w] = _digit_columns(vocab, note_pos, lo_base, "PosHi", "Pos", kp)
    notes[:, pos_w] = stream_id[n_ped:]
    notes[:, pos_w + 1] = vocab.id_of("Pitch", piece.note_pitch)
    notes[:, pos_w + 2] = vocab.id_of("Vel", piece.note_velocity)
    notes[:, pos_w + 3 : pos_w + kd + 4] = _digit_columns(vocab, piece.note_duration, lo_base, "DurHi", "Dur", kd)

    rows = np.concatenate([bars, tempos, pedals, notes])
    z = lambda n: np.zeros(n, dtype=np.int64)  # noqa: E731
    # Sort keys, most significant first: bar, position, class (bar row, tempo, stream),
    # stream, pedal-before-notes, pitch, duration, velocity.
    keys = [
        np.concatenate([np.arange(n_bars), tempo_bar, pedal_bar, note_bar]),
        np.concatenate([z(n_bars) - 1, tempo_pos, pedal_pos, note_pos]),
        np.concatenate([z(n_bars), z(tempo_pos.size) + 1, z(n_ped) + 2, z(piece.n_notes) + 2]),
        np.concatenate([z(n_bars), z(tempo_pos.size), piece.pedal_stream, piece.note_stream]),
        np.concatenate([z(n_bars + tempo_pos.size + n_ped), z(piece.n_notes) + 1]),
        np.concatenate([z(n_bars + tempo_pos.size + n_ped), piece.note_pitch]),
        np.concatenate([z(n_bars + tempo_pos.size), piece.pedal_duration, piece.note_duration]),
        np.concatenate([z(n_bars + tempo_pos.size + n_ped), piece.note_velocity]),
    ]
    order = np.lexsort(keys[::-1])
    rows = rows[order]
    bar_k, pos_k, cls_k, stream_k = (k[order] for k in keys[:4])

    # A position is spelled once: blank it on rows that share (bar, pos) with the row before.
    same_pos = np.zeros(rows.shape[0], dtype=bool)
    same_pos[1:] = (bar_k[1:] == bar_k[:-1]) & (pos_k[1:] == pos_k[:-1]) & (cls_k[:-1] > 0)
    rows[same_pos, :pos_w] = -1
    # A program is spelled only when it changes (the state carries across positions and bars).
    is_stream = np.flatnonzero(cls_k == 2)
    s = stream_k[is_stream]
    unchanged = np.zeros(s.size, dtype=bool)
    unchanged[1:] = s[1:] == s[:-1]
    rows[is_stream[unchanged], pos_w] = -1

    header_tempo_digits = _n_digits(int(piece.tempo_centi[0]) // 100, TEMPO_BASE, "Tempo")
    header = np.concatenate([
        [vocab.id_of("Format", FORMAT_VERSION), vocab.id_of("Grid", piece.grid)],
        _ts_ids(vocab, piece.ts_numerator[:1], piece.ts_denominator[:1]),
        _tempo_columns(vocab, piece.tempo_centi[:1], header_tempo_digits)[0],
    ])
    ids = np.concatenate([header, rows.ravel()])
    ids = ids[ids >= 0]
    return " ".join(_words_array(piece.grid)[ids].tolist())


@cache
def _words_array(grid: int) -> np.ndarray:
    return np.array(vocabulary(grid).words, dtype=object)


# --------------------------------------------------------------------------- decode / check


class TokenError(MozartError):
    """Malformed token text; ``index`` is the offending token's position (0-based)."""

    def __init__(self, text: str | Callable[[], str], index: int, reason: str):
        # ``text`` may be a function that spells it: decoding ids builds the text only for an error
        line, column, token = _locate(text() if callable(text) else text, index)
        self.index, self.line, self.column, self.token = index, line, column, token
        where = f"line {line}, token {column} '{token}'" if token else f"line {line}, end of text"
        super().__init__(f"{where}: {reason}")


def _locate(text: str, index: int) -> tuple[int, int, str]:
    """1-based line, 1-based token number within that line, and the token at ``index``."""
    seen = 0
    lines = text.splitlines() or [""]
    for line_no, line in enumerate(lines, 1):
        words = line.split()
        if index < seen + len(words):
            return line_no, index - seen + 1, words[index - seen]
        seen += len(words)
    return len(lines), len(lines[-1].split()) + 1, ""


def _forward_fill(mask: np.ndarray, values: np.ndarray, initial) -> np.ndarray:
    """For each position, the value at the latest index <= it where ``mask`` holds."""
    idx = np.where(mask, np.arange(mask.size), -1)
    np.maximum.accumulate(idx, out=idx)
    out = values[np.maximum(idx, 0)]
    return np.where(idx >= 0, out, initial)


def _composite(types: np.ndarray, values: np.ndarray, lo: str, hi: str, base: int):
    """Indices of the ``lo`` tokens, the full values they end (with up to MAX_HI_DIGITS[lo]
    preceding ``hi`` digits), the index of the first digit of each value, and a mask of
    values with more high digits than allowed."""
    lo_idx = np.flatnonzero(types == T[lo])
    full, start = values.take(lo_idx), lo_idx.copy()
    too_long = np.zeros(lo_idx.size, dtype=bool)
    # Only the few values with high digits (long notes, late positions) need the digit walk.
    has = np.flatnonzero((lo_idx > 0) & (types.take(np.maximum(lo_idx - 1, 0)) == T[hi]))
    if has.size:
        j = lo_idx[has] - 1
        high = np.zeros(has.size, dtype=np.int64)
        first = j.copy()
        active = np.ones(has.size, dtype=bool)
        mult = 1
        for _ in range(MAX_HI_DIGITS[lo]):
            if not active.any():
                break
            high += np.where(active, values.take(np.maximum(j, 0)) * mult, 0)
            first = np.where(active, j, first)
            mult *= HI_BASE
            j = j - 1
            active &= (j >= 0) & (types.take(np.maximum(j, 0)) == T[hi])
        full[has] += high * base
        start[has] = first
        too_long[has] = active
    return lo_idx, full, start, too_long


class _Checker:
    """Collects the earliest violation over all rules."""

    def __init__(self, text: str, offset: int):
        self.text, self.offset, self.first = text, offset, None

    def flag(self, bad: np.ndarray, where: np.ndarray, reason: str) -> None:
        """``bad`` is a mask over ``where`` (token indices, relative to ``offset``)."""
        hits = where[bad]
        if hits.size:
            i = int(hits.min())
            if self.first is None or i < self.first[0]:
                self.first = (i, reason)

    def raise_first(self) -> None:
        if self.first is not None:
            raise TokenError(self.text, self.first[0] + self.offset, self.first[1])


def _parse_header(text: str | Callable[[], str], words: list[str]) -> tuple[Vocabulary, int]:
    if not words:
        raise TokenError(text, 0, "empty text: a piece starts with 'Format_1 Grid_<g>'")
    if words[0] != f"Format_{FORMAT_VERSION}":
        raise TokenError(text, 0, f"expected 'Format_{FORMAT_VERSION}' (this is format version {FORMAT_VERSION})")
    grid_word = words[1] if len(words) > 1 else ""
    try:
        if not grid_word.startswith("Grid_"):
            raise ValueError("expected 'Grid_<steps per quarter>'")
        vocab = vocabulary(int(grid_word[5:]))
    except (ValueError, MozartError) as e:
        raise TokenError(text, 1, str(e)) from None
    n = len(words)
    i = 2
    if i >= n or not words[i].startswith("TS_") or words[i] not in vocab.index:
        raise TokenError(text, min(i, n), "expected the initial time signature 'TS_<n>/<d>'")
    i += 1
    while i < n and words[i].startswith("TempoHi_") and words[i] in vocab.index:
        i += 1
    if i >= n or not words[i].startswith("Tempo_") or words[i] not in vocab.index:
        raise TokenError(text, min(i, n), "expected the initial tempo 'Tempo_<qpm>'")
    i += 1
    if i < n and words[i].startswith("TempoFrac_") and words[i] in vocab.index:
        i += 1
    return vocab, i


def _lookup(text: str, words: list[str], vocab: Vocabulary, offset: int = 0) -> np.ndarray:
    """The ids of ``words``, which start at word ``offset`` of ``text`` (for the error's place)."""
    index = vocab.index
    try:
        return np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
    except KeyError:
        for i, w in enumerate(words):
            if w not in index:
                raise TokenError(text, offset + i,
                                 f"unknown token for format {FORMAT_VERSION}, grid {vocab.grid}") from None
        raise


#: The most words a header can have (Format, Grid, TS, the tempo's digits, TempoFrac).
_MAX_HEADER_WORDS = 5 + MAX_HI_DIGITS["Tempo"]


#: The longest token text a piece may have, in characters (the text is ASCII: bytes too).  Real
#: pieces are far shorter (the dev corpus' longest, a 12-minute multitrack, is 0.6 MB), and decoding
#: holds several arrays per word (about 18 bytes of memory per byte of text), so a cap is what keeps
#: a hostile text from taking the machine's memory (at the cap, `check` peaks at 0.45 GB for the
#: whole process).
MAX_TEXT_CHARS = 16 * 2**20


def check_text_size(size: int, what: str = "token text") -> None:
    """Refuse a token text over MAX_TEXT_CHARS before it is read or parsed."""
    if size > MAX_TEXT_CHARS:
        raise MozartError(f"{what}: {size / 2**20:,.1f} MB is over the {MAX_TEXT_CHARS // 2**20} MB a piece's token "
                          "text may have (a long real piece is under 1 MB)")


def decode_piece(text: str) -> Piece:
    """Parse and validate token text into a Piece; raise TokenError at the first error (and
    MozartError for a text over MAX_TEXT_CHARS)."""
    check_text_size(len(text))
    vocab, h = _parse_header(text, text.split(maxsplit=_MAX_HEADER_WORDS + 1)[:_MAX_HEADER_WORDS + 1])
    return _piece_of_ids(_lookup_text(text, vocab), vocab, h, text)


#: Characters of text looked up at a time: a whole text split at once holds one Python string per
#: word (~60 bytes each, 0.4 GB for a 50 MB text); a chunk at a time holds only the ids.
_LOOKUP_CHUNK = 1 << 22
_SPACE = re.compile(r"\s")


def _lookup_text(text: str, vocab: Vocabulary) -> np.ndarray:
    """The word ids of ``text``, split and looked up a chunk at a time (cut at whitespace)."""
    parts: list[np.ndarray] = []
    done = pos = 0
    while pos < len(text):
        end = min(len(text), pos + _LOOKUP_CHUNK)
        if end < len(text):
            space = _SPACE.search(text, end)
            end = space.start() if space else len(text)
        words = text[pos:end].split()
        parts.append(_lookup(text, words, vocab, offset=done))
        done += len(words)
        pos = end
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def decode_piece_ids(ids: np.ndarray, grid: int) -> Piece:
    """As :func:`decode_piece`, from the word ids of ``vocabulary(grid)`` (an array; no text is
    built unless there is an error to report): the fast path from a model's or a token store's ids."""
    vocab = vocabulary(grid)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise MozartError(f"expected a 1-D array of token ids, got shape {ids.shape}")
    bad = np.flatnonzero((ids < 0) | (ids >= len(vocab)))
    if bad.size:
        raise MozartError(f"token id {int(ids[bad[0]])} at index {int(bad[0])} is not a word of grid {grid} "
                          f"(0..{len(vocab) - 1})")

    def text() -> str:
        return " ".join(vocab.words[i] for i in ids.tolist())

    head = [vocab.words[i] for i in ids[:_MAX_HEADER_WORDS + 1].tolist()]
    _, h = _parse_header(text, head)
    return _piece_of_ids(ids, vocab, h, text)


def _running_count(marks: np.ndarray, n: int) -> np.ndarray:
    """For each of ``n`` token indices, how many of the (sorted, distinct) indices ``marks`` are at
    or before it."""
    flags = np.zeros(n, dtype=np.int32)
    flags[marks] = 1
    return np.cumsum(flags, dtype=np.int32)


#: Streams (programs 0-127, drum kits from DRUM_OFFSET, -1 for none) fit below this, so that
#: time * _STREAM_SPAN + stream + 1 orders events by (time, stream).
_STREAM_SPAN = 512


def _piece_of_ids(ids: np.ndarray, vocab: Vocabulary, h: int, text: str | Callable[[], str]) -> Piece:
    """The body of decoding: ``ids`` (header of ``h`` words included) checked against the
    grammar, as a Piece; ``text`` spells the ids for error messages."""
    types, values = vocab.type_of.take(ids), vocab.value_of.take(ids)
    n = types.size
    ck = _Checker(text, 0)

    # 1. The type table, over the body, with Header before and End after.
    n_types = len(TYPES)
    prev = np.concatenate([[n_types], types[h:]])
    nxt = np.concatenate([types[h:], [n_types]])
    ok = ALLOWED[prev, nxt]
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        got = vocab.words[ids[h + i]] if h + i < n else None
        before = vocab.words[ids[h + i - 1]] if i > 0 else "the header"
        if got is None:
            reason = f"the piece cannot end after '{before}'"
        else:
            reason = f"'{got}' cannot follow '{before}'"
        raise TokenError(text, h + i, reason)
    if n > h and types[-1] == T["Bar"]:
        ck.flag(np.array([True]), np.array([n - 1]), "the last bar is empty")

    # 2. Composite values: positions, durations, tempos.
    lo_base = vocab.lo_base
    for hi in ("PosHi", "DurHi", "TempoHi"):
        hi_idx = np.flatnonzero(types == T[hi])
        leading = types[np.maximum(hi_idx - 1, 0)] != T[hi]
        ck.flag(leading & (values[hi_idx] == 0), hi_idx, "a number does not start with the digit 0")
    pos_idx, pos_val, pos_start, pos_long = _composite(types, values, "Pos", "PosHi", lo_base)
    dur_idx, dur_val, dur_start, dur_long = _composite(types, values, "Dur", "DurHi", lo_base)
    tempo_idx, tempo_whole, tempo_start, tempo_long = _composite(types, values, "Tempo", "TempoHi", TEMPO_BASE)
    for kind, long, at in (("Pos", pos_long, pos_start), ("Dur", dur_long, dur_start),
                           ("Tempo", tempo_long, tempo_start)):
        ck.flag(long, at - 1, f"a {kind} number has at most {MAX_HI_DIGITS[kind]} high digits")
    ck.raise_first()  # values of over-long numbers are meaningless: stop here
    ck.flag(dur_val < 1, dur_idx, "a duration is at least one step")
    frac_at = np.minimum(tempo_idx + 1, n - 1)
    has_frac = (tempo_idx + 1 < n) & (types[frac_at] == T["TempoFrac"])
    tempo_centi = tempo_whole * 100 + np.where(has_frac, values[frac_at], 0)
    ck.flag(tempo_centi < MIN_TEMPO_CENTI, tempo_idx,
            f"a tempo is at least {MIN_TEMPO_CENTI / 100} qpm (MIDI holds no slower one: 2^24 - 1 us per quarter)")
    ck.flag(~tempo_representable(np.maximum(tempo_centi, 1)), tempo_idx,
            "this tempo is not a whole number of microseconds per quarter note (only possible above 774 qpm)")

    # 3. Bars, time signatures and cuts.
    bar_idx = np.flatnonzero(types == T["Bar"])
    n_bars = bar_idx.size
    after_bar = np.minimum(bar_idx + 1, n - 1)
    bar_has_ts = (bar_idx + 1 < n) & (types[after_bar] == T["TS"])
    header_ts = values[2]
    ts_val = np.concatenate([[header_ts], values[after_bar[bar_has_ts]]])
    ck.flag(ts_val[1:] == ts_val[:-1], after_bar[bar_has_ts], "the time signature does not change")
    if n_bars and bar_has_ts[0]:
        ck.flag(np.array([True]), after_bar[:1], "the first bar's time signature is the header's")
    bar_ts = _forward_fill(bar_has_ts, values[after_bar], header_ts)
    full_len = bar_steps(bar_ts // TS_PACK, bar_ts % TS_PACK, vocab.grid)
    is_cut_pos = (pos_idx + 1 < n) & (types[np.minimum(pos_idx + 1, n - 1)] == T["Bar"])
    cut_bar_token = pos_idx[is_cut_pos] + 1
    ck.flag(~bar_has_ts[np.searchsorted(bar_idx, cut_bar_token)], cut_bar_token,
            "a bar cut short ('Pos_p Bar') must be followed by a time signature")
    bar_len = full_len.copy()
    # The bar a cut shortens is the one before the Bar token that follows the cut.
    cut_bar = np.searchsorted(bar_idx, cut_bar_token) - 1
    bar_len[cut_bar] = pos_val[is_cut_pos]
    bar_start = np.concatenate([[0], np.cumsum(bar_len)[:-1]]) if n_bars else np.zeros(0, np.int64)

    # 4. Positions strictly increase within a bar and stay inside it.
    pos_bar = np.searchsorted(bar_idx, pos_idx) - 1
    first_in_bar = np.ones(pos_idx.size, dtype=bool)
    first_in_bar[1:] = pos_bar[1:] != pos_bar[:-1]
    rising = np.ones(pos_idx.size, dtype=bool)
    rising[1:] = pos_val[1:] > pos_val[:-1]
    ck.flag(~(first_in_bar | rising), pos_start, "positions in a bar must increase")
    ck.flag(pos_val >= full_len[pos_bar], pos_start, "position is past the end of the bar")
    ck.flag(is_cut_pos & (pos_val == 0), pos_start, "a bar cannot be cut at position 0")

    # 5. Event times: every event takes the latest non-cut position before it.
    event_pos = ~is_cut_pos
    pos_time = np.append(bar_start[pos_bar[event_pos]] + pos_val[event_pos], 0)  # [-1] -> 0
    # "the latest X before this token" as a running count of X tokens, read at the token: a
    # cumulative sum over the text is ~3x faster than a binary search per note
    positions_so_far = _running_count(pos_idx[event_pos], n)

    def time_at(tokens: np.ndarray) -> np.ndarray:
        return pos_time[positions_so_far.take(tokens) - 1]

    # 6. Tempo changes (the first is the header's, at step 0).
    tempo_step = time_at(tempo_idx)
    tempo_step[0] = 0
    ck.flag(np.concatenate([[False], tempo_centi[1:] == tempo_centi[:-1]]), tempo_idx,
            "the tempo does not change")
    ck.flag(np.concatenate([[False], tempo_step[1:] == 0]), tempo_idx, "the tempo at step 0 is the header's")

    # 7. Streams: the latest Prog/Drums before each note or pedal.
    stream_tok = np.flatnonzero((types == T["Prog"]) | (types == T["Drums"]))
    stream_val = np.append(values[stream_tok], -1)  # [-1] -> no program yet
    ck.flag(stream_val[:-1] == np.roll(stream_val, 1)[:-1], stream_tok, "the program is already in force")

    # Notes and pedals together ("events", in token order); each field is looked up once, for both.
    note_idx = np.flatnonzero(types == T["Pitch"])
    pedal_idx = np.flatnonzero(types == T["Pedal"])
    ev_idx = np.concatenate([pedal_idx, note_idx])
    if pedal_idx.size:
        ev_idx.sort()
    is_note = types[ev_idx] == T["Pitch"]
    ev_time = time_at(ev_idx)
    ev_stream_token = _running_count(stream_tok, n).take(ev_idx) - 1  # index into stream_tok; -1: none yet
    ev_stream = stream_val[ev_stream_token]
    ev_dur = dur_val[_running_count(dur_idx, n).take(ev_idx)]  # the first Dur after the event: its duration
    note_stream, p_stream = ev_stream[is_note], ev_stream[~is_note]
    ck.flag(note_stream < 0, note_idx, "a note needs a program: 'Prog_<p>' or 'Drums_<k>' first")
    ck.flag(p_stream < 0, pedal_idx, "a pedal needs a program: 'Prog_<p>' or 'Drums_<k>' first")

    # 8. Canonical order of stream events: (time, stream, pedal first, pitch, dur, vel).
    if ev_idx.size > 1:
        # Each event's key as two integers, (time, stream) and (pedal first, pitch, dur, vel), so that
        # comparing consecutive keys is two subtractions (not a lexicographic pass over six rows).
        where = ev_time * _STREAM_SPAN + (ev_stream + 1)
        pitch = np.where(is_note, values[ev_idx], 0)
        velocity = np.where(is_note, values[np.minimum(ev_idx + 1, n - 1)], 0)
        dur_bits = int(HI_BASE ** MAX_HI_DIGITS["Dur"] * lo_base).bit_length()
        what = (((is_note * 128 + pitch) << dur_bits | ev_dur) << 7) | velocity
        d_where, d_what = np.diff(where), np.diff(what)
        same_time_stream = d_where == 0
        stream_back = d_where < 0
        if stream_back.any():  # report a program that goes backwards at its Prog/Drums token
            ck.flag(stream_back, np.append(stream_tok, 0)[ev_stream_token[1:]],
                    "programs out of order: within a position they ascend (Prog before Drums)")
        ck.flag(same_time_stream & (d_what < 0), ev_idx[1:],
                "notes out of order: within a position and program they ascend by pitch, duration, velocity")
        ck.flag(same_time_stream & ~is_note[1:] & ~is_note[:-1], ev_idx[1:], "one pedal per program and position")

    # 9. Pedal intervals of a stream neither overlap nor touch.
    p_onset, p_dur = ev_time[~is_note], ev_dur[~is_note]
    if pedal_idx.size > 1:
        o = np.lexsort((p_onset, p_stream))
        clash = (p_stream[o][1:] == p_stream[o][:-1]) & (p_onset[o][1:] <= (p_onset + p_dur)[o][:-1])
        ck.flag(clash, pedal_idx[o][1:], "pedal overlaps or touches the previous pedal of its program")
    ck.raise_first()

    ts_steps = np.concatenate([[0], bar_start[bar_has_ts]])
    return Piece(
        grid=vocab.grid,
        note_onset=ev_time[is_note],
        note_duration=ev_dur[is_note],
        note_pitch=values[note_idx],
        note_velocity=values[note_idx + 1],
        note_stream=note_stream,
        pedal_onset=p_onset,
        pedal_duration=p_dur,
        pedal_stream=p_stream,
        tempo_step=tempo_step,
        tempo_centi=tempo_centi,
        ts_step=ts_steps.astype(np.int64),
        ts_numerator=ts_val // TS_PACK,
        ts_denominator=ts_val % TS_PACK,
    )


def check(text: str) -> None:
    """Validate token text against the grammar; raise TokenError naming the line and
    token of the first error.  Returns None for valid text."""
    decode_piece(text)


# --------------------------------------------------------------------------- words for other modules
# Other modules ask these instead of spelling words themselves (a word's spelling lives here).

#: The word that starts every bar.
BAR = "Bar"
_NOTE_PREFIX = "Pitch_"
_PROGRAM_PREFIXES = ("Prog_", "Drums_")


def is_note(word: str) -> bool:
    """Whether ``word`` starts a note (each note has exactly one such word)."""
    return word.startswith(_NOTE_PREFIX)


def count_notes(words: list[str]) -> int:
    """Notes in a list of words."""
    return sum(1 for w in words if w.startswith(_NOTE_PREFIX))


def bar_indices(words: list[str]) -> list[int]:
    """Indices of the words that start bars."""
    return [i for i, w in enumerate(words) if w == BAR]


def is_program(word: str) -> bool:
    """Whether ``word`` names a program or drum kit (``Prog_p``, ``Drums_p``)."""
    return word.startswith(_PROGRAM_PREFIXES)


def note_word_ids(word_ids: dict[str, int]) -> list[int]:
    """The ids of the note words in a word -> id map (a tokenizer's vocabulary)."""
    return sorted(i for w, i in word_ids.items() if w.startswith(_NOTE_PREFIX))


def header_words(grid: int, time_signature: tuple[int, int] = (4, 4), tempo_centi: int = 12000) -> list[str]:
    """The canonical header of a piece at ``grid`` with this time signature and tempo
    (hundredths of a qpm); raises MozartError when the format cannot hold them."""
    num, den = time_signature
    if not (1 <= num <= MAX_NUMERATOR and den in DENOMINATORS):
        raise MozartError(f"time signature {num}/{den}: the format holds numerators 1..{MAX_NUMERATOR} over "
                          f"{', '.join(map(str, DENOMINATORS))}")
    if not tempo_representable(tempo_centi):
        raise MozartError(f"tempo {tempo_centi / 100} qpm is not a whole number of microseconds per quarter")
    piece = Piece(grid=validate_grid(grid), ts_numerator=np.array([num]), ts_denominator=np.array([den]),
                  tempo_centi=np.array([tempo_centi]))
    return encode_piece(piece).split()


def format_of_words(words) -> tuple[int | None, int | None]:
    """(format version, grid) named by ``Format_v`` and ``Grid_g`` words among ``words``
    (e.g. a tokenizer's vocabulary); None for one that is absent."""
    version = grid = None
    for w in words:
        if w.startswith("Format_") and w[7:].isdigit():
            version = int(w[7:])
        elif w.startswith("Grid_") and w[5:].isdigit():
            grid = int(w[5:])
    return version, grid
