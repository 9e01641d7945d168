"""Musical statistics on hand-built pieces with known answers, and Yang & Lerch's set comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mozart.events import DRUM_OFFSET, Piece
from mozart.metrics import (
    FEATURES,
    empty_beat_rate,
    feature_table,
    features,
    groove_consistency,
    inter_set_distances,
    intra_set_distances,
    note_density,
    note_length_histogram,
    overlap_and_kl,
    pitch_class_entropy,
    pitch_class_histogram,
    pitch_range,
    polyphony,
    scale_consistency,
    velocity_histogram,
)

Q = 24  # grid steps per quarter note


def piece(notes: list[tuple[int, int, int]], velocity: int | list[int] = 80, stream: int | list[int] = 0) -> Piece:
    """A 4/4 piece from (onset, duration, pitch) triples in grid steps."""
    onset, duration, pitch = (np.array(c, dtype=np.int64) for c in zip(*notes))
    n = onset.size
    return Piece(grid=Q, note_onset=onset, note_duration=duration, note_pitch=pitch,
                 note_velocity=np.broadcast_to(np.asarray(velocity, dtype=np.int64), (n,)).copy(),
                 note_stream=np.broadcast_to(np.asarray(stream, dtype=np.int64), (n,)).copy())


C_MAJOR_SCALE = piece([(i * Q, Q, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])


def test_c_major_scale():
    assert scale_consistency(C_MAJOR_SCALE) == 1.0
    assert pitch_range(C_MAJOR_SCALE) == 12
    # seven pitch classes, C twice in eight notes: -(2/8 log2 2/8 + 6 * 1/8 log2 1/8) = 0.5 + 2.25
    assert pitch_class_entropy(C_MAJOR_SCALE) == pytest.approx(2.75)
    assert pitch_class_histogram(C_MAJOR_SCALE)[[0, 1, 2]].tolist() == [0.25, 0.0, 0.125]
    assert polyphony(C_MAJOR_SCALE) == 1.0
    assert empty_beat_rate(C_MAJOR_SCALE) == 0.0  # a note starts on each of the 8 beats
    assert note_density(C_MAJOR_SCALE) == 4.0  # 8 notes in 2 bars of 4/4
    assert groove_consistency(C_MAJOR_SCALE) == 1.0  # both bars: onsets on the four beats
    lengths = note_length_histogram(C_MAJOR_SCALE)
    assert lengths[2] == 1.0 and lengths.sum() == 1.0  # all quarter notes


def test_chromatic_notes_lower_scale_consistency():
    # C D E F# : the best scale (G major, E minor...) holds all four; add C# and it cannot
    four = piece([(0, Q, 60), (Q, Q, 62), (2 * Q, Q, 64), (3 * Q, Q, 66)])
    assert scale_consistency(four) == 1.0
    five = piece([(0, Q, 60), (Q, Q, 62), (2 * Q, Q, 64), (3 * Q, Q, 66), (4 * Q, Q, 61)])
    assert scale_consistency(five) == pytest.approx(4 / 5)


def test_single_repeated_note():
    repeated = piece([(i * Q, Q, 67) for i in range(6)])
    assert pitch_class_entropy(repeated) == 0.0
    assert pitch_range(repeated) == 0
    assert scale_consistency(repeated) == 1.0


def test_all_twelve_classes_reach_the_entropy_maximum():
    chromatic = piece([(i * Q, Q, 60 + i) for i in range(12)])
    assert pitch_class_entropy(chromatic) == pytest.approx(math.log2(12))


def test_held_chord_polyphony_and_empty_beats():
    chord = piece([(0, 4 * Q, 60), (0, 4 * Q, 64), (0, 4 * Q, 67)])
    assert polyphony(chord) == 3.0
    assert empty_beat_rate(chord) == 0.75  # one onset beat out of four
    assert note_length_histogram(chord)[0] == 1.0  # whole notes
    # a melody over a held bass: 2 voices for the first half, 1 after -> mean 1.5
    assert polyphony(piece([(0, 2 * Q, 48), (0, Q, 72), (Q, Q, 74), (2 * Q, Q, 76), (3 * Q, Q, 77)])) == 1.5


def test_groove_consistency_counts_changed_onsets():
    # bar 1: one onset at step 0; bar 2: onsets at 0 and 48 -> one position differs out of 96
    p = piece([(0, Q, 60), (4 * Q, Q, 60), (4 * Q + 2 * Q, Q, 62)])
    assert groove_consistency(p) == pytest.approx(1 - 1 / (4 * Q))
    assert math.isnan(groove_consistency(piece([(0, Q, 60)])))  # one bar: undefined


def test_velocity_histogram_and_drums():
    p = piece([(0, Q, 60), (Q, Q, 64)], velocity=[10, 100])
    assert velocity_histogram(p).tolist() == [0.5, 0, 0, 0, 0, 0, 0.5, 0]
    # a drum hit (kit 0, "pitch" 36 = bass drum) changes no pitch feature, but counts as a note
    with_drum = piece([(0, Q, 60), (Q, Q, 64), (0, Q, 36)], stream=[0, 0, DRUM_OFFSET])
    assert pitch_range(with_drum) == 4 and pitch_class_histogram(with_drum)[0] == 0.5
    assert note_density(with_drum) == 3.0


def test_triplets_and_dotted_notes_find_their_class():
    p = piece([(0, 8, 60), (8, 36, 60), (44, 18, 60)])  # 8th triplet, dotted quarter, dotted 8th
    h = note_length_histogram(p)
    assert h[11] == h[6] == h[7] == pytest.approx(1 / 3)


def test_empty_piece_is_defined():
    values = features(Piece(grid=Q))
    assert values["pitch_range"] == 0 and values["empty_beat_rate"] == 1.0
    assert values["pitch_class_histogram"].sum() == 0


def test_set_comparison():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    same_oa, same_kl = overlap_and_kl(intra_set_distances(a), inter_set_distances(b, a))
    assert same_oa > 0.9 and same_kl < 0.05
    far = rng.normal(50, 1, 200)
    far_oa, far_kl = overlap_and_kl(intra_set_distances(a), inter_set_distances(far, a))
    assert far_oa < 0.01 and far_kl > 5
    # against closed forms: N(0, 1) vs N(0.5, 1) overlap 2 Phi(-0.25) = 0.803, KL = 0.5^2 / 2 = 0.125
    oa, kl = overlap_and_kl(rng.normal(0, 1, 100_000), rng.normal(0.5, 1, 100_000))
    assert oa == pytest.approx(0.803, abs=0.02) and kl == pytest.approx(0.125, abs=0.02)
    # distances between vectors are Euclidean; NaN rows are skipped
    vectors = np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, 1.0]])
    assert intra_set_distances(vectors).tolist() == [5.0]
    assert inter_set_distances(np.array([1.0, 2.0]), np.array([4.0])).tolist() == [3.0, 2.0]


def test_feature_table_shapes():
    table = feature_table([C_MAJOR_SCALE, C_MAJOR_SCALE])
    for f in FEATURES:
        assert table[f.name].shape[0] == 2
        if f.histogram:
            assert table[f.name].shape[1] == len(f.labels)


def test_bar_repetition_counts_exact_and_transposed_repeats():
    from mozart.metrics import bar_repetition

    bar = 4 * Q
    motif = [(0, Q, 60), (Q, Q, 64), (2 * Q, 2 * Q, 67)]
    other = [(0, 2 * Q, 62), (2 * Q, 2 * Q, 65)]

    def at(b, notes, shift=0):
        return [(b * bar + o, d, p + shift) for o, d, p in notes]

    # A A' B A(+2): bars 2 (exact) and 4 (transposed) repeat an earlier bar -> 2 of 4
    assert bar_repetition(piece(at(0, motif) + at(1, motif) + at(2, other) + at(3, motif, 2))) == 0.5
    # all different (another rhythm, another interval): nothing repeats
    assert bar_repetition(piece(at(0, motif) + at(1, other) + at(2, [(0, Q, 60)]))) == 0.0
    # an empty bar between repeats is not counted; a changed duration is not a repeat
    assert bar_repetition(piece(at(0, motif) + at(2, motif) + at(3, [(0, Q, 60), (Q, Q, 64), (2 * Q, Q, 67)]))) \
        == pytest.approx(1 / 3)
    assert math.isnan(bar_repetition(piece(at(0, motif))))  # one bar: undefined
    # drums are not transposed: the same hit on another drum is another bar
    drums = piece([(0, Q, 36), (bar, Q, 38)], stream=DRUM_OFFSET)
    assert bar_repetition(drums) == 0.0
