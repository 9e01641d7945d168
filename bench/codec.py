"""Codec benchmark: Mozart vs MidiTok 3.1 REMI on the same files, in one process.

    python bench/codec.py [--corpus DIR] [--repeats 3] [--no-write]

Both tokenizers get the same in-memory symusic Scores (file loading is not timed).
REMI runs twice, with programs, tempos and time signatures in one token stream: once as
close to Mozart as it goes (24 positions per beat in every beat range, all 127
velocities: the fair comparison) and once at its defaults (8/4 positions per beat, 32
velocity bins).  REMI returns token ids, so Mozart is timed to ids too (its text, then
``tokenizer.piece_ids``: the ids ``mozart dataset`` writes into the token store, the same as
the Hugging Face tokenizer's, whose slower path is timed too; the text-only time is shown
beside it), and decoded from ids.
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
from mozart.tokenizer import build_tokenizer, piece_ids

from report import default_corpus, machine, midi_files, package_version, publish

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


def make_remi(fair: bool):
    """REMI with programs, tempos and time signatures in one stream; ``fair``: at Mozart's
    resolution (24 positions per beat in every beat range, all 127 velocities)."""
    import miditok

    resolution = {"beat_res": {(0, 4): GRID, (4, 12): GRID}, "num_velocities": 127} if fair else {}
    config = miditok.TokenizerConfig(
        use_programs=True,
        one_token_stream_for_programs=True,
        use_tempos=True,
        use_time_signatures=True,
        **resolution,
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
    paths = midi_files(corpus)
    scores = [symusic.Score(str(p)) for p in paths]
    n_notes = sum(s.note_num() for s in scores)
    results = {"files": len(scores), "notes": n_notes}

    # --- Mozart: MIDI -> text -> ids (what a model reads), and ids -> text -> MIDI
    tokenizer = build_tokenizer(GRID)
    enc_text, texts = best_time(lambda: [mozart.encode(s, grid=GRID) for s in scores], repeats)
    enc, ids = best_time(lambda: [piece_ids(mozart.encode(s, grid=GRID).split(), GRID) for s in scores], repeats)
    enc_hf, _ = best_time(lambda: [e.ids for e in tokenizer.encode_batch(
        [mozart.encode(s, grid=GRID) for s in scores])], repeats)
    dec_text, _ = best_time(lambda: [mozart.decode(t) for t in texts], repeats)
    # straight from the id arrays (mozart.decode_ids: no text in between), as REMI decodes its ids
    dec, decoded = best_time(lambda: [mozart.decode_ids(i, GRID) for i in ids], repeats)
    as_lists = [i[1:-1].tolist() for i in ids]
    dec_hf, _ = best_time(lambda: [mozart.decode(t) for t in tokenizer.decode_batch(as_lists)], repeats)
    n_tokens = sum(len(t.split()) for t in texts)
    results["mozart"] = _summary(scores, decoded, enc, dec, n_tokens, n_notes)
    results["mozart"].update(encode_text_s=enc_text, decode_text_s=dec_text, encode_hf_s=enc_hf, decode_hf_s=dec_hf,
                             failures=0,
                             vocab=len(mozart.vocabulary(GRID)))
    del decoded
    for name, fair in (("remi_fair", True), ("remi_default", False)):
        results[name] = run_remi(make_remi(fair), scores, repeats, n_notes)
    return results


def run_remi(remi, scores: list, repeats: int, n_notes: int) -> dict:
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
    summary = _summary(scores, empty, enc, dec, n_tokens, n_notes)
    summary.update(failures=failures, vocab=len(remi))
    return summary


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
    m, q, d = r["mozart"], r["remi_fair"], r["remi_default"]

    def row(label: str, key: str, fmt: str, ratio: bool = False) -> tuple:
        return (label, *(format(x[key], fmt) for x in (m, q, d)),
                f"{m[key] / q[key]:.1f}x" if ratio else "")

    rows = [
        row("encode to ids, notes/s", "encode_notes_per_s", ",.0f", True),
        ("encode to text only (Mozart), notes/s", f"{r['notes'] / m['encode_text_s']:,.0f}", "", "", ""),
        ("encode to ids through the Hugging Face tokenizer (Mozart), notes/s",
         f"{r['notes'] / m['encode_hf_s']:,.0f}", "", "", ""),
        row("decode from ids, notes/s", "decode_notes_per_s", ",.0f", True),
        ("decode from text (Mozart), notes/s", f"{r['notes'] / m['decode_text_s']:,.0f}", "", "", ""),
        ("decode from ids through the Hugging Face tokenizer's text (Mozart), notes/s",
         f"{r['notes'] / m['decode_hf_s']:,.0f}", "", "", ""),
        row("encode, tokens/s (not the measure)", "encode_tokens_per_s", ",.0f"),
        row("decode, tokens/s (not the measure)", "decode_tokens_per_s", ",.0f"),
        ("whole-corpus encode / decode, s", *(f"{x['encode_s']:.3f} / {x['decode_s']:.3f}" for x in (m, q, d)), ""),
        ("tokens per note", *(f"{x['tokens_per_note']:.3f}" for x in (m, q, d)),
         f"{m['tokens_per_note'] / q['tokens_per_note']:.2f}x"),
        ("round-trip note F1, exact (mean / worst file)",
         *(f"{x['f1_exact_mean']:.3f} / {x['f1_exact_min']:.3f}" for x in (m, q, d)), ""),
        row("round-trip note F1, program+pitch+onset (mean)", "f1_onset_mean", ".3f"),
        row("vocabulary size", "vocab", "d"),
        row("files that failed to encode", "failures", "d"),
    ]
    lines = [
        "## Codec: Mozart vs MidiTok REMI",
        "",
        f"`python bench/codec.py` on {r['files']} files, {r['notes']:,} notes (`{corpus.name}/` corpus); "
        f"best of {repeats} runs; {machine()}, symusic {package_version('symusic')}, "
        f"MidiTok {package_version('miditok')}. All get the same in-memory symusic Scores (loading not timed). "
        "REMI: programs + tempos + time signatures, one token stream; **REMI 24** is configured as close to "
        "Mozart as it goes (24 positions per beat in every beat range, all 127 velocities) and is the fair "
        "comparison (the ratio column); REMI defaults (8/4 positions per beat, 32 velocity bins) for reference. "
        "REMI returns ids, so Mozart's encode is timed to ids (text, then `tokenizer.piece_ids`: the ids the "
        "token store holds, equal to the Hugging Face tokenizer's, which is also timed) and its decode from "
        "ids (`mozart.decode_ids`: the id arrays straight to a Score, no text between); the text-only "
        "times are shown too. Mozart: grid 24. F1 is against the source quantized to 24 "
        "steps per quarter (Q in docs/format.md).",
        "",
        "| measure | Mozart | MidiTok REMI 24 | MidiTok REMI defaults | Mozart / REMI 24 |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(cells)} |" for cells in rows],
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
