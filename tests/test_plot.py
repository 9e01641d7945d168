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


def test_pitch_axis_names_whole_notes_as_musicians_read_them():
    """The y axis is labelled with note names at whole pitches (it showed 62.5 and 77.5 for a melody):
    every natural note over two octaves, C and G over four, C alone beyond."""
    from mozart.events import Piece
    from mozart.pianoroll import note_name, piano_roll, pitch_ticks

    assert [note_name(p) for p in (0, 21, 59, 60, 61, 69, 127)] == ["C-1", "A0", "B3", "C4", "C#4", "A4", "G9"]
    assert pitch_ticks(60, 72) == [60, 62, 64, 65, 67, 69, 71, 72]
    assert pitch_ticks(40, 80) == [43, 48, 55, 60, 67, 72, 79]
    assert pitch_ticks(21, 108) == [24, 36, 48, 60, 72, 84, 96, 108]
    melody = Piece(grid=24, note_onset=np.arange(4) * 24, note_duration=np.full(4, 24),
                   note_pitch=np.array([62, 66, 69, 78]), note_velocity=np.full(4, 80), note_stream=np.zeros(4, int))
    ax = piano_roll(melody).axes[0]
    assert ax.get_ylim() == (60, 80)
    assert list(ax.get_yticks()) == pitch_ticks(60, 80)
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["C4", "D4", "E4"]


def test_plot_process_draws_what_plot_draws_and_reports_errors(tmp_path):
    """The CLI's helper process: token text (no title) and a file (its name as the title) give the PNGs that
    ``mozart.plot`` gives; a bad file comes back as the MozartError it raised."""
    from mozart.plotprocess import PlotProcess

    text = mozart.encode(DATA / "music21_bach_bwv66.6.mid")
    with PlotProcess() as plotter:
        plotter.plot(text, tmp_path / "text.png").result()
        plotter.plot(DATA / "music21_bach_bwv66.6.mid", tmp_path / "file.png").result()
        with pytest.raises(mozart.MozartError, match="none.mid"):
            plotter.plot(tmp_path / "none.mid", tmp_path / "none.png").result()
    mozart.plot(mozart.decode(text), tmp_path / "text-here.png")
    mozart.plot(DATA / "music21_bach_bwv66.6.mid", tmp_path / "file-here.png")
    for name in ("text", "file"):
        ours = matplotlib.image.imread(str(tmp_path / f"{name}.png"))
        assert np.array_equal(ours, matplotlib.image.imread(str(tmp_path / f"{name}-here.png"))), name
    assert not (tmp_path / "none.png").exists()


def test_plot_process_finishes_every_roll_asked_for_before_it_ends(tmp_path):
    """Closing waits for the rolls asked for (none is lost to the helper's quick exit), then the helper is
    gone."""
    import os

    from mozart.plotprocess import PlotProcess

    text = mozart.encode(DATA / "music21_bach_bwv66.6.mid")
    with PlotProcess() as plotter:
        rolls = [plotter.plot(text, tmp_path / f"roll{i}.png") for i in range(3)]  # no .result(): close waits
        helpers = list(plotter._pool._processes)
    assert all(roll.done() and roll.exception() is None for roll in rolls)
    assert all(matplotlib.image.imread(str(tmp_path / f"roll{i}.png")).shape[:2] == (700, 1800) for i in range(3))
    for pid in helpers:
        with pytest.raises(ChildProcessError):  # reaped: it has exited
            os.waitpid(pid, os.WNOHANG)


def test_plot_process_of_a_command_that_failed_first_ends_without_finishing_its_imports():
    """A command that fails before asking for a roll tells its helper to stop at once: the helper never gets
    as far as being ready (its imports take about a second), and the failure propagates."""
    from concurrent.futures.process import BrokenProcessPool

    from mozart.plotprocess import PlotProcess

    with pytest.raises(mozart.MozartError, match="no such model"):
        with PlotProcess() as plotter:
            raise mozart.MozartError("no such model")
    assert isinstance(plotter._ready.exception(timeout=30), BrokenProcessPool)
    with PlotProcess() as plotter:  # a command that succeeds lets it finish
        pass
    assert plotter._ready.result(timeout=30) is True


def test_plot_process_ends_with_its_command_even_after_kill_9(tmp_path):
    """A command killed with -9 cannot close its helper: the helper notices and exits on its own."""
    import os
    import signal
    import time

    source, roll = str(DATA / "music21_bach_bwv66.6.mid"), str(tmp_path / "roll.png")
    script = ("from mozart.plotprocess import PlotProcess\n"
              "import time\n"
              "p = PlotProcess()\n"
              f"p.plot(__import__('mozart').encode({source!r}), {roll!r}).result()\n"
              "print(*p._pool._processes, flush=True)\n"
              "time.sleep(600)\n")
    command = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper = int(command.stdout.readline())
    assert (tmp_path / "roll.png").exists()
    os.kill(command.pid, signal.SIGKILL)
    command.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(helper, signal.SIGKILL)
    raise AssertionError("the helper outlived its command")
