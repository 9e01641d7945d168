"""Infilling and accompaniment: rewrite some bars of a piece, or add parts to it, keeping the rest.

Both rewrite a *span* of bars (0-based ``first``..``last``) of a quantized piece, a chunk at a
time so that any length fits the model's context:

- **infill** removes the notes that *start* in the span and writes new ones there (notes that
  start before the span are kept and may ring into it; new notes may ring past its end);
- **accompany** keeps every note and adds new ones for the requested streams.

For each chunk the model reads the bars before it (``<bos>`` + header + up to ``PREV_BARS`` bars)
and, when it was trained for fill-in-the-middle (``lmdata.FimWindows``) and infilling, up to
``NEXT_BARS`` bars after the span: ``<fim_prefix> <bos> before <fim_suffix> after <fim_middle>``, or
suffix first for a model trained so (``fim.fim_input``).
Sampling is masked by ``templates.SpanConstraint``: the source's bar layout, the kept notes,
the new streams.  The result is put together from events: the source's tempo map, time
signatures and pedal are kept as they are, and the text is the canonical encoding of the result,
so every output passes ``check`` and keeps every note outside what was asked for, note for note.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .controls import SamplingSettings, check_model_style
from .errors import MozartError
from .events import DRUM_OFFSET, Piece, bar_layout, bar_steps, slice_steps
from .fim import fim_ids, fim_input, fim_order_of
from .grammar import new_state
from .masks import CLOSING_MARGIN
from .models import LoadedModel
from .register import (
    BASS_GAP,
    GAP,
    beat_steps,
    check_fill,
    check_harmony,
    check_register,
    clash_classes,
    line_bounds,
    lowest_part,
)
from .sampling import _encoder_context, sample_span
from .standins import inverse, restream, stand_in_ranges, stand_ins
from .templates import FILL_WORDS, SpanConstraint, note_words
from .tokenizer import BOS, EOS, style_token
from .tokens import TS_PACK, bar_indices, encode_piece

#: Bars before a chunk the model reads (fewer when the context is short).
PREV_BARS = 8
#: Bars after the span a fill-in-the-middle model reads (fewer when they do not fit).  Eight, not
#: four: a tune's phrases come back after 4-8 bars, and a model that copies reads them there
#: (bench/infill.py: 8 bars after a gap lower its bits/note far more than 4 do).
NEXT_BARS = 8
#: Tokens set aside per bar and new stream for new notes when accompanying.
ACCOMPANY_TOKENS_PER_BAR = 40
#: Tokens set aside per bar when infilling (more when the source's bars were fuller).
INFILL_TOKENS_PER_BAR = 32
#: Fewest tokens per bar for new notes, when the music around leaves no more room.
MIN_TOKENS_PER_BAR = 8


def note_table(piece: Piece) -> np.ndarray:
    """The notes as rows of (onset, stream, pitch, duration, velocity)."""
    return np.stack([piece.note_onset, piece.note_stream, piece.note_pitch, piece.note_duration,
                     piece.note_velocity], axis=1).astype(np.int64).reshape(-1, 5)


def with_notes(piece: Piece, table: np.ndarray) -> Piece:
    """``piece`` with its notes replaced by ``table``'s rows."""
    t = np.asarray(table, dtype=np.int64).reshape(-1, 5)
    return replace(piece, note_onset=t[:, 0], note_stream=t[:, 1], note_pitch=t[:, 2], note_duration=t[:, 3],
                   note_velocity=t[:, 4])


def piece_bars(piece: Piece) -> tuple[np.ndarray, np.ndarray]:
    """(start step of every bar and then the end of the last, packed time signature of every bar)."""
    starts, which = bar_layout(piece)
    if starts.size == 0:
        raise MozartError("the piece is empty: there are no bars to rewrite")
    num, den = piece.ts_numerator[which], piece.ts_denominator[which]
    end = starts[-1] + bar_steps(int(num[-1]), int(den[-1]), piece.grid)
    return np.append(starts, end), num * TS_PACK + den


def parse_bars(text: str, n_bars: int) -> tuple[int, int]:
    """``"5-8"`` (1-based, inclusive; ``"5"`` is one bar) -> 0-based (first, last), checked
    against the piece's ``n_bars``."""
    a, sep, b = str(text).strip().partition("-")
    try:
        first, last = int(a), int(b) if sep else int(a)
    except ValueError:
        raise MozartError(f"--bars {text!r}: expected A-B, e.g. 5-8") from None
    if not 1 <= first <= last <= n_bars:
        raise MozartError(f"--bars {text}: the piece has bars 1-{n_bars}; expected 1 <= A <= B <= {n_bars}")
    return first - 1, last - 1


