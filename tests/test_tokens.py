"""The token format: vocabulary, grammar, canonical form, error messages, properties."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mozart
from mozart.rewrite import note_table
from mozart.tokens import GRAMMAR, TYPES, TokenError, decode_piece, encode_piece, vocabulary

from reference import last_step, note_multiset, pedal_steps, tempo_map, time_signature_map
from strategies import mutations, scores

HEADER = "Format_1 Grid_24 TS_4/4 Tempo_120"


# ----------------------------------------------------------------- vocabulary


def test_vocabulary_is_fixed_by_grid_alone_and_small():
    v = vocabulary(24)
    assert 500 < len(v) < 2000
    assert len(set(v.words)) == len(v.words)
    assert v.words == vocabulary(24).words
    for pitch in (0, 60, 127):
        assert f"Pitch_{pitch}" in v.index
    assert all(f"Vel_{x}" in v.index for x in range(1, 128))
    assert "Vel_0" not in v.index and "TempoFrac_0" not in v.index
    assert "TS_7/8" in v.index and "TS_4/32" not in v.index
    # grids change only the grid-dependent words
    assert len(vocabulary(12)) < len(v) < len(vocabulary(48))


@pytest.mark.parametrize("grid", [0, 3, 10, 25, 100, -4])
def test_unsupported_grids_are_rejected(grid):
    with pytest.raises(mozart.MozartError, match="grid"):
        vocabulary(grid)
    with pytest.raises(mozart.MozartError, match="grid"):
        mozart.encode(symusic.Score(480), grid=grid)


def test_grammar_table_names_only_known_types():
    for prev, nexts in GRAMMAR.items():
        assert prev in TYPES or prev == "Header"
        assert set(nexts) <= set(TYPES) | {"End"}


# ----------------------------------------------------------------- worked examples


def _score(tpq=480, notes=(), program=0, is_drum=False, tempos=(), time_signatures=()):
    s = symusic.Score(tpq)
    t = symusic.Track(program=program, is_drum=is_drum)
    for n in notes:
        t.notes.append(symusic.Note(*n))
    s.tracks.append(t)
    for time, qpm in tempos:
        s.tempos.append(symusic.Tempo(time, qpm=qpm))
    for time, num, den in time_signatures:
        s.time_signatures.append(symusic.TimeSignature(time, num, den))
    return s


def test_simple_melody_text():
    s = _score(notes=[(0, 480, 60, 80), (480, 240, 62, 81), (1920, 1920, 64, 82)])
    assert mozart.encode(s) == (
        f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24 Pos_24 Pitch_62 Vel_81 Dur_12 "
        "Bar Pos_0 Pitch_64 Vel_82 Dur_96"
    )


def test_long_notes_and_silences_compose_without_clipping():
    # a 40-bar note and a note 100 bars later
    s = _score(notes=[(0, 480 * 4 * 40, 60, 80), (480 * 4 * 100, 1, 61, 80)])
    text = mozart.encode(s)
    assert "DurHi_1 DurHi_4 Dur_0" in text  # 40 bars = 3840 steps = (1*16 + 4) * 192 + 0
    assert text.count("Bar") == 101
    assert mozart.encode(mozart.decode(text)) == text
    piece = decode_piece(text)
    assert piece.note_duration.tolist() == [3840, 1]
    assert piece.note_onset.tolist() == [0, 9600]


def test_time_signature_change_mid_bar_cuts_the_bar():
    # 4/4, then 3/4 starting two beats into bar 2
    s = _score(notes=[(0, 480, 60, 80), (480 * 6, 480, 62, 80)], time_signatures=[(0, 4, 4), (480 * 6, 3, 4)])
    text = mozart.encode(s)
    assert "Bar Pos_48 Bar TS_3/4 Pos_0 Pitch_62" in text
    piece = decode_piece(text)
    assert piece.ts_step.tolist() == [0, 144]
    assert piece.note_onset.tolist() == [0, 144]


def test_tempo_composes_hundredths_and_high_digits():
    s = _score(notes=[(0, 480, 60, 80)], tempos=[(0, 97.25), (960, 300.5)])
    text = mozart.encode(s)
    assert text.startswith("Format_1 Grid_24 TS_4/4 Tempo_97 TempoFrac_25 ")
    assert "Pos_48 TempoHi_1 Tempo_44 TempoFrac_50" in text  # 300 = 1*256 + 44


def test_drums_and_programs_switch_only_when_needed():
    s = symusic.Score(480)
    for program, is_drum, pitch in [(33, False, 40), (0, True, 36), (0, False, 60)]:
        t = symusic.Track(program=program, is_drum=is_drum)
        t.notes.append(symusic.Note(0, 480, pitch, 90))
        t.notes.append(symusic.Note(480, 480, pitch, 90))
        s.tracks.append(t)
    text = mozart.encode(s)
    assert text == (
        f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_90 Dur_24 Prog_33 Pitch_40 Vel_90 Dur_24 "
        "Drums_0 Pitch_36 Vel_90 Dur_24 Pos_24 Prog_0 Pitch_60 Vel_90 Dur_24 Prog_33 Pitch_40 Vel_90 Dur_24 "
        "Drums_0 Pitch_36 Vel_90 Dur_24"
    )


def test_empty_score_is_a_header():
    assert mozart.encode(symusic.Score(480)) == HEADER
    assert mozart.decode(HEADER).note_num() == 0


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, token, reason",
    [
        ("", None, "empty"),
        ("Format_2 Grid_24 TS_4/4 Tempo_120", "Format_2", "Format_1"),
        ("Format_1 Grid_10 TS_4/4 Tempo_120", "Grid_10", "grid 10"),
        ("Format_1 Grid_24 Tempo_120", "Tempo_120", "time signature"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_0", "Dur_0", "at least one step"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_12 Pos_0 Pitch_61 Vel_80 Dur_12", "Pos_0", "increase"),
        (f"{HEADER} Bar Pos_96 Prog_0 Pitch_60 Vel_80 Dur_12", "Pos_96", "past the end"),
        (f"{HEADER} Bar Pos_0 Pitch_60 Vel_80 Dur_12", "Pitch_60", "program"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_62 Vel_80 Dur_12 Pitch_60 Vel_80 Dur_12", "Pitch_60", "out of order"),
        (f"{HEADER} Bar Pos_0 Prog_5 Pitch_62 Vel_80 Dur_12 Prog_0 Pitch_60 Vel_80 Dur_12", "Prog_0", "ascend"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_12 Pos_5 Prog_0 Pitch_60 Vel_80 Dur_12", "Prog_0", "already"),
        (f"{HEADER} Bar Bar", "Bar", "empty"),
        (f"{HEADER} Bar TS_4/4", "TS_4/4", "does not change"),
        (f"{HEADER} Bar TS_3/4 Pos_0 Prog_0 Pitch_60 Vel_80 Dur_1", "TS_3/4", "header's"),
        (f"{HEADER} Bar Pos_0 Tempo_120", "Tempo_120", "does not change"),
        (f"{HEADER} Bar Pos_0 Tempo_90 Prog_0 Pitch_60 Vel_80 Dur_1", "Tempo_90", "header's"),
        (f"{HEADER} Bar Pos_48 Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_1", "Bar", "time signature"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 DurHi_0 Dur_5", "DurHi_0", "digit 0"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pedal Dur_10 Pos_10 Pedal Dur_3", "Pedal", "touches"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80", None, "cannot end"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Dur_5", "Dur_5", "cannot follow"),
        (f"{HEADER} Bar Pos_0 Prog_0 Pitch_128 Vel_80 Dur_5", "Pitch_128", "unknown token"),
    ],
)
def test_malformed_text_names_the_token(text, token, reason):
    with pytest.raises(TokenError, match=reason) as info:
        mozart.check(text)
    assert info.value.token == (token or "")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", [
    f"{HEADER} Bar Pos_0 Prog_0 Pitch_62 Vel_80 Dur_12 Pitch_60 Vel_80 Dur_12",
    f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Dur_5",
    f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80",
    "Format_1 Grid_24 Tempo_120",
])
def test_decoding_ids_reports_errors_as_text_does(text):
    """mozart.decode_ids builds no text unless it must name an error; then the message is decode's."""
    from mozart.tokenizer import piece_ids

    with pytest.raises(TokenError) as from_text:
        mozart.decode(text)
    with pytest.raises(TokenError) as from_ids:
        mozart.decode_ids(piece_ids(text.split(), 24), 24)
    assert str(from_ids.value) == str(from_text.value)


