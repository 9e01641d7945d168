"""Codec benchmark: Mozart vs MidiTok 3.1 REMI on the same files, in one process.

    python bench/codec.py [--corpus DIR] [--repeats 3] [--no-write]

Both tokenizers get the same in-memory symusic Scores (file loading is not timed).
REMI is configured with programs, tempos and time signatures in one token stream.
Reported per tokenizer: whole-corpus encode and decode time as notes/s (token counts
differ, so tokens/s is shown but is not the measure), tokens per note, and round-trip
note F1 against Q(x), the source quantized to Mozart's 24-steps-per-quarter grid:
"exact" matches (program, drum, pitch, onset, duration, velocity); "onset" matches
(program, drum, pitch, onset) only.  The table is written into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import symusic

import mozart

from report import default_corpus, machine, package_version, publish

GRID = 24


def note_keys(score: symusic.Score, exact: bool) -> Counter:
    """Notes of ``score`` on Mozart's grid as a multiset (drum tracks keyed by is_drum)."""
    tpq = score.ticks_per_quarter
    keys: Counter = Counter()
    for track in score.tracks:
        if not len(track.notes):
            continue
        n = track.notes.numpy()
        onset = (2 * n["time"].astype(np.int64) * GRID + tpq) // (2 * tpq)
        cols = [onset, n["pitch"].astype(np.int64)]
        if exact:
            dur = np.maximum(1, (2 * n["duration"].astype(np.int64) * GRID + tpq) // (2 * tpq))
            cols += [dur, n["velocity"].astype(np.int64)]
        program = -1 if track.is_drum else int(track.program)  # MidiTok's drum program is -1
        keys.update((program,) + row for row in zip(*(c.tolist() for c in cols)))
    return keys


def f1(truth: Counter, got: Counter) -> float:
    tp = sum((truth & got).values())
    n_truth, n_got = sum(truth.values()), sum(got.values())
    if not n_truth and not n_got:
        return 1.0
    precision = tp / n_got if n_got else 0.0
    recall = tp / n_truth if n_truth else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def make_remi():
    import miditok

    config = miditok.TokenizerConfig(
        use_programs=True,
        one_token_stream_for_programs=True,
        use_tempos=True,
        use_time_signatures=True,
    )
    return miditok.REMI(config)


def best_time(fn, repeats: int):
    """Run ``fn`` ``repeats`` times; return (best seconds, last result).  The previous
    result is released outside the timed region, so freeing it is not counted."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(corpus: Path, repeats: int) -> dict:
    paths = sorted(p for p in corpus.iterdir() if p.suffix.lower() in {".mid", ".midi"})
    scores = [symusic.Score(str(p)) for p in paths]
    n_notes = sum(s.note_num() for s in scores)
    results = {"files": len(scores), "notes": n_notes}

    # --- Mozart
    enc, texts = best_time(lambda: [mozart.encode(s, grid=GRID) for s in scores], repeats)
    dec, decoded = best_time(lambda: [mozart.decode(t) for t in texts], repeats)
    n_tokens = sum(len(t.split()) for t in texts)
    results["mozart"] = _summary(scores, decoded, enc, dec, n_tokens, n_notes)
    del decoded

    # --- MidiTok REMI
    remi = make_remi()
    failures = 0

    def remi_encode() -> list:
        nonlocal failures
        failures, seqs = 0, []
        for s in scores:
            try:
                seqs.append(remi.encode(s))
            except Exception:  # MidiTok rejects some files; count them, keep going
                seqs.append(None)
                failures += 1
        return seqs

    enc, seqs = best_time(remi_encode, repeats)
    dec, remi_decoded = best_time(lambda: [remi.decode(q) if q is not None else None for q in seqs], repeats)
    n_tokens = sum(len(q.ids) for q in seqs if q is not None)
    empty = [symusic.Score(s.ticks_per_quarter) if d is None else d for s, d in zip(scores, remi_decoded)]
    results["remi"] = _summary(scores, empty, enc, dec, n_tokens, n_notes)
    results["remi"]["failures"] = failures
    results["remi"]["vocab"] = len(remi)
    results["mozart"]["vocab"] = len(mozart.vocabulary(GRID))
    results["mozart"]["failures"] = 0
    return results


def _summary(scores, decoded, enc_s, dec_s, n_tokens, n_notes) -> dict:
    exact = [f1(note_keys(s, True), note_keys(d, True)) for s, d in zip(scores, decoded)]
    onset = [f1(note_keys(s, False), note_keys(d, False)) for s, d in zip(scores, decoded)]
    return {
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_notes_per_s": n_notes / enc_s,
        "decode_notes_per_s": n_notes / dec_s,
        "encode_tokens_per_s": n_tokens / enc_s,
        "decode_tokens_per_s": n_tokens / dec_s,
        "tokens": n_tokens,
        "tokens_per_note": n_tokens / n_notes,
        "f1_exact_mean": float(np.mean(exact)),
        "f1_exact_min": float(np.min(exact)),
        "f1_onset_mean": float(np.mean(onset)),
    }


def table(r: dict, corpus: Path, repeats: int) -> str:
    m, q = r["mozart"], r["remi"]
    rows = [
        ("encode, notes/s", f"{m['encode_notes_per_s']:,.0f}", f"{q['encode_notes_per_s']:,.0f}",
         f"{m['encode_notes_per_s'] / q['encode_notes_per_s']:.1f}x"),
        ("decode, notes/s", f"{m['decode_notes_per_s']:,.0f}", f"{q['decode_notes_per_s']:,.0f}",
         f"{m['decode_notes_per_s'] / q['decode_notes_per_s']:.1f}x"),
        ("encode, tokens/s (not the measure)",
         f"{m['encode_tokens_per_s']:,.0f}", f"{q['encode_tokens_per_s']:,.0f}", ""),
        ("decode, tokens/s (not the measure)",
         f"{m['decode_tokens_per_s']:,.0f}", f"{q['decode_tokens_per_s']:,.0f}", ""),
        ("whole-corpus encode / decode, s", f"{m['encode_s']:.3f} / {m['decode_s']:.3f}",
         f"{q['encode_s']:.3f} / {q['decode_s']:.3f}", ""),
        ("tokens per note", f"{m['tokens_per_note']:.3f}", f"{q['tokens_per_note']:.3f}",
         f"{m['tokens_per_note'] / q['tokens_per_note']:.2f}x"),
        ("round-trip note F1, exact (mean / worst file)", f"{m['f1_exact_mean']:.3f} / {m['f1_exact_min']:.3f}",
         f"{q['f1_exact_mean']:.3f} / {q['f1_exact_min']:.3f}", ""),
        ("round-trip note F1, program+pitch+onset (mean)",
         f"{m['f1_onset_mean']:.3f}", f"{q['f1_onset_mean']:.3f}", ""),
        ("vocabulary size", f"{m['vocab']}", f"{q['vocab']}", ""),
        ("files that failed to encode", f"{m['failures']}", f"{q['failures']}", ""),
    ]
    lines = [
        "## Codec: Mozart vs MidiTok REMI",
        "",
        f"`python bench/codec.py` on {r['files']} files, {r['notes']:,} notes (`{corpus.name}/` corpus); "
        f"best of {repeats} runs; {machine()}, symusic {package_version('symusic')}, "
        f"MidiTok {package_version('miditok')}. Both get the same in-memory symusic Scores (loading not timed). "
        "REMI: programs + tempos + time signatures, one token stream, other settings default. "
        "Mozart: grid 24. F1 is against the source quantized to 24 steps per quarter (Q in docs/format.md).",
        "",
        "| measure | Mozart | MidiTok REMI | Mozart / REMI |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the table without updating docs/benchmarks.md")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"bench: corpus folder {args.corpus} not found (set MOZART_TEST_CORPUS or --corpus)", file=sys.stderr)
        return 1
    results = run(args.corpus, args.repeats)
    section = table(results, args.corpus, args.repeats)
    return publish("codec", section, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
