"""Mozart: symbolic music generation with a lossless, human-readable token format.

The public API mirrors the CLI::

    text = mozart.encode("piece.mid")          # MIDI -> tokens
    score = mozart.decode(text)                # tokens -> symusic.Score
    mozart.check(text)                         # raises TokenError on malformed text
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from .defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from .errors import MozartError

if TYPE_CHECKING:
    from collections.abc import Callable

    import symusic

    from .events import Piece
    from .plotprocess import PlotProcess
    from .tokens import FORMAT_VERSION, TokenError, Vocabulary, check, decode_piece, encode_piece, vocabulary

# Everything but the error type is imported on first use: importing the package costs nothing
# (so a Ctrl-C while `mozart` starts lands in the CLI's handler, see __main__.py), and training
# on pre-tokenized data (e.g. on a GPU machine) never loads symusic.
_LAZY = {"quantize": "midi", "read_midi": "midi", "to_score": "midi", "write_midi": "midi", "load_score": "scores",
         "Piece": "events", "FORMAT_VERSION": "tokens", "TokenError": "tokens", "Vocabulary": "tokens",
         "check": "tokens", "decode_piece": "tokens", "encode_piece": "tokens", "vocabulary": "tokens"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mozart' has no attribute {name!r}")

__all__ = [
    "FORMAT_VERSION",
    "MozartError",
    "Piece",
    "TokenError",
    "Vocabulary",
    "check",
    "decode",
    "decode_ids",
    "decode_piece",
    "encode",
    "encode_piece",
    "generate",
    "infill",
    "accompany",
    "write_sample",
    "write_samples",
    "load_score",
    "plot",
    "quantize",
    "read_midi",
    "render",
    "vocabulary",
    "write_midi",
]
__version__ = "0.1.0"


def encode(score_or_path: symusic.Score | str | os.PathLike, grid: int = 24) -> str:
    """Encode a symusic Score or a MIDI file as canonical token text at ``grid`` steps
    per quarter note.  Raises MozartError for unreadable files or unsupported content."""
    import symusic

    from .midi import quantize, read_midi

    score = score_or_path if isinstance(score_or_path, symusic.Score) else read_midi(score_or_path)
    from .tokens import encode_piece

    return encode_piece(quantize(score, grid))


def render(
    score_or_path: symusic.Score | str | os.PathLike,
    out: str | os.PathLike | None = None,
    soundfont: str | os.PathLike | None = None,
    sample_rate: int = 44100,
    gain: float = 0.2,
    loudness: float | None = -16.0,
):
    """Render a Score, MIDI file or token file with FluidSynth; write ``out`` (.wav/.flac)
    if given and return the float32 stereo samples, shape (n, 2)."""
    from .audio import RenderSettings, render_score, write_audio
    from .scores import load_score

    settings = RenderSettings(sample_rate=sample_rate, gain=gain, loudness=loudness)
    if out is not None:
        audio_format_check(out)
    audio = render_score(load_score(score_or_path), soundfont, settings)
    if out is not None:
        write_audio(audio, out, sample_rate)
    return audio


def audio_format_check(out: str | os.PathLike) -> None:
    """Fail before rendering when ``out`` cannot be written as audio."""
    from pathlib import Path

    from .audio import AUDIO_FORMATS

    if Path(out).suffix.lower() not in AUDIO_FORMATS:
        raise MozartError(f"{out}: unsupported audio format (use .wav or .flac)")


def plot(score_or_path: symusic.Score | str | os.PathLike, out: str | os.PathLike, grid: int = 24) -> None:
    """Draw a piano roll of a Score, MIDI file or token file into ``out`` (PNG)."""
    from pathlib import Path

    import symusic

    from .midi import quantize
    from .pianoroll import save_piano_roll
    from .scores import load_score

    title = None if isinstance(score_or_path, symusic.Score) else Path(score_or_path).name
    save_piano_roll(quantize(load_score(score_or_path), grid), out, title)


def generate(
    model: str | os.PathLike | None = None,
    bars: int = 16,
    programs: tuple[int, ...] | None = None,
    drums: bool = True,
    tempo: float | None = None,
    time_signature: tuple[int, int] | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = 0,
    top_p: float = DEFAULT_TOP_P,
    n: int = 1,
    seed: int = 0,
    prompt: str | os.PathLike | None = None,
    prompt_bars: int = 4,
    adapter: str | os.PathLike | None = None,
    constrained: bool = True,
    style: str | None = None,
    form: str | None = None,
    on_stand_ins: Callable[[dict[int, int]], None] | None = None,
) -> list[str]:
    """Sample ``n`` pieces as token texts, valid by construction unless ``constrained`` is
    False (see `mozart generate`).  ``model`` defaults to the built-in model; the pieces (and
    a ``prompt`` MIDI file, quantized) are at the model's grid.  ``form`` (e.g. ``"AABA"``) lays
    the ``bars`` out in equal sections, a letter seen before repeating its first appearance and each
    new one written by infilling (mozart/form.py).  Constrained, ``programs`` and a prompt's programs
    that the model was not trained on are read and written through stand-ins it knows
    (``mozart.standins``); ``on_stand_ins`` is told them, ``{program: stand-in}``.  Raises MozartError
    for an option out of range (the same checks as the CLI and the studio)."""
    from .controls import Controls, SamplingSettings, check_options, check_style, check_time_signature
    from .models import default_model_dir, load_sampler
    from .prompts import prompt_piece
    from .rewrite import source_streams
    from .sampling import generate_pieces
    from .standins import inverse, restream, stand_in_ranges, stand_ins
    from .tokens import decode_piece, encode_piece

    check_options(bars=bars, n=n, temperature=temperature, top_p=top_p, top_k=top_k, tempo=tempo, seed=seed,
                  prompt_bars=prompt_bars, programs=programs)
    if time_signature is not None:
        check_time_signature(*time_signature)
    check_style(style)
    if form is not None:
        from .form import parse_form

        parse_form(form, bars)
        if prompt or not constrained:
            raise MozartError(f"--form {form}: not with {'--prompt' if prompt else '--no-constraints'} (a form "
                              "starts from nothing, and its sections are written under the grammar)")
    folder = model or default_model_dir()
    if folder is None:
        raise MozartError("no built-in model in this installation: pass a model folder (made by `mozart train`), "
                          "or build it with `make default-model`")
    loaded = load_sampler(folder, adapter)
    start, start_bars = prompt_piece(prompt, prompt_bars, loaded.grid) if prompt else (None, 0)
    # unconstrained text need not decode, so it could not be renamed back: the raw model, as it is
    mapping = stand_ins(loaded.programs, [*(programs or ()), *(source_streams(start) if start else ())]) \
        if constrained else {}
    if on_stand_ins is not None:
        on_stand_ins(dict(mapping))
    controls = Controls(bars, tuple(mapping.get(p, p) for p in programs) if programs else None, drums, tempo,
                        time_signature, style,
                        tuple((stand_in, *bounds) for stand_in, bounds in stand_in_ranges(mapping).items()))
    settings = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p, constrained=constrained)
    if form is not None:
        from .form import generate_forms

        texts = generate_forms(loaded, form, controls, settings, [seed + i for i in range(n)])
    else:
        prompt_words = (encode_piece(restream(start, mapping)).split(), start_bars) if start else None
        texts = generate_pieces(loaded, controls, settings, n, seed, prompt_words)
    back = inverse(mapping)
    return [encode_piece(restream(decode_piece(t), back)) for t in texts] if back else texts


def _rewrite(source, model, adapter, bars, programs, drums, keep: bool, temperature: float, top_k: int,
             top_p: float, n: int, seed: int, style: str | None = None, on_stand_ins=None,
             register: str = "any", harmony: str = "free", fill: str = "bar") -> list[str]:
    """What ``infill`` and ``accompany`` share: checks, loading, the bars, the streams."""
    from .controls import SamplingSettings, check_options
    from .events import DRUM_OFFSET
    from .midi import quantize
    from .models import default_model_dir, load_sampler
    from .register import check_fill, check_harmony, check_register
    from .rewrite import parse_bars, piece_bars, rewrite_pieces, source_streams
    from .scores import load_score

    check_options(n=n, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, programs=programs)
    check_register(register)
    check_harmony(harmony)
    check_fill(fill)
    folder = model or default_model_dir()
    if folder is None:
        raise MozartError("no built-in model in this installation: pass a model folder (made by `mozart train`)")
    loaded = load_sampler(folder, adapter)
    piece = quantize(load_score(source), loaded.grid)
    n_bars = piece_bars(piece)[0].size - 1
    first, last = parse_bars(bars, n_bars) if bars is not None else (0, n_bars - 1)
    if programs or keep:
        streams = set(programs or ()) | ({DRUM_OFFSET} if drums else set())
    else:  # infilling: the source's instruments, less its drums with drums=False, plus a kit with True
        streams = {s for s in source_streams(piece) if drums is not False or s < DRUM_OFFSET}
        streams |= {DRUM_OFFSET} if drums else set()
    settings = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p)
    return rewrite_pieces(loaded, piece, first, last, sorted(streams), keep, settings, n, seed, style=style,
                          on_stand_ins=on_stand_ins, register=register, harmony=harmony, fill=fill)


def infill(source: str | os.PathLike, bars: str, model: str | os.PathLike | None = None,
           programs: tuple[int, ...] | None = None, drums: bool | None = None, temperature: float = DEFAULT_TEMPERATURE,
           top_k: int = 0, top_p: float = DEFAULT_TOP_P, n: int = 1, seed: int = 0,
           adapter: str | os.PathLike | None = None, style: str | None = None,
           on_stand_ins: Callable[[dict[int, int]], None] | None = None) -> list[str]:
    """Rewrite bars ``bars`` (``"5-8"``, 1-based, inclusive) of a MIDI or token file; return ``n``
    canonical texts at the model's grid.  Every note that starts outside those bars is kept note
    for note (notes starting before them may ring into them); the tempo map, time signatures
    and pedal are the source's.  New notes use ``programs`` (default: the source's instruments;
    ``drums`` False drops its drum kits, True adds the standard kit).  A model trained with
    fill-in-the-middle also reads the bars after the gap (docs/generation.md); ``style``, the style
    token it reads after ``<bos>`` (a model trained with styles).  Programs the model was not trained
    on are read and written through stand-ins it knows (``mozart.standins``); ``on_stand_ins`` is told
    them, ``{program: stand-in}``."""
    return _rewrite(source, model, adapter, bars, programs, drums, False, temperature, top_k, top_p, n, seed, style,
                    on_stand_ins)


def accompany(source: str | os.PathLike, programs: tuple[int, ...] = (), drums: bool = False,
              bars: str | None = None, model: str | os.PathLike | None = None,
              temperature: float = DEFAULT_TEMPERATURE,
              top_k: int = 0, top_p: float = DEFAULT_TOP_P, n: int = 1, seed: int = 0,
              adapter: str | os.PathLike | None = None,
              on_stand_ins: Callable[[dict[int, int]], None] | None = None,
              register: str = "below", harmony: str = "consonant", fill: str = "beat") -> list[str]:
    """Add parts for ``programs`` (and a drum kit with ``drums``) to every bar of a MIDI or token
    file, or to ``bars`` (``"5-8"``), keeping every existing note exactly; ``n`` canonical texts.
    Each part plays in every bar, entering on its downbeat where that is still open, and with ``fill``
    ``"beat"`` sounds on every beat (a note starting there or held through it; ``"bar"``: it may rest).  ``register``:
    each new note starts a minor third or more ``"below"`` the existing music's top line (its melody)
    or ``"above"`` its bottom line (its bass), with the lowest of several new parts under the others;
    or ``"any"`` where in the instrument's range; ``harmony``: ``"consonant"``, no new note starting a
    second, tritone or seventh from a note sounding then, or ``"free"`` (``mozart.register``).  The model
    reads the music before each bar and the kept notes as they come (not the future).  Programs
    the model was not trained on, requested or in the source, are read and written through stand-ins
    it knows (``mozart.standins``; a bass is written as the cello, in a bass's range); ``on_stand_ins``
    is told them, ``{program: stand-in}``."""
    if not programs and not drums:
        raise MozartError("accompany: name at least one --program (or --drums) to add")
    return _rewrite(source, model, adapter, bars, tuple(programs), drums, True, temperature, top_k, top_p, n,
                    seed, on_stand_ins=on_stand_ins, register=register, harmony=harmony, fill=fill)


def write_sample(text: str, stem: str | os.PathLike, max_audio_seconds: float | None = None) -> dict:
    """Write a generated piece as ``stem``.txt, .mid, .png and .wav; return what became of it:
    ``{"valid": bool}``, plus ``"error"`` for text that does not decode (possible only
    without constraints) or ``"audio": "skipped: <why>"`` when FluidSynth or a SoundFont
    is missing, or the piece lasts longer than ``max_audio_seconds``."""
    return write_samples([text], [stem], max_audio_seconds)[0]


def write_samples(texts: list[str], stems: list[str | os.PathLike],
                  max_audio_seconds: float | None = None, plotter: PlotProcess | None = None) -> list[dict]:
    """``write_sample`` for several pieces, faster: FluidSynth renders in C with the GIL released, so
    the pieces' audio is rendered two at a time in threads while this thread draws the piano rolls
    (drawing is Python work that holds the GIL: threads would not speed it up), or while ``plotter``
    (a ``plotprocess.PlotProcess``, which the CLI starts early) draws them in its own process."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .files import write_atomic
    from .midi import write_midi

    results: list[dict] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        drawn = []
        for text, stem in zip(texts, stems):
            stem = Path(stem)
            write_atomic(stem.with_suffix(".txt"), text + "\n")
            try:
                score = decode(text)
            except MozartError as e:
                results.append({"valid": False, "error": str(e)})
                continue
            write_midi(score, stem.with_suffix(".mid"))
            results.append({"valid": True})
            drawn.append((len(results) - 1, score, stem,
                          pool.submit(_write_audio_of, score, stem.with_suffix(".wav"), max_audio_seconds),
                          plotter.plot(text, stem.with_suffix(".png")) if plotter else None))
        for _, score, stem, _, roll in drawn:
            if roll is None:
                plot(score, stem.with_suffix(".png"))
        for index, _, _, audio, roll in drawn:
            results[index].update(audio.result())
            if roll is not None:
                roll.result()
    return results


def _write_audio_of(score: symusic.Score, path, max_audio_seconds: float | None) -> dict:
    """write_sample's audio: ``{}``, or ``{"audio": "skipped: <why>"}``."""
    if max_audio_seconds is not None:
        seconds = score.to("second").end()
        if seconds > max_audio_seconds:
            return {"audio": f"skipped: {seconds / 60:.1f} minutes, longer than the "
                             f"{max_audio_seconds / 60:g} minutes allowed"}
    try:
        render(score, path)
    except MozartError as e:
        return {"audio": f"skipped: {e}"}
    return {}


def decode(text: str, ticks_per_quarter: int | None = None) -> symusic.Score:
    """Decode token text into a symusic Score (one track per program/drum stream).

    ``ticks_per_quarter`` defaults to the multiple of the grid nearest below 480.
    Raises TokenError naming the line and token of the first error."""
    from .midi import to_score
    from .tokens import decode_piece

    return to_score(decode_piece(text), ticks_per_quarter)


def decode_ids(ids, grid: int = 24, ticks_per_quarter: int | None = None) -> symusic.Score:
    """Decode token ids (those of the grid's Hugging Face tokenizer, e.g. a model's output or a
    token store's row; specials are skipped) into a symusic Score without building text: the
    fast path.  Raises TokenError naming the first error, as :func:`decode` does."""
    from .midi import to_score
    from .tokenizer import piece_of_ids

    return to_score(piece_of_ids(ids, grid), ticks_per_quarter)
