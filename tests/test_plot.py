"""Piano-roll pictures of real files."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import symusic

import mozart

from conftest import DATA, corpus_files


def multitrack_files() -> list:
    files = [p for p in corpus_files() if len({(t.program, t.is_drum) for t in symusic.Score(str(p)).tracks}) > 1]
    return files[:4] or [DATA / "music21_bach_bwv66.6.mid"]


@pytest.mark.parametrize("path", multitrack_files(), ids=lambda p: p.name)
def test_plot_multitrack(path, tmp_path, covered):
    out = tmp_path / "roll.png"
    mozart.plot(path, out)
    image = matplotlib.image.imread(str(out))
    height, width = image.shape[:2]
    assert (width, height) == (1800, 700)
    rgb = image[..., :3]
    ink = (rgb < 0.9).any(axis=2).mean()
    assert ink > 0.02, "not blank"
    colours = {tuple(c) for c in (rgb[::4, ::4] * 20).round().reshape(-1, 3).tolist()}
    streams = {(t.program, t.is_drum) for t in symusic.Score(str(path)).tracks if len(t.notes)}
    assert len(colours) >= min(len(streams), 10) + 2  # one colour per instrument, plus white and grey
    covered("piano rolls", path)


def test_plot_token_file_and_cli(tmp_path):
    txt = tmp_path / "bach.txt"
    txt.write_text(mozart.encode(DATA / "music21_bach_bwv66.6.mid"))
    out = tmp_path / "bach.png"
    result = subprocess.run([sys.executable, "-m", "mozart", "plot", str(txt), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 10_000
    assert (matplotlib.image.imread(str(out))[..., :3] < 0.9).any(axis=2).mean() > 0.01


def test_plot_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mozart", "plot", str(tmp_path / "none.mid"), "-o",
                             str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("mozart: error: ")
    assert not (tmp_path / "x.png").exists()


def test_empty_piece_plots(tmp_path):
    mozart.plot(symusic.Score(480), tmp_path / "empty.png")
    assert np.asarray(matplotlib.image.imread(str(tmp_path / "empty.png"))).shape[:2] == (700, 1800)


def test_a_piece_of_350000_bars_draws_few_bar_lines():
    """One line object per bar made such a file take minutes and gigabytes: the lines are one
    collection of at most MAX_BAR_LINES, whatever the length."""
    import numpy as np
    from matplotlib.collections import LineCollection

    from mozart.events import Piece
    from mozart.pianoroll import MAX_BAR_LINES, piano_roll

    far = 350_000 * 96
    piece = Piece(grid=24, note_onset=np.array([0, far]), note_duration=np.array([24, 24]),
                  note_pitch=np.array([60, 62]), note_velocity=np.array([80, 80]), note_stream=np.array([0, 0]))
    figure = piano_roll(piece)
    ax = figure.axes[0]
    assert not ax.lines  # no per-bar Line2D
    [bar_lines] = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert 0 < len(bar_lines.get_segments()) <= MAX_BAR_LINES
