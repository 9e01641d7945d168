"""Near-duplicate detection: pieces that are variants of one tune land in one split.

Splits by exact content put two editions of one tune (or one chorale in two encodings) on
both sides of the train/test line, and a test piece with a close variant in train makes
test bits/note a memory test.  So pieces are grouped before splitting by a musical
fingerprint that ignores what variants change:

- the **top line** (the highest melodic pitch at each onset) stands for the piece, so
  added or dropped inner voices, drums, velocities and program choices do not matter;
- its **pitch intervals** make it transposition-invariant, and leaving durations out makes
  it invariant to re-timing (tempo, note values, swing);
- its set of interval **n-grams** (``SHINGLE`` intervals each) changes only locally when a
  bar is rewritten, and a MinHash of that set estimates the Jaccard similarity of two
  pieces; locality-sensitive hashing finds the pairs above ``THRESHOLD`` without comparing
  every pair.  Pairs are joined transitively (union-find), so a group is every piece
  linked to another by a chain of close variants.

MinHash and the LSH index come from datasketch.
"""

from __future__ import annotations

import numpy as np

from .events import DRUM_OFFSET, Piece

#: Intervals per shingle (six notes of the top line).
SHINGLE = 5
#: Intervals are clipped to this many semitones (an octave leap and a two-octave leap read alike).
MAX_INTERVAL = 24
#: MinHash permutations: the similarity estimate's standard error is about 1/sqrt(NUM_PERM).
NUM_PERM = 64
#: Estimated Jaccard similarity of the shingle sets from which two pieces count as variants.
THRESHOLD = 0.5
#: Seed and hashing scheme of the MinHash permutations (fixed: signatures from different runs must compare).
SEED = 1
SCHEME = "affine32"


def top_line(piece: Piece) -> np.ndarray:
    """The highest melodic pitch at each onset, in time order (drums ignored)."""
    melodic = piece.note_stream < DRUM_OFFSET
    onset, pitch = piece.note_onset[melodic], piece.note_pitch[melodic]
    if onset.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-pitch, onset))  # by onset, highest pitch first
    onset, pitch = onset[order], pitch[order]
    first = np.ones(onset.size, dtype=bool)
    first[1:] = onset[1:] != onset[:-1]
    return pitch[first]


def shingles(piece: Piece) -> list[bytes]:
    """The set of interval n-grams of the piece's top line (one shingle for short lines;
    none for a piece with fewer than two melodic onsets)."""
    line = top_line(piece)
    intervals = np.clip(np.diff(line), -MAX_INTERVAL, MAX_INTERVAL).astype(np.int8)
    if intervals.size == 0:
        return []
    if intervals.size <= SHINGLE:
        return [intervals.tobytes()]
    windows = np.lib.stride_tricks.sliding_window_view(intervals, SHINGLE)
    return list({row.tobytes() for row in windows})


def signature(piece: Piece) -> np.ndarray | None:
    """The MinHash signature (``NUM_PERM`` uint32 values) of the piece's shingles, or None
    when the piece has no melodic line to compare (it then stays a group of its own)."""
    from datasketch import MinHash

    found = shingles(piece)
    if not found:
        return None
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    minhash.update_batch(found)
    return minhash.hashvalues.copy()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.mean(a == b))


def group_near_duplicates(signatures: list[np.ndarray | None], threshold: float = THRESHOLD) -> list[int]:
    """A group label per piece: pieces joined by a chain of pairs with similarity >= ``threshold``
    share one (the index of the group's first piece).  None signatures are groups of their own."""
    from datasketch import LeanMinHash, MinHashLSH

    parent = list(range(len(signatures)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for i, sig in enumerate(signatures):
        if sig is None:
            continue
        minhash = LeanMinHash(seed=SEED, hashvalues=sig, scheme=SCHEME)
        for j in index.query(minhash):
            if similarity(sig, signatures[j]) >= threshold:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
        index.insert(i, minhash)
    return [root(i) for i in range(len(signatures))]
