"""Musical statistics: pure functions from a quantized piece to a number or a histogram.

Every feature reads a :class:`~mozart.events.Piece` (times in grid steps, ``grid`` steps
per quarter note) and nothing else, so the same numbers come out for a MIDI file, a token
text or a generated sample.  Pitch features skip drum notes (their "pitch" is an
instrument).  Features follow MusPy (Dong et al., 2020, "MusPy: A Toolkit for Symbolic
Music Generation", ISMIR) and Yang & Lerch (2018, "On the evaluation of generative models
in music", Neural Computing and Applications 32); each docstring gives the formula.

Comparing two sets of pieces (generated vs real) uses Yang & Lerch's intra/inter-set
method: per feature, the distribution of pairwise distances inside the reference set is
compared with the distribution of distances between the sets, by the overlapping area
(OA) and the KL divergence of their kernel density estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .events import Piece, bar_layout, bar_steps

#: Major-scale pitch classes from the tonic; minor is the natural minor.
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])

#: Yang & Lerch's twelve note-length classes, in quarter notes: whole, half, quarter,
#: 8th, 16th; dotted half, quarter, 8th, 16th; half, quarter and 8th triplets.
NOTE_LENGTH_CLASSES = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 0.75, 0.375, 4 / 3, 2 / 3, 1 / 3])
NOTE_LENGTH_NAMES = ("1", "1/2", "1/4", "1/8", "1/16", "1/2.", "1/4.", "1/8.", "1/16.", "1/2t", "1/4t", "1/8t")

#: Velocity histogram: 8 bins of 16 velocities (1-15, 16-31, ..., 112-127).
VELOCITY_BINS = 8


def _pitched(piece: Piece) -> np.ndarray:
    """Mask of the notes that are not drums."""
    return piece.note_stream < 128


def pitch_range(piece: Piece) -> float:
    """Highest minus lowest pitch of the pitched notes, in semitones (0 without notes).

    ``PR = max(p) - min(p)`` (Yang & Lerch's "pitch range").
    """
    pitches = piece.note_pitch[_pitched(piece)]
    return float(pitches.max() - pitches.min()) if pitches.size else 0.0


def pitch_class_histogram(piece: Piece) -> np.ndarray:
    """Share of pitched notes on each pitch class C, C#, ..., B (sums to 1; zeros without notes).

    ``h[c] = #{notes with pitch mod 12 = c} / #notes`` (Yang & Lerch's "PCH").
    """
    pitches = piece.note_pitch[_pitched(piece)]
    counts = np.bincount(pitches % 12, minlength=12).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def pitch_class_entropy(piece: Piece) -> float:
    """Shannon entropy of the pitch-class histogram, in bits (0 for one pitch class, log2 12 at most).

    ``H = -sum_c h[c] log2 h[c]`` (MusPy's ``pitch_class_entropy``).
    """
    h = pitch_class_histogram(piece)
    h = h[h > 0]
    return float(-(h * np.log2(h)).sum()) if h.size else 0.0


def polyphony(piece: Piece) -> float:
    """Mean number of pitched notes sounding, over the grid steps where at least one sounds.

    ``P = sum_t n(t) / #{t : n(t) > 0}`` with ``n(t)`` the pitched notes sounding at step t
    (MusPy's ``polyphony``; 1.0 for a melody, 0 without notes).
    """
    mask = _pitched(piece)
    onset, duration = piece.note_onset[mask], piece.note_duration[mask]
    if not onset.size:
        return 0.0
    # difference array: +1 at each onset, -1 at each end; its running sum is n(t)
    change = np.zeros(int((onset + duration).max()) + 1, dtype=np.int64)
    np.add.at(change, onset, 1)
    np.add.at(change, onset + duration, -1)
    sounding = np.cumsum(change)[:-1]
    active = sounding > 0
    return float(sounding[active].mean()) if active.any() else 0.0


def note_density(piece: Piece) -> float:
    """Notes (drums included) per bar, over the piece's bars (0 without notes).

    ``D = #notes / #bars`` with bars from the token format's bar layout, so a bar
    shortened by a time-signature change counts as a bar (Yang & Lerch's "NC" per bar).
    """
    starts, _ = bar_layout(piece)
    return piece.n_notes / starts.size if starts.size and piece.n_notes else 0.0


def empty_beat_rate(piece: Piece) -> float:
    """Share of beats (quarter notes) in which no note starts.

    ``E = #{beats without an onset} / #beats`` over the beats from 0 to the end of the
    last note (MusPy's ``empty_beat_rate``; 1.0 without notes).
    """
    if not piece.n_notes:
        return 1.0
    beats = math.ceil(int((piece.note_onset + piece.note_duration).max()) / piece.grid)
    occupied = np.unique(piece.note_onset // piece.grid)
    return 1.0 - occupied.size / beats


def scale_consistency(piece: Piece) -> float:
    """Largest share of pitched notes inside one major or natural-minor scale (24 candidates).

    ``S = max_scale #{notes in scale} / #notes`` (MusPy's ``scale_consistency``; a
    C-major scale gives 1.0; 0 without notes).
    """
    pcs = piece.note_pitch[_pitched(piece)] % 12
    if not pcs.size:
        return 0.0
    counts = np.bincount(pcs, minlength=12)
    best = max(counts[(tonic + scale) % 12].sum() for tonic in range(12) for scale in (MAJOR, MINOR))
    return float(best / pcs.size)


def groove_consistency(piece: Piece) -> float:
    """One minus the mean Hamming distance between the onset patterns of neighbouring bars.

    Each bar's pattern is a binary vector over its grid steps (1 where a note starts);
    ``G = 1 - mean_i hamming(bar_i, bar_{i+1}) / L`` with ``L`` the longest bar in steps
    (Wu & Yang 2020, MusPy's ``groove_consistency``).  1.0 when every bar has the same
    rhythm; NaN with fewer than two bars.
    """
    starts, _ = bar_layout(piece)
    if starts.size < 2:
        return float("nan")
    ends = np.append(starts[1:], max(starts[-1] + 1, int((piece.note_onset + 1).max(initial=0))))
    length = int((ends - starts).max())
    patterns = np.zeros((starts.size, length), dtype=bool)
    bar = np.searchsorted(starts, piece.note_onset, side="right") - 1
    patterns[bar, piece.note_onset - starts[bar]] = True
    distances = (patterns[1:] != patterns[:-1]).sum(axis=1)
    return float(1.0 - distances.mean() / length)


def bar_repetition(piece: Piece) -> float:
    """Share of the bars with notes that repeat an earlier bar of the piece, exactly or transposed.

    A bar's content is its length and its notes as (stream, onset in the bar, duration,
    pitch): pitched notes relative to the bar's lowest pitched note (so a transposed copy
    has the same content), drums as they are; velocities are ignored.
    ``R = #{bars whose content appeared in an earlier bar} / #{bars with notes}`` — a
    measure of repetition structure (motifs, refrains, sequences); NaN with fewer than two
    bars with notes.
    """
    starts, which = bar_layout(piece)
    if starts.size == 0 or not piece.n_notes:
        return float("nan")
    full = bar_steps(piece.ts_numerator[which], piece.ts_denominator[which], piece.grid)
    lengths = np.minimum(np.append(starts[1:], np.iinfo(np.int64).max) - starts, full)  # cut bars are shorter
    bar = np.searchsorted(starts, piece.note_onset, side="right") - 1
    pitched = _pitched(piece)
    seen, repeats, filled = set(), 0, 0
    for b in np.unique(bar):
        notes = bar == b
        low = piece.note_pitch[notes & pitched].min(initial=128)  # 128: a bar of drums alone
        pitch = np.where(pitched, piece.note_pitch - low, piece.note_pitch)[notes]
        rows = zip(piece.note_stream[notes].tolist(), (piece.note_onset[notes] - starts[b]).tolist(),
                   piece.note_duration[notes].tolist(), pitch.tolist())
        content = (int(lengths[b]), tuple(sorted(rows)))
        repeats += content in seen
        seen.add(content)
        filled += 1
    return repeats / filled if filled >= 2 else float("nan")


def note_length_histogram(piece: Piece) -> np.ndarray:
    """Share of notes in each of Yang & Lerch's 12 note-length classes (sums to 1).

    Each duration (in quarter notes, ``steps / grid``) goes to the nearest class on a log
    scale (``NOTE_LENGTH_CLASSES``; longer than a whole note counts as a whole note).
    """
    if not piece.n_notes:
        return np.zeros(NOTE_LENGTH_CLASSES.size)
    quarters = piece.note_duration / piece.grid
    distance = np.abs(np.log2(quarters)[:, None] - np.log2(NOTE_LENGTH_CLASSES)[None, :])
    counts = np.bincount(distance.argmin(axis=1), minlength=NOTE_LENGTH_CLASSES.size).astype(float)
    return counts / counts.sum()


def velocity_histogram(piece: Piece) -> np.ndarray:
    """Share of notes in each of 8 velocity bins of 16 (0-15, 16-31, ..., 112-127); sums to 1."""
    counts = np.bincount(piece.note_velocity // 16, minlength=VELOCITY_BINS).astype(float)
    return counts / counts.sum() if counts.sum() else counts


@dataclass(frozen=True)
class Feature:
    """One statistic: its function and whether it is a number or a histogram."""

    name: str
    compute: Callable[[Piece], float | np.ndarray]
    histogram: bool = False
    labels: tuple[str, ...] = ()  # histogram bin names


FEATURES = (
    Feature("pitch_range", pitch_range),
    Feature("pitch_class_entropy", pitch_class_entropy),
    Feature("polyphony", polyphony),
    Feature("note_density", note_density),
    Feature("empty_beat_rate", empty_beat_rate),
    Feature("scale_consistency", scale_consistency),
    Feature("groove_consistency", groove_consistency),
    Feature("bar_repetition", bar_repetition),
    Feature("pitch_class_histogram", pitch_class_histogram, True,
            ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")),
    Feature("note_length_histogram", note_length_histogram, True, NOTE_LENGTH_NAMES),
    Feature("velocity_histogram", velocity_histogram, True, tuple(f"{16 * i}-{16 * i + 15}" for i in range(8))),
)


def features(piece: Piece) -> dict[str, float | np.ndarray]:
    """Every feature of one piece, by name."""
    return {f.name: f.compute(piece) for f in FEATURES}


def feature_table(pieces: list[Piece]) -> dict[str, np.ndarray]:
    """Per feature, the values of all pieces stacked: shape (pieces,) or (pieces, bins)."""
    rows = [features(p) for p in pieces]
    return {f.name: np.array([r[f.name] for r in rows], dtype=float) for f in FEATURES}


# --- Yang & Lerch (2018): comparing two sets ---------------------------------------------


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between rows (absolute difference for scalars)."""
    diff = a - b
    return np.sqrt((diff ** 2).sum(axis=-1)) if diff.ndim > 1 else np.abs(diff)


def _finite_rows(values: np.ndarray) -> np.ndarray:
    keep = np.isfinite(values) if values.ndim == 1 else np.isfinite(values).all(axis=1)
    return values[keep]


def intra_set_distances(values: np.ndarray) -> np.ndarray:
    """Distances between every pair of pieces of one set (NaN features skipped)."""
    values = _finite_rows(values)
    i, j = np.triu_indices(len(values), k=1)
    return _distance(values[i], values[j])


def inter_set_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances between every piece of ``a`` and every piece of ``b``."""
    a, b = _finite_rows(a), _finite_rows(b)
    i, j = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return _distance(a[i.ravel()], b[j.ravel()])


def _kde(samples: np.ndarray, grid: np.ndarray, bandwidth_floor: float) -> np.ndarray:
    """Gaussian kernel density on an evenly spaced ``grid``, with Silverman's bandwidth (floored,
    so equal samples work).  Samples are binned to the grid first and the kernel convolved over
    the bins: O(grid) instead of O(grid x samples), for the ~10^5 pairwise distances of a test set.
    """
    n = samples.size
    iqr = np.percentile(samples, 75) - np.percentile(samples, 25)
    spread = min(samples.std(), iqr / 1.34) if iqr > 0 else samples.std()
    bandwidth = max(0.9 * spread * n ** -0.2, bandwidth_floor)
    step = grid[1] - grid[0]
    bins = np.clip(np.rint((samples - grid[0]) / step).astype(np.int64), 0, grid.size - 1)
    counts = np.bincount(bins, minlength=grid.size).astype(float)
    half = int(np.ceil(5 * bandwidth / step))
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))
    return np.convolve(counts, kernel)[half: half + grid.size] / n


def overlap_and_kl(p_samples: np.ndarray, q_samples: np.ndarray, points: int = 1000) -> tuple[float, float]:
    """(OA, KL(p || q)) of the kernel density estimates of two samples of distances.

    ``OA = integral min(p, q)`` (1 when the densities match, 0 when disjoint) and
    ``KL = integral p log(p / q)`` in nats, both by the trapezoid rule on a shared grid.
    NaN when either sample is empty.
    """
    if not p_samples.size or not q_samples.size:
        return float("nan"), float("nan")
    low = min(p_samples.min(), q_samples.min())
    high = max(p_samples.max(), q_samples.max())
    floor = max(high - low, 1e-6) * 0.02
    grid = np.linspace(low - 4 * floor, high + 4 * floor, points)
    p, q = _kde(p_samples, grid, floor), _kde(q_samples, grid, floor)
    oa = float(np.trapezoid(np.minimum(p, q), grid))
    tiny = 1e-12
    kl = float(np.trapezoid(p * np.log((p + tiny) / (q + tiny)), grid))
    return oa, max(kl, 0.0)


def compare_sets(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per feature: means and spreads of both sets, and Yang & Lerch's OA and KL.

    OA and KL compare the reference set's intra-set distances with the inter-set
    distances (generated vs reference): a generator whose pieces sit among the real ones
    as the real ones sit among themselves scores OA near 1 and KL near 0.
    """
    out = {}
    for f in FEATURES:
        gen, ref = generated[f.name], reference[f.name]
        intra_ref = intra_set_distances(ref)
        inter = inter_set_distances(gen, ref)
        oa, kl = overlap_and_kl(intra_ref, inter)
        row = {"overlapping_area": oa, "kl_divergence": kl,
               "intra_set_distance_generated": _mean(intra_set_distances(gen)),
               "intra_set_distance_reference": _mean(intra_ref), "inter_set_distance": _mean(inter)}
        for side, values in (("generated", gen), ("reference", ref)):
            row.update({f"{side}_{k}": v for k, v in describe(values, f.histogram).items()})
        out[f.name] = row
    return out


def describe(values: np.ndarray, histogram: bool) -> dict:
    """Mean over the pieces (per bin for a histogram feature) and, for numbers, the standard
    deviation; NaN values (a feature undefined for a piece) are skipped."""
    if histogram:
        return {"mean": np.nanmean(values, axis=0).tolist() if len(values) else []}
    return {"mean": _mean(values), "std": _std(values)}


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.std()) if x.size else float("nan")
