"""MIDI prompts: the bars of a file that generation continues, at the model's grid."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import MozartError

if TYPE_CHECKING:
    from .events import Piece


def prompt_from_midi(path: str | os.PathLike, bars: int, grid: int) -> tuple[list[str], int]:
    """The canonical words of the first ``bars`` bars of a MIDI file quantized at ``grid``
    (the model's), and that bar count (fewer when the file is shorter)."""
    from .tokens import encode_piece

    piece, bars = prompt_piece(path, bars, grid)
    return encode_piece(piece).split(), bars


def prompt_piece(path: str | os.PathLike, bars: int, grid: int) -> tuple[Piece, int]:
    """The first ``bars`` bars of a MIDI file quantized at ``grid``, and that bar count (fewer when the
    file is shorter)."""
    from .events import bar_layout, slice_steps
    from .midi import quantize, read_midi

    piece = quantize(read_midi(path), grid)
    starts, _ = bar_layout(piece)
    if bars < 1 or starts.size == 0 or piece.n_notes == 0:
        raise MozartError(f"{path}: the prompt needs at least one bar with notes")
    bars = min(bars, int(starts.size))
    stop = int(starts[bars]) if bars < starts.size else None
    return slice_steps(piece, 0, stop), bars