def test_decoding_ids_refuses_ids_outside_the_vocabulary():
    from mozart.tokenizer import piece_ids

    ids = piece_ids(f"{HEADER} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_5".split(), 24)
    assert mozart.decode_ids(ids, 24).note_num() == 1
    with pytest.raises(mozart.MozartError, match="not a word of grid 12"):
        mozart.tokens.decode_piece_ids(ids - 4 + 5000, 12)


def test_text_is_looked_up_a_chunk_at_a_time(monkeypatch):
    """Chunks cut at whitespace (never inside a word) give the same piece, and an unknown word is named
    by its place in the whole text (a 50 MB text no longer holds a Python string per word)."""
    import mozart.tokens

    text = (f"{HEADER}\nBar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24\n"
            "Bar Pos_0 Pitch_61 Vel_80 Dur_24 Bar Pos_0 Pitch_62 Vel_9 Dur_2")
    whole = mozart.encode(mozart.decode(text))
    for chunk in (1, 7, 13):
        monkeypatch.setattr(mozart.tokens, "_LOOKUP_CHUNK", chunk)
        assert mozart.encode(mozart.decode(text)) == whole
        with pytest.raises(TokenError) as info:
            mozart.check(text.replace("Pitch_62", "Pitch_999"))
        assert (info.value.line, info.value.token) == (3, "Pitch_999")


