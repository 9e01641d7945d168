"""Mozart: symbolic music generation with a lossless, human-readable token format.

The public API mirrors the CLI::

    text = mozart.encode("piece.mid")          # MIDI -> tokens
    score = mozart.decode(text)                # tokens -> symusic.Score
    mozart.check(text)                         # raises TokenError on malformed text
"""

from __future__ import annotations

import os

import symusic

from .errors import MozartError
from .events import Piece
from .midi import quantize, read_midi, to_score, write_midi
from .tokens import FORMAT_VERSION, TokenError, Vocabulary, check, decode_piece, encode_piece, vocabulary

__all__ = [
    "FORMAT_VERSION",
    "MozartError",
    "Piece",
    "TokenError",
    "Vocabulary",
    "check",
    "decode",
    "decode_piece",
    "encode",
    "encode_piece",
    "quantize",
    "read_midi",
    "vocabulary",
    "write_midi",
]
__version__ = "0.1.0"


def encode(score_or_path: symusic.Score | str | os.PathLike, grid: int = 24) -> str:
    """Encode a symusic Score or a MIDI file as canonical token text at ``grid`` steps
    per quarter note.  Raises MozartError for unreadable files or unsupported content."""
    score = score_or_path if isinstance(score_or_path, symusic.Score) else read_midi(score_or_path)
    try:
        piece = quantize(score, grid)
    except ValueError as e:  # an unsupported grid
        raise MozartError(str(e)) from None
    return encode_piece(piece)


def decode(text: str, ticks_per_quarter: int | None = None) -> symusic.Score:
    """Decode token text into a symusic Score (one track per program/drum stream).

    ``ticks_per_quarter`` defaults to the multiple of the grid nearest below 480.
    Raises TokenError naming the line and token of the first error."""
    return to_score(decode_piece(text), ticks_per_quarter)