@dataclass
class _Chunk:
    """One model call: bars [x, y) rewritten, the model reading from bar lo."""

    x: int
    y: int
    lo: int
    prompt_words: list[str]
    model_input: list[int]
    encoder_input: list[int] | None
    constraint: SpanConstraint
    budget: int


@dataclass
class _Request:
    """What every candidate chunk of one planning step reads: computed once, not per candidate."""

    loaded: LoadedModel
    piece: Piece
    bars: tuple[np.ndarray, np.ndarray]  # piece_bars(piece)
    streams: frozenset[int]
    keep: bool
    vocab: dict[str, int]  # the tokenizer's
    notes: np.ndarray  # note_table(piece)
    lo_base: int  # low-digit words of positions and durations at the model's grid
    style_id: int | None = None  # the style control token the model reads after <bos> (None: any style)
    ranges: dict[int, tuple[int, int]] | None = None  # SpanConstraint's range overrides
    bounds: np.ndarray | None = None  # register.line_bounds of the source's notes, on the piece's step axis
    lowest_part: int | None = None  # register.lowest_part of the new streams (None: no order among them)
    clashes: np.ndarray | None = None  # register.clash_classes of the source's notes (None: free harmony)
    beats: np.ndarray | None = None  # register.beat_steps of the bars to fill on every beat (None: fill bar)
    bass_below: int = 0  # semitones the lowest new part keeps further under the top line (SpanConstraint)

    @classmethod
    def of(cls, loaded: LoadedModel, piece: Piece, bars, streams, keep: bool, style: str | None = None,
           ranges: dict[int, tuple[int, int]] | None = None, bounds: np.ndarray | None = None,
           lowest: int | None = None, clashes: np.ndarray | None = None, beats: np.ndarray | None = None,
           bass_below: int = 0) -> _Request:
        vocab = loaded.tokenizer.get_vocab()
        return cls(loaded, piece, bars, frozenset(streams), keep, vocab, note_table(piece),
                   new_state(loaded.grid).vocab.lo_base, vocab[style_token(style)] if style else None, ranges,
                   bounds, lowest, clashes, beats, bass_below)


