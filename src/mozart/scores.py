"""Load a piece from whatever a user hands over: a MIDI file, a token file, or a Score."""

from __future__ import annotations

import os
from pathlib import Path

import symusic

from .errors import MozartError
from .files import read_text
from .midi import read_midi, to_score
from .tokens import decode_piece

TOKEN_SUFFIXES = (".txt", ".tok", ".tokens")


def load_score(source: symusic.Score | str | os.PathLike) -> symusic.Score:
    """A Score as is; a token file (.txt) decoded; anything else read as MIDI."""
    if isinstance(source, symusic.Score):
        return source
    path = Path(source)
    if path.suffix.lower() in TOKEN_SUFFIXES:
        text = read_text(path)
        try:
            return to_score(decode_piece(text))
        except MozartError as e:  # name the file the malformed tokens came from
            raise MozartError(f"{path}: {e}") from None
    return read_midi(path)
