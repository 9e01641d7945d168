"""decode(encode(x)) == Q(x) on every corpus file, against the independent reference Q."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

import mozart
from mozart.midi import note_layers
from mozart.tokenizer import piece_ids

from conftest import corpus_files
from reference import last_step, note_multiset, pedal_steps, tempo_map, time_signature_map

GRID = 24


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_round_trip_is_q(path, covered):
    source = symusic.Score(str(path))
    text = mozart.encode(source, grid=GRID)
    decoded = mozart.decode(text)

    expected_notes = note_multiset(source, GRID)
    got_notes = note_multiset(decoded, GRID)
    assert sum(got_notes.values()) == source.note_num()
    assert got_notes == expected_notes

    n_steps = last_step(source, GRID) + 2
    assert tempo_map(decoded, GRID, n_steps) == tempo_map(source, GRID, n_steps)
    assert time_signature_map(decoded, GRID, n_steps) == time_signature_map(source, GRID, n_steps)
    assert pedal_steps(decoded, GRID) == pedal_steps(source, GRID)
    drum_kits = {t.program for t in source.tracks if t.is_drum and len(t.notes)}
    assert {t.program for t in decoded.tracks if t.is_drum} == drum_kits

    assert mozart.encode(decoded, grid=GRID) == text
    mozart.check(text)
    # the fast path from the token store's ids (<bos> <style> ... <eos>) decodes to the same piece
    from_ids = mozart.decode_ids(piece_ids(text.split(), GRID, style="folk"), GRID)
    assert mozart.encode(from_ids, grid=GRID) == text
    covered("corpus fidelity", path)


@pytest.mark.parametrize("grid", [4, 12, 48])
def test_other_grids_round_trip(grid):
    path = corpus_files()[0]
    source = symusic.Score(str(path))
    text = mozart.encode(source, grid=grid)
    assert text.split()[:2] == ["Format_1", f"Grid_{grid}"]
    decoded = mozart.decode(text)
    assert note_multiset(decoded, grid) == note_multiset(source, grid)
    assert mozart.encode(decoded, grid=grid) == text


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_written_midi_round_trips(path, tmp_path):
    """Through a MIDI file on disk every note, pedal (as CC64) and map survives, durations of notes that
    restrike a sounding pitch included (20 of the 92 dev files changed before ``midi.unison_layers``)."""
    text = mozart.encode(path)
    out = tmp_path / "out.mid"
    mozart.write_midi(mozart.decode(text), out)
    assert mozart.encode(out) == text


@pytest.mark.parametrize("notes, layers", [
    ([(0, 960), (480, 600)], [0, 1]),  # a short restrike inside a long note: its own layer
    ([(0, 480), (480, 960)], [0, 0]),  # repeated notes that touch share one
    ([(0, 480), (0, 480)], [0, 1]),  # a unison duplicate
    ([(0, 100), (50, 60), (70, 80), (55, 90)], [0, 1, 1, 2]),
])
def test_note_layers_keep_one_pitch_from_overlapping_within_a_layer(notes, layers):
    onset, end = (np.array(column, dtype=np.int64) for column in zip(*notes))
    assert note_layers(onset, end, np.full(onset.size, 60)).tolist() == layers
    # other pitches are layered apart: a second pitch at the same times changes nothing
    both = note_layers(np.r_[onset, onset], np.r_[end, end], np.r_[np.full(onset.size, 60), np.full(onset.size, 61)])
    assert both.tolist() == layers + layers


def test_a_written_sample_holds_no_note_longer_than_its_text(tmp_path):
    """A generated string part restruck a sounding E5; written as one track it read back as notes held for
    bars (the piano roll drew them past the piece's end).  Now the file holds the text's durations."""
    text = ("Format_1 Grid_24 TS_4/4 Tempo_120 Bar Pos_0 Prog_40 Pitch_76 Vel_127 Dur_96 "
            "Pos_48 Pitch_76 Vel_127 Dur_12 Bar Pos_84 Pitch_76 Vel_127 Dur_12")
    out = tmp_path / "sample.mid"
    mozart.write_midi(mozart.decode(text), out)
    read = symusic.Score(str(out))
    assert len(read.tracks) == 2 and {t.program for t in read.tracks} == {40}
    assert sorted((n.time, n.duration) for t in read.tracks for n in t.notes) == [(0, 1920), (960, 240), (3600, 240)]
    assert mozart.encode(out) == text
