"""Piano-roll pictures: one colour per instrument, bar lines, a time axis in bars."""

from __future__ import annotations

import io
import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .events import DRUM_OFFSET, Piece, bar_layout
from .files import write_atomic
from .instruments import stream_name

#: Figure size in inches and resolution: 1800 x 700 pixels, readable for a 2-minute piece.
FIGURE_SIZE = (18.0, 7.0)
DPI = 100
#: Bar numbers are labelled at most this often across the width.
MAX_BAR_LABELS = 40
#: Bar lines drawn at most (every k-th bar beyond it): more would not be legible at this width,
#: and one line object per bar made a 350,000-bar file take minutes and gigabytes.
MAX_BAR_LINES = 400
DRUM_COLOUR = "#222222"
#: Fixed margins (shares of the figure) instead of ``tight_layout``, which draws the whole figure once
#: more to measure its labels; the right margin holds the legend (instrument names of up to ~30 characters).
MARGINS = {"left": 0.045, "right": 0.875, "bottom": 0.075, "top": 0.95, "hspace": 0.08}


#: Pitch names, C first: the y axis labels notes as musicians read them (C4 is MIDI 60, middle C).
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """The name of MIDI ``pitch`` in scientific pitch notation: 60 -> C4, 61 -> C#4, 21 -> A0."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def pitch_ticks(low: int, high: int) -> list[int]:
    """The pitches from ``low`` to ``high`` the y axis labels: every natural note over up to two octaves,
    every C and G over up to four, every C beyond (always whole pitches, never 62.5)."""
    span = high - low
    if span <= 24:
        keep = {0, 2, 4, 5, 7, 9, 11}
    elif span <= 48:
        keep = {0, 7}
    else:
        keep = {0}
    return [p for p in range(low, high + 1) if p % 12 in keep]


def _rectangles(x0: np.ndarray, x1: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Note rectangles (n, 4, 2) from x start/end and pitch."""
    return np.stack([np.column_stack([x0, y - 0.4]), np.column_stack([x1, y - 0.4]),
                     np.column_stack([x1, y + 0.4]), np.column_stack([x0, y + 0.4])], axis=1)


def piano_roll(piece: Piece, title: str | None = None) -> Figure:
    """Draw ``piece`` as a piano roll; x in bars (1-based), y in MIDI pitch labelled with note names
    (C4 = 60).  Drums, when present, get their own lane below the pitched instruments (a marker per hit)."""
    streams = np.unique(piece.note_stream).tolist()
    melodic = [s for s in streams if s < DRUM_OFFSET]
    drums = [s for s in streams if s >= DRUM_OFFSET]
    # a Figure of its own, not pyplot's: no global figure list to close, and pyplot's import is spared
    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    if drums:
        ax, drum_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    else:
        ax, drum_ax = fig.subplots(), None
    bar_start, _ = bar_layout(piece)
    end = int((piece.note_onset + piece.note_duration).max()) if piece.n_notes else 0
    end = max(end, int(bar_start[-1]) + 1 if bar_start.size else 1)
    palette = matplotlib.colormaps["tab10" if len(melodic) <= 10 else "tab20"]
    handles = []
    for i, stream in enumerate(melodic):
        sel = piece.note_stream == stream
        onset, dur, pitch = piece.note_onset[sel], piece.note_duration[sel], piece.note_pitch[sel]
        colour = palette(i % palette.N)
        alphas = 0.35 + 0.65 * piece.note_velocity[sel] / 127  # louder notes are more opaque
        ax.add_collection(PolyCollection(_rectangles(onset, onset + dur, pitch),
                                         facecolors=[(*colour[:3], a) for a in alphas.tolist()],
                                         edgecolors=(*colour[:3], 0.9), linewidths=0.3))
        handles.append(Patch(facecolor=colour, label=stream_name(stream)))
    for stream in drums:
        sel = piece.note_stream == stream
        drum_ax.scatter(piece.note_onset[sel], piece.note_pitch[sel], marker="x", s=14, c=DRUM_COLOUR,
                        alpha=0.35 + 0.65 * piece.note_velocity[sel] / 127, linewidths=1)
        handles.append(Line2D([], [], marker="x", color=DRUM_COLOUR, linestyle="", label=stream_name(stream)))
    step = max(1, int(np.ceil(bar_start.size / MAX_BAR_LABELS)))
    for axis in (ax, drum_ax):
        if axis is None:
            continue
        every = max(1, int(np.ceil(bar_start.size / MAX_BAR_LINES)))
        axis.vlines(bar_start[::every], 0, 1, transform=axis.get_xaxis_transform(), colors="#bbbbbb",
                    linewidth=0.6, zorder=0)  # one collection for all the lines
        axis.grid(axis="y", color="#eeeeee", linewidth=0.5)
    bottom = drum_ax if drum_ax is not None else ax
    bottom.set_xticks(bar_start[::step])
    bottom.set_xticklabels([str(i + 1) for i in range(0, bar_start.size, step)])
    bottom.set_xlabel("bar")
    ax.set_xlim(0, end)
    pitched = piece.note_stream < DRUM_OFFSET
    if pitched.any():
        low, high = int(piece.note_pitch[pitched].min()) - 2, int(piece.note_pitch[pitched].max()) + 2
        ax.set_ylim(low, high)
        ticks = pitch_ticks(low, high)
        ax.set_yticks(ticks)
        ax.set_yticklabels([note_name(p) for p in ticks])
    ax.set_ylabel("pitch (C4 = MIDI 60, middle C)")
    if drum_ax is not None:
        drum_ax.set_ylabel("drum note")
        hit = ~pitched
        drum_ax.set_ylim(int(piece.note_pitch[hit].min()) - 2, int(piece.note_pitch[hit].max()) + 2)
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False)
    fig.subplots_adjust(**MARGINS)
    return fig


def save_piano_roll(piece: Piece, path: str | os.PathLike, title: str | None = None) -> None:
    """Draw ``piece`` and write the PNG atomically."""
    fig = piano_roll(piece, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
