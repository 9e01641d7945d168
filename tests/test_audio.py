"""Rendering with real FluidSynth and a real General MIDI SoundFont."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile
import symusic

import mozart
from mozart import audio
from mozart.audio import RenderSettings, find_soundfont, render_score

from conftest import DATA, corpus_files

SR = 44100
PEAK_LIMIT = 10 ** (-1 / 20)


def piece_end_seconds(score: symusic.Score) -> float:
    seconds = score.to("second")
    return max((float(n.time + n.duration) for t in seconds.tracks for n in t.notes), default=0.0)


def render_files() -> list:
    """A few corpus files: the smallest multitrack, a piano piece with pedal, the chorale."""
    files = corpus_files()
    by_size = sorted(files, key=lambda p: p.stat().st_size)
    picks = {DATA / "music21_bach_bwv66.6.mid"} if (DATA / "music21_bach_bwv66.6.mid").exists() else set()
    picks |= set(by_size[len(by_size) // 2: len(by_size) // 2 + 2])
    return sorted(picks)


@pytest.mark.parametrize("path", render_files(), ids=lambda p: p.name)
def test_render_corpus_file(path, tmp_path, covered):
    score = symusic.Score(str(path))
    out = tmp_path / "out.wav"
    samples = mozart.render(path, out)
    data, rate = soundfile.read(str(out), dtype="float32")
    assert rate == SR and data.ndim == 2 and data.shape[1] == 2  # stereo at the requested rate
    assert data.shape[0] == samples.shape[0]
    peak = float(np.abs(samples).max())
    assert peak > 0.05, "not silent"
    assert peak <= PEAK_LIMIT + 1e-6, "no clipping: the peak stays at or below -1 dBFS"
    loudness = pyloudnorm.Meter(SR).integrated_loudness(samples.astype(np.float64))
    assert abs(loudness + 16) <= 1 or peak >= PEAK_LIMIT - 1e-3, "-16 LUFS unless the peak limit wins"
    end = piece_end_seconds(score)
    length = samples.shape[0] / SR
    assert end - 0.1 <= length <= end + 0.1 + audio.MAX_RELEASE_S, (length, end)
    assert np.array_equal(samples, mozart.render(path)), "the same input gives identical samples"
    covered("audio render", path)


def test_tail_is_trimmed_to_the_release():
    score = symusic.Score(480)
    t = symusic.Track(program=0)
    t.notes.append(symusic.Note(0, 480, 60, 100))  # one quarter note at 120 qpm: 0.5 s
    score.tracks.append(t)
    samples = render_score(score)
    length = samples.shape[0] / SR
    assert 0.5 < length < 0.5 + 2.5  # piano release and reverb, then nothing
    last_second = samples[-SR // 10:]
    assert np.abs(last_second).max() < 0.01  # it ends in (near) silence, not cut mid-sound


def spectral_centroid(x: np.ndarray) -> float:
    mono = x.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono))
    freqs = np.fft.rfftfreq(mono.size, 1 / SR)
    return float((spectrum * freqs).sum() / spectrum.sum())


def test_drums_sound_like_drums():
    notes = [(i * 240, 120, pitch, 100) for i, pitch in enumerate([36, 38, 42, 46] * 4)]

    def score(is_drum: bool) -> symusic.Score:
        s = symusic.Score(480)
        t = symusic.Track(program=0, is_drum=is_drum)
        for n in notes:
            t.notes.append(symusic.Note(*n))
        s.tracks.append(t)
        return s

    drums, piano = render_score(score(True)), render_score(score(False))
    c_drums, c_piano = spectral_centroid(drums), spectral_centroid(piano)
    assert c_drums > 1.2 * c_piano, (c_drums, c_piano)  # cymbals and snares are bright; low piano notes are not


def test_twenty_programs_keep_twenty_instruments():
    """Each of 20 programs plays one note alone, 3 s apart. In the full render, every note's
    first second matches a solo render of the same note on its own program, and not one on
    the next program: no two programs share a channel, and channel 9 does not become drums."""
    programs = [0, 6, 11, 19, 21, 24, 30, 33, 40, 42, 48, 52, 56, 57, 60, 65, 71, 73, 80, 105]
    gap = 480 * 6  # 3 s at 120 qpm

    def score(notes: list[tuple[int, int]]) -> symusic.Score:
        s = symusic.Score(480)
        for program, i in notes:
            t = symusic.Track(program=program)
            t.notes.append(symusic.Note(i * gap, 960, 64, 100))
            s.tracks.append(t)
        return s

    settings = RenderSettings(loudness=None)
    full_score = score([(p, i) for i, p in enumerate(programs)])
    assert len(mozart.midi.playback_streams(full_score)) == 20
    full = render_score(full_score, settings=settings)
    window = SR  # the first second of each note

    def first_second(samples: np.ndarray, i: int) -> np.ndarray:
        part = samples[int(i * 3.0 * SR):][:window].mean(axis=1)
        return np.pad(part, (0, window - part.size))

    for i, program in enumerate(programs):
        mix = first_second(full, i)
        own = first_second(render_score(score([(program, i)]), settings=settings), i)
        other = first_second(render_score(score([(programs[(i + 1) % 20], i)]), settings=settings), i)
        c_own, c_other = float(np.corrcoef(mix, own)[0, 1]), float(np.corrcoef(mix, other)[0, 1])
        assert c_own > 0.95, (program, c_own, c_other)
        assert c_own > c_other + 0.3, (program, c_own, c_other)


def test_dynamic_sample_loading_is_on_and_changes_no_audible_sample(monkeypatch):
    """Renders load only the samples of the presets they use (audio.SYNTH_SETTINGS).  Against a render
    that loads the whole SoundFont, melodic programs with pedal are identical sample for sample; with the
    drum kit the normalised audio differs by under two 16-bit steps (FluidR3: 3.3e-5, about -90 dBFS)."""
    fluidsynth = pytest.importorskip("fluidsynth")
    synth = fluidsynth.Synth(**audio.SYNTH_SETTINGS)
    try:
        assert synth.get_setting("synth.dynamic-sample-loading") == 1
    finally:
        synth.delete()
    melodic = symusic.Score(DATA / "music21_bach_bwv66.6.mid")
    melodic.tracks[0].program = 33
    melodic.tracks[1].pedals.append(symusic.Pedal(0, 960))
    with_drums = melodic.copy()
    drums = symusic.Track(program=0, is_drum=True)
    for i, pitch in enumerate([36, 38, 42, 46] * 4):
        drums.notes.append(symusic.Note(i * 240, 120, pitch, 100))
    with_drums.tracks.append(drums)
    dynamic = [render_score(s) for s in (melodic, with_drums)]
    monkeypatch.setattr(audio, "SYNTH_SETTINGS", {})
    whole = [render_score(s) for s in (melodic, with_drums)]
    assert np.array_equal(dynamic[0], whole[0])
    assert dynamic[1].shape == whole[1].shape
    assert np.abs(dynamic[1] - whole[1]).max() < 2 ** -14


def test_token_file_renders_like_its_midi(tmp_path):
    text = mozart.encode(DATA / "music21_bach_bwv66.6.mid")
    txt = tmp_path / "bach.txt"
    txt.write_text(text)
    assert np.array_equal(mozart.render(txt), render_score(mozart.decode(text)))


def test_flac_output(tmp_path):
    out = tmp_path / "x.flac"
    mozart.render(DATA / "muspy_fur-elise.mid", out, sample_rate=22050)
    data, rate = soundfile.read(str(out))
    assert rate == 22050 and data.shape[1] == 2 and np.abs(data).max() > 0.05


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mozart", *map(str, args)], capture_output=True, text=True)


def test_missing_soundfont_gives_clean_errors(tmp_path, monkeypatch):
    out = tmp_path / "x.wav"
    result = run("render", DATA / "muspy_fur-elise.mid", "-o", out, "--soundfont", tmp_path / "none.sf2")
    assert result.returncode == 1 and result.stderr.startswith("mozart: error: ")
    assert "SoundFont not found" in result.stderr and not out.exists()
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", ())
    monkeypatch.delenv(audio.SOUNDFONT_ENV, raising=False)
    with pytest.raises(mozart.MozartError, match="apt-get install"):
        find_soundfont()


def test_broken_inputs_give_clean_errors(tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes((DATA / "muspy_fur-elise.mid").read_bytes()[:100])
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text("Format_1 Grid_24 TS_4/4 Tempo_120 Bar Pos_0 Pitch_60")
    for source, out in [(broken, "x.wav"), (bad_text, "y.wav"), (DATA / "muspy_fur-elise.mid", "z.mp3")]:
        result = run("render", source, "-o", tmp_path / out)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("mozart: error: ") and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / out).exists()


def test_audio_that_would_not_fit_in_memory_is_refused_before_allocating(tmp_path):
    """The slowest tempo MIDI holds (3.58 qpm) and a two-bar piece: 2.2 minutes of audio, more than
    this test's pretend 100 MB of free memory; the CLI says so in one line instead of crashing."""
    slow = ("Format_1 Grid_24 TS_4/4 Tempo_3 TempoFrac_58 Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_96 "
            "Bar Pos_0 Pitch_62 Vel_80 Dur_96")
    (tmp_path / "slow.txt").write_text(slow + "\n")
    code = ("import sys; from mozart import audio; audio.available_memory = lambda: 100 * 2**20; "
            "from mozart.__main__ import run; sys.argv = ['mozart'] + sys.argv[1:]; run()")
    run = subprocess.run([sys.executable, "-c", code, "render", str(tmp_path / "slow.txt"), "-o",
                          str(tmp_path / "slow.wav")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("mozart: error: 2 minutes of audio need about") and "available" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "slow.wav").exists()
    assert audio.check_memory(44100 * 60, 44100) is None  # a minute fits the real machine
