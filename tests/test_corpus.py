"""mozart corpus music21: real exports of the public-domain corpus shipped with music21."""

from __future__ import annotations

import symusic

import mozart
from mozart.corpus import (
    SUBSETS,
    ExportTask,
    corpus_root,
    export_music21,
    export_piece,
    list_pieces,
    list_works,
    output_stems,
)


def test_chorales_export_and_resume(tmp_path):
    summary = export_music21(tmp_path, "chorales", limit=3, workers=1, progress=False)
    assert summary == {"subset": "chorales", "pieces": 3, "midi_files": 3, "failed": 0, "skipped_existing": 0}
    rows = (tmp_path / "corpus.tsv").read_text().splitlines()
    assert rows[0] == "midi_file\tmusic21_source\tstyle" and len(rows) == 4
    for row in rows[1:]:
        midi, source, style = row.split("\t")
        assert source.startswith("bach/") and style == "chorale"
        score = symusic.Score(str(tmp_path / midi))
        assert score.note_num() > 50  # a four-part chorale
        mozart.check(mozart.encode(score))
    again = export_music21(tmp_path, "chorales", limit=3, workers=1, progress=False)
    assert again["skipped_existing"] == 3 and again["midi_files"] == 3


def test_folk_tune_book_becomes_one_file_per_tune(tmp_path):
    tunes = [p for p in list_pieces("folk") if p.relative == "oneills1850/0001-0050.abc"]
    assert len(tunes) == 50
    assert [t.midi_name for t in tunes[:2]] == ["oneills1850/0001-0050-001.mid", "oneills1850/0001-0050-002.mid"]
    assert all(t.abc_tune.count("\nX:") + t.abc_tune.startswith("X:") == 1 for t in tunes)
    name = export_piece((tunes[6], str(tmp_path)))
    assert name == "oneills1850/0001-0050-007.mid"
    assert symusic.Score(str(tmp_path / name)).note_num() > 20


def test_grace_notes_are_dropped_not_held_until_the_next_note_off(tmp_path):
    """Known answer: a tune whose grace notes share a pitch with the notes they ornament.  music21 writes a
    grace note as a note-on and note-off at one tick, which symusic reads as a note held until the next
    note-off of its pitch (C for 7 quarters, G for 12); exported, the tune has its written notes only."""
    abc = "X:1\nT:grace\nM:4/4\nL:1/4\nK:C\nC {C}C E G | {G}G E C2 | C4 | G4 |]\n"
    name = export_piece((ExportTask("", "grace.abc", "grace.mid", abc), str(tmp_path)))
    score = symusic.Score(str(tmp_path / name))
    q = score.ticks_per_quarter
    notes = [(n.time / q, n.duration / q, n.pitch) for t in score.tracks for n in t.notes]
    assert notes == [(0, 1, 60), (1, 1, 60), (2, 1, 64), (3, 1, 67), (4, 1, 67), (5, 1, 64), (6, 2, 60),
                     (8, 4, 60), (12, 4, 67)]


def test_timeouts_are_reported_not_fatal(tmp_path):
    summary = export_music21(tmp_path, "chorales", limit=2, workers=1, timeout=0.01, progress=False)
    assert summary["failed"] == 2 and summary["midi_files"] == 0
    reasons = (tmp_path / "errors.tsv").read_text().splitlines()[1:]
    assert len(reasons) == 2 and all(line.endswith("timed out after 0.01 s") for line in reasons)


def test_subsets_hold_only_public_domain_folders():
    root = corpus_root()
    for folders in SUBSETS.values():
        for folder in folders:
            assert (root / folder).is_dir(), folder
    for excluded in ("essenFolksong", "schoenberg", "webern", "nottingham-dataset"):
        assert all(excluded not in folders for folders in SUBSETS.values())
    assert len(list_works("chorales")) > 400


def test_output_names_are_unique():
    stems = output_stems(["bach/bwv277.krn", "bach/bwv277.mxl", "bach/bwv66.6.mxl"])
    assert stems == ["bach/bwv277.krn", "bach/bwv277.mxl", "bach/bwv66.6"]
    all_stems = output_stems([r for _, r in list_works("all")])
    assert len(set(all_stems)) == len(all_stems)