def test_error_names_line_and_token_number():
    text = f"{HEADER}\nBar Pos_0 Prog_0\nPitch_60 Vel_80 Dur_12 Pitch_59 Vel_80 Dur_12\n"
    with pytest.raises(TokenError) as info:
        mozart.check(text)
    assert (info.value.line, info.value.column, info.value.token) == (3, 4, "Pitch_59")
    assert str(info.value).startswith("line 3, token 4 'Pitch_59':")


def test_whitespace_and_newlines_are_separators():
    s = _score(notes=[(0, 480, 60, 80)])
    text = mozart.encode(s)
    assert encode_piece(decode_piece("  \n".join(text.split()) + "\n")) == text


# ----------------------------------------------------------------- properties


def _assert_q(source: symusic.Score, text: str, grid: int) -> None:
    decoded = mozart.decode(text)
    assert note_multiset(decoded, grid) == note_multiset(source, grid)
    assert decoded.note_num() == source.note_num()
    n = last_step(source, grid) + 2
    assert tempo_map(decoded, grid, n) == tempo_map(source, grid, n)
    assert time_signature_map(decoded, grid, n) == time_signature_map(source, grid, n)
    assert pedal_steps(decoded, grid) == pedal_steps(source, grid)
    assert mozart.encode(decoded, grid=grid) == text


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(score=scores(), grid=st.sampled_from([4, 12, 24, 96]))
def test_property_round_trip_equals_q(score, grid):
    _assert_q(score, mozart.encode(score, grid=grid), grid)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(score=scores(), grid=st.sampled_from([4, 24]))
def test_property_a_written_midi_file_encodes_to_the_same_text(score, grid, tmp_path_factory):
    """Through a MIDI file on disk every note keeps its duration, same-pitch overlaps and duplicates
    (``write_midi`` puts restrikes on extra tracks of the program;
    ``midi.unison_layers``).  Tempo maps through a file are the corpus test's (test_fidelity.py)."""
    text = mozart.encode(score, grid=grid)
    out = tmp_path_factory.mktemp("written") / "piece.mid"
    mozart.write_midi(mozart.decode(text), out)
    written, read = decode_piece(text), decode_piece(mozart.encode(out, grid=grid))
    assert sorted(map(tuple, note_table(read).tolist())) == sorted(map(tuple, note_table(written).tolist()))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), score=scores())
def test_property_accepted_text_is_canonical(data, score):
    """Any text that ``check`` accepts decodes and re-encodes to itself: a mutated valid
    text is either rejected with a TokenError or is itself canonical."""
    words = mozart.encode(score).split()
    mutated = " ".join(data.draw(mutations(words, vocabulary(24).words)))
    try:
        piece = decode_piece(mutated)
    except TokenError:
        return
    assert encode_piece(piece) == mutated


@pytest.mark.parametrize("tempo", ["Tempo_1", "Tempo_0 TempoFrac_50", "Tempo_3 TempoFrac_57", "Tempo_2 TempoFrac_99"])
def test_tempos_midi_cannot_hold_are_refused(tempo):
    text = f"Format_1 Grid_24 TS_4/4 {tempo} Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24"
    with pytest.raises(mozart.TokenError, match="at least 3.58 qpm"):
        mozart.check(text)


def test_the_slowest_midi_tempo_round_trips():
    text = "Format_1 Grid_24 TS_4/4 Tempo_3 TempoFrac_58 Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24"
    mozart.check(text)
    assert mozart.encode(mozart.decode(text)) == text


def test_the_grammar_never_offers_a_tempo_midi_cannot_hold():
    from mozart.grammar import new_state

    state = new_state(24)
    for word in ("Format_1", "Grid_24", "TS_4/4"):
        state.advance(state.vocab.index[word])
    allowed = {state.vocab.words[i] for i in np.flatnonzero(state.allowed())}
    assert {"Tempo_0", "Tempo_1", "Tempo_2"}.isdisjoint(allowed) and {"Tempo_3", "Tempo_4"} <= allowed
    state.advance(state.vocab.index["Tempo_3"])
    fracs = {state.vocab.words[i] for i in np.flatnonzero(state.allowed()) if "TempoFrac" in state.vocab.words[i]}
    assert fracs == {f"TempoFrac_{f}" for f in range(58, 100)}


def test_a_piece_beyond_midis_largest_time_is_refused():
    # 150,000 bars of 4/4 at grid 24 end at step 14.4M: 288M ticks at 480 per quarter, past 2^28 - 1
    text = ("Format_1 Grid_24 TS_4/4 Tempo_120 Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24" + " Bar" * 150_000
            + " Pos_0 Pitch_60 Vel_80 Dur_24")
    mozart.check(text)  # a valid text ...
    with pytest.raises(mozart.MozartError, match="beyond the 268,435,455 a MIDI file can hold"):
        mozart.decode(text)  # ... that no MIDI file can hold
