"""Near-duplicates share a split: a piece's transposed, re-timed, re-velocitied copy and a copy
with one bar changed always land with it; unrelated pieces can land elsewhere."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mozart.dataset import DatasetConfig, build_dataset
from mozart.events import bar_layout, transpose
from mozart.fingerprint import THRESHOLD, group_near_duplicates, signature, similarity, top_line
from mozart.midi import quantize, read_midi, to_score, write_midi

from conftest import DATA, corpus_files

ELISE = DATA / "muspy_fur-elise.mid"
BACH = DATA / "music21_bach_bwv66.6.mid"


def variants(path: Path) -> dict:
    """The piece and four variants of it, as Pieces at grid 24."""
    piece = quantize(read_midi(path), 24)
    retimed = replace(piece, note_onset=piece.note_onset * 2, note_duration=piece.note_duration * 2,
                      tempo_centi=piece.tempo_centi * 2, pedal_onset=piece.pedal_onset * 2,
                      pedal_duration=piece.pedal_duration * 2, ts_step=piece.ts_step * 2)
    rng = np.random.default_rng(0)
    revelocitied = replace(piece, note_velocity=rng.integers(1, 128, piece.n_notes))
    starts, _ = bar_layout(piece)
    in_bar = (piece.note_onset >= starts[3]) & (piece.note_onset < starts[4])  # bar 4 rewritten
    pitch = piece.note_pitch.copy()
    pitch[in_bar] = rng.integers(50, 80, int(in_bar.sum()))
    one_bar = replace(piece, note_pitch=pitch)
    return {"original": piece, "transposed": transpose(piece, 5), "retimed": retimed,
            "revelocitied": revelocitied, "one_bar_changed": one_bar}


@pytest.mark.parametrize("path", [ELISE, BACH], ids=lambda p: p.name)
def test_variants_are_similar_and_unrelated_pieces_are_not(path):
    found = {name: signature(p) for name, p in variants(path).items()}
    for name, sig in found.items():
        assert similarity(found["original"], sig) >= THRESHOLD, name
    assert np.array_equal(top_line(variants(path)["transposed"]), top_line(variants(path)["original"]) + 5)
    other = signature(quantize(read_midi(BACH if path == ELISE else ELISE), 24))
    assert similarity(found["original"], other) < THRESHOLD
    groups = group_near_duplicates(list(found.values()) + [other, None])
    assert len(set(groups[:5])) == 1 and len(set(groups)) == 3  # variants, the other piece, the silent one


def test_variants_share_a_split_whatever_the_seed(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    for name, piece in variants(ELISE).items():
        write_midi(to_score(piece), midi / f"elise_{name}.mid")
    unrelated = [f for f in corpus_files() if f.name != ELISE.name][:12]
    for f in unrelated:
        (midi / f.name).symlink_to(f.resolve())
    seen_splits = set()
    for seed in range(6):
        out = tmp_path / f"data{seed}"
        stats = build_dataset(midi, out, DatasetConfig(workers=2, seed=seed, valid=0.3, test=0.3), progress=False)
        split_of = {}
        for split in ("train", "valid", "test"):
            for line in (out / f"{split}.jsonl").read_text().splitlines():
                split_of[json.loads(line)["source"]] = split
        elise = {s for name, s in split_of.items() if name.startswith("elise_")}
        assert len(elise) == 1 and len([n for n in split_of if n.startswith("elise_")]) == 5
        seen_splits |= set(split_of.values())
        near = stats["near_duplicates"]
        assert near["largest_group"] >= 5 and near["groups"] <= len(split_of) - 4
        assert sorted(near["examples"][0]) == sorted(f"elise_{n}.mid" for n in variants(ELISE))
    assert seen_splits == {"train", "valid", "test"}  # unrelated pieces do spread over the splits
