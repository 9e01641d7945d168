"""Stand-ins: programs a model was not trained on are read and written as programs it knows."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import symusic
from rewrite_checks import assert_rewrite

import mozart
from mozart.events import DRUM_OFFSET
from mozart.midi import quantize, read_midi
from mozart.models import default_model_dir, known_programs
from mozart.rewrite import note_table, piece_bars
from mozart.standins import restream, stand_ins
from mozart.tokens import decode_piece

from conftest import DATA, corpus_files

#: The programs of the built-in model's training records (its card: docs of the model).
BUILT_IN = frozenset({0, 6, 19, 24, 40, 41, 42, 47, 48, 52, 53, 54, 57, 66, 68, 71})


@pytest.mark.parametrize(("streams", "expected"), [
    ({0, 33}, {33: 42}),  # a bass: no bass known, the melodic program with the nearest middle is the cello
    ({33, 73}, {33: 42, 73: 40}),  # a flute: no pipe known, the violin's middle is the flute's
    ({33, 42, 73}, {33: 57, 73: 40}),  # the cello is in play: the next nearest middle, the trombone
    ({4}, {4: 0}),  # an electric piano: the family's pianos, 0 and 6 tie on their middle, the lower wins
    ({0, 4}, {4: 6}),  # the piano is in play: the harpsichord
    ({58}, {58: 57}),  # a tuba: the trombone, its family, before a nearer middle elsewhere
    ({9}, {9: 47}),  # a glockenspiel: percussion stands in only for percussion
    ({0, 40, DRUM_OFFSET}, {}),  # known programs and drum kits stay
])
def test_stand_ins_for_the_built_in_models_programs(streams, expected):
    assert stand_ins(BUILT_IN, streams) == expected


def test_no_stand_ins_without_a_list_or_without_a_free_program():
    assert stand_ins(None, {33, 73}) == {}
    assert stand_ins({42}, {33, 42}) == {}  # the only known program is in play
    assert stand_ins({47}, {33}) == {}  # a bass is not written as timpani
    chosen = stand_ins(BUILT_IN, range(80, 104))  # more unknown programs than known ones: each used once
    assert len(set(chosen.values())) == len(chosen) == len(BUILT_IN - {47})


def _piece_with_pedals():
    for path in corpus_files():
        try:
            piece = quantize(read_midi(path), 24)
        except mozart.MozartError:
            continue
        if piece.pedal_onset.size and np.unique(piece.note_stream).size > 1:
            return piece
    piece = quantize(read_midi(DATA / "music21_bach_bwv66.6.mid"), 24)  # no corpus: a pedal of our own
    return replace(piece, pedal_onset=np.array([0]), pedal_duration=np.array([48]), pedal_stream=np.array([0]))


def test_restream_renames_notes_and_pedals_and_back():
    piece = _piece_with_pedals()
    streams = sorted({int(s) for s in piece.note_stream} | {int(s) for s in piece.pedal_stream})
    free = [p for p in range(128) if p not in streams][: len(streams)]
    mapping = dict(zip(streams, free))
    renamed = restream(piece, mapping)
    assert set(renamed.note_stream.tolist()) | set(renamed.pedal_stream.tolist()) <= set(free)
    assert renamed.pedal_onset.size == piece.pedal_onset.size > 0
    back = restream(renamed, {v: k for k, v in mapping.items()})
    assert mozart.encode_piece(back) == mozart.encode_piece(piece)
    assert restream(piece, {}) is piece


def test_known_programs_come_from_the_model_folder_and_its_adapter(tmp_path):
    assert known_programs(default_model_dir()) == BUILT_IN
    model, adapter = tmp_path / "model", tmp_path / "adapter"
    model.mkdir()
    adapter.mkdir()
    assert known_programs(model) is None  # not recorded: no stand-ins
    (model / "tokenizer_config.json").write_text(json.dumps({"mozart_programs": [0, 40]}))
    (adapter / "tokenizer_config.json").write_text(json.dumps({"mozart_programs": [33]}))
    assert known_programs(model, None) == {0, 40}
    assert known_programs(model, adapter) == {0, 33, 40}
    (model / "tokenizer_config.json").write_text(json.dumps({"mozart_programs": [0, 400]}))
    with pytest.raises(mozart.MozartError, match="mozart_programs"):
        known_programs(model)


@pytest.fixture(scope="module")
def melodies(tmp_path_factory):
    """The chorale's soprano alone played by a flute (tests/data; unknown to the built-in model) and, made here
    from it, by a violin (known)."""
    flute = DATA / "music21_bach_bwv66.6_soprano_flute.mid"
    score = symusic.Score(flute)
    assert [t.program for t in score.tracks] == [73]
    score.tracks[0].program = 40
    violin = tmp_path_factory.mktemp("melody") / "violin.mid"
    score.dump_midi(violin)
    return {73: flute, 40: violin}


def test_a_bass_under_a_flute_is_the_cello_under_the_violin_renamed(melodies):
    """The built-in model reads the flute as the violin and writes the bass as the cello (in a bass's
    range): the accompaniment of the flute melody is, note for note, the violin melody's with the
    programs renamed; every check of an accompaniment holds, and the bass is a line in a low register."""
    told = []
    flute = mozart.accompany(melodies[73], programs=(33,), seed=1, n=2, on_stand_ins=told.append)
    violin = mozart.accompany(melodies[40], programs=(33,), seed=1, n=2)
    assert told == [{33: 42, 73: 40}]
    source = quantize(read_midi(melodies[73]), 24)
    n_bars = piece_bars(source)[0].size - 1
    for ours, theirs in zip(flute, violin):
        assert_rewrite(source, ours, 0, n_bars - 1, [33], keep=True)
        assert ours == mozart.encode_piece(restream(decode_piece(theirs), {40: 73}))
        notes = note_table(decode_piece(ours))
        bass = notes[notes[:, 1] == 33]
        assert np.median(bass[:, 2]) < 60  # below middle C (without stand-ins: 63, clusters at the top)
        onsets = bass[:, 0]
        assert np.unique(onsets).size >= 0.8 * onsets.size  # a line: few notes share an onset


def test_cli_names_the_stand_ins_in_samples_json_and_on_stderr(melodies, tmp_path):
    run = subprocess.run([sys.executable, "-m", "mozart", "accompany", str(melodies[73]), "--program", "33", "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "samples.json").read_text())["stand_ins"] == {"33": 42, "73": 40}
    assert "not trained on Electric Bass (finger) (33): it reads and writes it as Cello (42)" in run.stderr
    assert "Flute (73): it reads and writes it as Violin (40)" in run.stderr


def test_generate_writes_an_unknown_program_through_its_stand_in_in_its_range():
    """``generate(programs=(33,))`` samples the cello, kept to a bass's range, and names the bass: the same
    pieces, renamed, as sampling the cello with that range by hand; before, the built-in model asked for a
    bass wrote drum kits in all of 4 pieces (seed 1)."""
    from mozart.controls import Controls, SamplingSettings
    from mozart.instruments import pitch_range
    from mozart.models import load_sampler
    from mozart.sampling import generate_pieces

    told = []
    texts = mozart.generate(programs=(33,), drums=False, bars=4, n=3, seed=1, on_stand_ins=told.append)
    assert told == [{33: 42}]
    low, high = pitch_range(33)
    by_hand = generate_pieces(load_sampler(default_model_dir()), Controls(4, (42,), False, ranges=((42, low, high),)),
                              SamplingSettings(), 3, 1)
    for text, theirs in zip(texts, by_hand):
        notes = note_table(decode_piece(text))
        assert set(notes[:, 1].tolist()) == {33} and low <= notes[:, 2].min() and notes[:, 2].max() <= high
        assert text == mozart.encode_piece(restream(decode_piece(theirs), {42: 33}))


def test_generate_reads_a_prompts_unknown_program_through_its_stand_in(melodies):
    told = []
    texts = mozart.generate(prompt=melodies[73], prompt_bars=2, bars=2, drums=False, seed=3, on_stand_ins=told.append)
    assert told == [{73: 40}]
    prompt = note_table(quantize(read_midi(melodies[73]), 24))
    out = note_table(decode_piece(texts[0]))
    end = piece_bars(decode_piece(texts[0]))[0][2]
    kept = out[out[:, 0] < end]
    assert sorted(map(tuple, kept)) == sorted(map(tuple, prompt[prompt[:, 0] < end]))  # the flute, note for note
    assert 73 in out[out[:, 0] >= end][:, 1]  # the model went on with the melody it read as a violin's


def test_a_form_keeps_its_stand_in_to_the_requested_range_in_every_section():
    from mozart.instruments import pitch_range

    low, high = pitch_range(33)
    # without the range in the new sections, 5 of these 8 pieces went above a bass's range (to MIDI 70-76)
    for text in mozart.generate(programs=(33,), drums=False, bars=8, form="AB", n=8, seed=0):
        notes = note_table(decode_piece(text))
        assert set(notes[:, 1].tolist()) == {33}
        assert low <= notes[:, 2].min() and notes[:, 2].max() <= high