def _chunk(r: _Request, x: int, y: int, lo: int, after: int, roomy: bool, slide: bool = False) -> _Chunk | None:
    """The model call for bars [x, y) reading from bar ``lo`` (and ``after`` bars after the span,
    FIM only), or None when it does not fit the model's context with room for the new notes
    (``roomy``: as many as the source had there, else a few per bar).  With ``slide`` it never
    refuses: the span may outgrow the context, and sampling slides its window."""
    loaded, piece, keep, streams, vocab, notes = r.loaded, r.piece, r.keep, r.streams, r.vocab, r.notes
    starts, ts = r.bars
    in_span = (notes[:, 0] >= starts[x]) & (notes[:, 0] < starts[y])
    seen = piece if keep else with_notes(piece, notes[~in_span])
    stop = int(starts[min(y + after, starts.size - 1)]) if y + after < starts.size - 1 else None
    words = encode_piece(slice_steps(seen, int(starts[lo]), stop)).split()
    bar_at = bar_indices(words)
    prompt = words[: bar_at[x - lo]] if len(bar_at) > x - lo else words
    forced = notes[in_span] - np.array([starts[lo], 0, 0, 0, 0]) if keep else np.zeros((0, 5), np.int64)
    span = y - x
    if not roomy:
        free = MIN_TOKENS_PER_BAR * span
    elif keep:
        free = ACCOMPANY_TOKENS_PER_BAR * len(streams) * span
    else:
        free = max(INFILL_TOKENS_PER_BAR * span, 7 * int(in_span.sum()))
    forced_words = int(note_words(forced[:, 3], r.lo_base).sum())
    beats = None if r.beats is None else r.beats[(r.beats >= starts[x]) & (r.beats < starts[y])] - starts[lo]
    reserve = FILL_WORDS * span * len(streams) if keep else 0  # accompaniment: each part in every bar (templates.py)
    if beats is not None:  # and each melodic part on every beat
        reserve += FILL_WORDS * beats.size * sum(s < DRUM_OFFSET for s in streams)
    need = forced_words + free + reserve + 3 * span + 6 + CLOSING_MARGIN
    context = loaded.model.config.max_position_embeddings
    ids = [vocab[w] for w in prompt]
    head = [vocab[BOS]] + ([r.style_id] if r.style_id is not None else [])  # as generation starts a piece
    markers = fim_ids(vocab) if after else None
    suffix = words[bar_at[y - lo]:] if after and len(bar_at) > y - lo else []
    encoder_input = None
    if loaded.model.config.is_encoder_decoder:
        encoder_input = _encoder_context(prompt, vocab, vocab[BOS])
        if (len(encoder_input) > context or need > context) and not slide:
            return None
        model_input, budget = [], need
    else:
        if markers is not None and suffix:
            ends = stop is None
            model_input = fim_input([*head, *ids], [*(vocab[w] for w in suffix), *([vocab[EOS]] if ends else [])],
                                    markers, fim_order_of(loaded.model))
        else:
            model_input = [*head, *ids]
        if len(model_input) + need > context and not slide:
            return None
        budget = need  # new notes get about the room the source's notes had: no more
    state = new_state(loaded.grid)
    for w in prompt:
        state.advance(state.vocab.index[w])
    # the piece keeps its bar count: if nothing else starts in its last bar, the rewrite puts a note there
    fill_last = not keep and y == starts.size - 1 and bar_layout(seen)[0].size < starts.size - 1
    bounds = None if r.bounds is None else r.bounds[int(starts[lo]): int(starts[y])]
    clashes = None if r.clashes is None else r.clashes[int(starts[lo]): int(starts[y])]
    held = None
    if keep:  # new parts' notes from before the span (earlier chunks) that ring into it sound there too
        before = np.isin(notes[:, 1], list(streams)) & (notes[:, 0] < starts[x]) \
            & (notes[:, 0] + notes[:, 3] > starts[x])
        held = notes[before] - np.array([starts[lo], 0, 0, 0, 0])
    constraint = SpanConstraint(state, x - lo, span, starts[lo: y + 1] - starts[lo], ts[lo:y], forced, streams,
                                fill_last, fill_every_bar=keep, ranges=r.ranges, bounds=bounds,
                                lowest_part=r.lowest_part, clashes=clashes, beats=beats, held=held,
                                bass_below=r.bass_below)
    return _Chunk(x, y, lo, prompt, model_input, encoder_input, constraint, budget)


def _plan(r: _Request, x: int, last: int) -> _Chunk:
    """The largest chunk from bar x that fits, with as much of the music around it as fits."""
    markers = fim_ids(r.vocab)
    has_fim = not r.keep and markers is not None and markers.middle < r.loaded.model.config.vocab_size
    n_bars = r.bars[0].size - 1
    for roomy in (True, False):
        size = last + 1 - x
        while size >= 1:
            y = x + size
            afters = [a for a in (NEXT_BARS, 4, 2, 1) if has_fim and y + a <= n_bars] + [0]
            if has_fim and y < n_bars and n_bars - y < NEXT_BARS:
                afters.insert(0, n_bars - y)  # the rest of the piece, with its end
            for prev in (PREV_BARS, 4, 2, 1, 0):
                for after in afters:
                    chunk = _chunk(r, x, y, max(0, x - prev), after, roomy)
                    if chunk is not None:
                        return chunk
            size //= 2
    # a bar fuller than the context: one bar at a time, from its header, the window sliding
    return _chunk(r, x, x + 1, x, 0, roomy=False, slide=True)


