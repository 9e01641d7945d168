"""Sectional forms: pieces whose sections come back (AABA, ABAB, AAB, ...).

``mozart generate --form AABA --bars 16`` asks for four 4-bar sections where the third is new and
the others the same.  The model writes the first section as any piece (the controls, style and
sampling settings apply); the piece is then laid out section by section, a letter seen before as an
exact copy of its first appearance and a new letter as a placeholder (a copy of the first section,
with the right bar layout); finally each new letter's bars are rewritten by infilling
(``rewrite.rewrite``), left to right, so the model writes them reading the music before them and,
when it was trained with fill-in-the-middle, the music after them (the sections that come back).

The repeats are the request's, the music in every section the model's.  Why a form rather than
waiting for the model to repeat itself: the built-in model almost never repeats a bar (0.2% of its
bars against 17% of real music, docs/training.md), so its pieces wander; a form gives them the
phrase structure of a song or a dance tune.  The new sections read the same style token as the
first.  Every result is valid by construction (the first section by the grammar mask, the new
sections by infilling's, the copies by events).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .controls import Controls, SamplingSettings
from .errors import MozartError
from .events import Piece, changes_only
from .models import LoadedModel
from .rewrite import piece_bars, rewrite, source_streams
from .sampling import generate_pieces
from .tokens import decode_piece, encode_piece

#: Most sections a form may have.
MAX_SECTIONS = 16


def parse_form(form: str, bars: int) -> int:
    """Check a form (letters A-Z, one per section, e.g. ``AABA``) against the bars asked for; return
    the bars of one section.  Raises MozartError with a one-line reason."""
    if not re.fullmatch(rf"[A-Z]{{2,{MAX_SECTIONS}}}", form or ""):
        raise MozartError(f"--form {form!r}: expected 2 to {MAX_SECTIONS} capital letters, one per section, "
                          "e.g. AABA")
    if bars % len(form):
        raise MozartError(f"--form {form}: --bars {bars} is not a multiple of its {len(form)} sections")
    return bars // len(form)


def section_length(piece: Piece, bars: int) -> int:
    """Steps of a generated section of ``bars`` bars (a valid piece's last bar has a note, so its bar
    layout has every bar)."""
    starts, _ = piece_bars(piece)
    if starts.size - 1 != bars:
        raise MozartError(f"the first section has {starts.size - 1} bars where {bars} were asked for")
    return int(starts[bars])


def _separate_pedals(onset: np.ndarray, duration: np.ndarray, stream: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pedal intervals per stream made disjoint and non-touching again after copies were laid end to
    end (a pedal held to the end of a section would touch the next copy's first one): each is cut
    one step before the next one of its stream begins, and dropped if nothing is left."""
    order = np.lexsort((onset, stream))
    onset, duration, stream = onset[order], duration[order].copy(), stream[order]
    same_next = np.append(stream[1:] == stream[:-1], False)
    next_onset = np.append(onset[1:], 0)
    duration = np.where(same_next, np.minimum(duration, next_onset - 1 - onset), duration)
    keep = duration >= 1
    order = np.argsort(onset[keep], kind="stable")
    return onset[keep][order], duration[keep][order], stream[keep][order]


def lay_out(section: Piece, length: int, count: int) -> Piece:
    """``count`` copies of ``section`` end to end, ``length`` steps apart (the caller rewrites the
    sections that are to be new).  Tempo and meter start every copy as they start the section."""
    def tiled(a: np.ndarray) -> np.ndarray:
        return np.tile(a, count)

    def shifted(steps: np.ndarray) -> np.ndarray:  # the k-th copy's steps, k * length later
        return tiled(steps) + np.repeat(np.arange(count, dtype=np.int64) * length, steps.size)

    tempo_step, tempo_centi = shifted(section.tempo_step), tiled(section.tempo_centi)
    ts_step, ts_num, ts_den = shifted(section.ts_step), tiled(section.ts_numerator), tiled(section.ts_denominator)
    tempo, ts = changes_only(tempo_centi), changes_only(ts_num, ts_den)  # effective change lists again
    pedals = _separate_pedals(shifted(section.pedal_onset), tiled(section.pedal_duration), tiled(section.pedal_stream))
    return replace(section, note_onset=shifted(section.note_onset), note_duration=tiled(section.note_duration),
                   note_pitch=tiled(section.note_pitch), note_velocity=tiled(section.note_velocity),
                   note_stream=tiled(section.note_stream), pedal_onset=pedals[0], pedal_duration=pedals[1],
                   pedal_stream=pedals[2], tempo_step=tempo_step[tempo], tempo_centi=tempo_centi[tempo],
                   ts_step=ts_step[ts], ts_numerator=ts_num[ts], ts_denominator=ts_den[ts])


def form_piece(loaded: LoadedModel, form: str, section_text: str, section_bars: int, settings: SamplingSettings,
               seed: int, style: str | None = None, ranges: dict[int, tuple[int, int]] | None = None) -> str:
    """The whole piece of ``form`` from its first section's text (``section_bars`` bars): copies for
    the letters seen before, infilling for each new one (with a generator seeded ``seed``, reading the
    ``style`` token as the first section did, and keeping a stand-in to ``ranges`` as it did)."""
    section = decode_piece(section_text)
    length = section_length(section, section_bars)
    piece = lay_out(section, length, len(form))
    generator = np.random.default_rng(seed)
    streams = source_streams(section)
    for k, letter in enumerate(form):
        if k == 0 or letter in form[:k]:
            continue  # the model's own first section, or a copy already laid out
        piece = rewrite(loaded, piece, k * section_bars, (k + 1) * section_bars - 1, streams, False, settings,
                        generator, style=style, ranges=ranges)
    return encode_piece(piece)


def generate_forms(loaded: LoadedModel, form: str, controls: Controls, settings: SamplingSettings,
                   seeds: list[int], progress: Callable[[float], None] | None = None) -> list[str]:
    """One piece of ``form`` with ``controls.bars`` bars in all per seed: its first section as
    ``generate`` samples it with that seed (the first sections in one batch), then its new sections.
    ``progress`` is called with the share of the pieces done."""
    section_bars = parse_form(form, controls.bars)
    firsts = generate_pieces(loaded, replace(controls, bars=section_bars), settings, seeds=seeds)
    out = []
    for seed, text in zip(seeds, firsts):
        out.append(form_piece(loaded, form, text, section_bars, settings, seed, controls.style,
                              {stream: (low, high) for stream, low, high in controls.ranges}))
        if progress is not None:
            progress(len(out) / len(seeds))
    return out


__all__ = ["MAX_SECTIONS", "form_piece", "generate_forms", "lay_out", "parse_form", "section_length"]