def rewrite(loaded: LoadedModel, piece: Piece, first: int, last: int, streams, keep: bool,
            settings: SamplingSettings, generator: np.random.Generator,
            progress: Callable[[float], None] | None = None, style: str | None = None,
            ranges: dict[int, tuple[int, int]] | None = None, register: str = "any",
            harmony: str = "free", fill: str = "bar") -> Piece:
    """``piece`` with bars ``first``..``last`` (0-based, inclusive) rewritten: new notes in
    ``streams``; with ``keep`` the notes there stay (accompaniment), otherwise those that start
    there are replaced (infilling).  ``style``: the style control token the model reads after
    ``<bos>``, as when it generates (a decoder trained with styles; controls.check_model_style).
    ``ranges``: new pitches of a stream, where not its instrument's usual range.  ``register``
    (accompaniment): new notes below the source's top line, above its bottom line, or anywhere;
    ``harmony`` (accompaniment): ``consonant`` or ``free``; ``fill`` (accompaniment): each new part sounds
    on every ``beat`` or plays in every ``bar`` (register.py)."""
    check_model_style(style, loaded.model, loaded.tokenizer.get_vocab())
    check_register(register)
    check_harmony(harmony)
    check_fill(fill)
    bars = piece_bars(piece)
    starts = bars[0]
    if not 0 <= first <= last < starts.size - 1:
        raise MozartError(f"bars {first + 1}-{last + 1}: the piece has bars 1-{starts.size - 1}")
    # the line the new notes keep to, and the notes they must not clash with, are the source's, not the
    # parts added as the chunks go
    source, steps = note_table(piece), int(starts[-1])
    bounds = line_bounds(source, steps, register) if keep else None
    lowest = lowest_part(streams, ranges) if keep and register != "any" else None  # a bass under new chords
    clashes = clash_classes(source, steps) if keep and harmony == "consonant" else None
    beats = beat_steps(starts, bars[1], piece.grid) if keep and fill == "beat" else None
    bass_below = BASS_GAP - GAP if bounds is not None and register == "below" and lowest is not None else 0
    x = first
    while x <= last:
        request = _Request.of(loaded, piece, bars, streams, keep, style, ranges, bounds, lowest, clashes, beats,
                              bass_below)
        chunk = _plan(request, x, last)
        sample_span(loaded.model, loaded.tokenizer, chunk.model_input, chunk.constraint, settings,
                    budget=chunk.budget, encoder_ids=chunk.encoder_input, generator=generator)
        written = np.array(chunk.constraint.notes, dtype=np.int64).reshape(-1, 5) \
            + np.array([starts[chunk.lo], 0, 0, 0, 0])
        notes = request.notes
        if keep:
            kept = Counter(map(tuple, notes[(notes[:, 0] >= starts[chunk.x]) & (notes[:, 0] < starts[chunk.y])]))
            new = []
            for row in map(tuple, written):
                if kept[row]:
                    kept[row] -= 1
                else:
                    new.append(row)
            piece = with_notes(piece, np.concatenate([notes, np.array(new, dtype=np.int64).reshape(-1, 5)]))
        else:
            outside = (notes[:, 0] < starts[chunk.x]) | (notes[:, 0] >= starts[chunk.y])
            piece = with_notes(piece, np.concatenate([notes[outside], written]))
        x = chunk.y
        if progress is not None:
            progress((x - first) / (last + 1 - first))
    return piece


def source_streams(piece: Piece) -> tuple[int, ...]:
    """The streams the piece's notes use, in order."""
    return tuple(int(s) for s in np.unique(piece.note_stream))


def rewrite_pieces(loaded: LoadedModel, piece: Piece, first: int, last: int, streams, keep: bool,
                   settings: SamplingSettings, n: int = 1, seed: int = 0,
                   progress: Callable[[float], None] | None = None, style: str | None = None,
                   on_stand_ins: Callable[[dict[int, int]], None] | None = None, register: str = "any",
                   harmony: str = "free", fill: str = "bar") -> list[str]:
    """``n`` rewrites of ``piece`` as canonical texts; rewrite i uses seed ``seed + i`` (``style``,
    ``register``, ``harmony`` and ``fill`` as in ``rewrite``).  Programs the model never saw are read and written
    through stand-ins (standins.py): new notes keep to the requested program's range, and the texts name it.
    ``on_stand_ins`` is told them (``{program: stand-in}``, maybe empty) before sampling."""
    if not streams:
        raise MozartError("no instruments to write: the piece has no notes; pass --program")
    mapping = stand_ins(loaded.programs, [*source_streams(piece), *streams])
    if on_stand_ins is not None:
        on_stand_ins(dict(mapping))
    view = restream(piece, mapping)
    view_streams = sorted(mapping.get(s, s) for s in streams)
    ranges, back = stand_in_ranges(mapping), inverse(mapping)
    texts = []
    for i in range(n):
        report = None if progress is None else (lambda share, i=i: progress((i + share) / n))
        out = rewrite(loaded, view, first, last, view_streams, keep, settings, np.random.default_rng(seed + i),
                      report, style, ranges, register, harmony, fill)
        texts.append(encode_piece(restream(out, back)))
    return texts


__all__ = ["note_table", "parse_bars", "piece_bars", "rewrite", "rewrite_pieces", "source_streams", "with_notes"]
