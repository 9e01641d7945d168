"""Infilling: what the bars after a gap are worth to a FIM model, and how long an infill takes.

Two measurements, each written to its own section of docs/benchmarks.md (a speed-only run leaves the
suffix table alone):

1. **Suffix value** (``--model`` trained with fill-in-the-middle, ``--data`` its dataset): the
   bits/note of 4-bar gaps of the test split given the bars before *and* the bars after the
   gap, and given the bars before alone; the same model, the same gaps (lmdata.infill_examples);
   with as many bars around the gap as ``mozart infill`` reads, and with 4 and 4.
2. **Speed**: ``mozart infill PIECE --bars 13-16`` on a 32-bar piece with the built-in model
   (or ``--speed-model``), in-process after a warm-up, and the whole command (WAV and PNG
   included) as a new process.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mozart
from mozart.events import slice_steps
from mozart.fim import FimIds, fim_ids, fim_order_of
from mozart.hardware import bf16_on_cpu
from mozart.likelihood import likelihood, token_losses
from mozart.lmdata import Example, Examples, infill_examples, load_tokenizer, read_split
from mozart.midi import quantize, read_midi, to_score, write_midi
from mozart.models import load_model
from mozart.rewrite import NEXT_BARS, PREV_BARS, piece_bars
from mozart.tokens import BAR

from report import default_corpus, machine, publish

#: (bars before, bars after) a gap: what `mozart infill` reads, then the 4/4 of earlier editions.
SUFFIX_SETTINGS = ((PREV_BARS, NEXT_BARS), (4, 4))


#: What a gap bar is, for the breakdown: its exact token sequence appears among the bars read before
#: the gap, only among those read after it, or in neither.
BAR_KINDS = ("repeats a bar before the gap", "repeats only a bar after the gap", "repeats neither")


def _bars(ids: list[int], bar_id: int) -> list[tuple[int, ...]]:
    """The bars of a token sequence, each from its ``Bar`` to the next (the header before the first is left out)."""
    starts = [i for i, t in enumerate(ids) if t == bar_id] + [len(ids)]
    return [tuple(ids[a:b]) for a, b in zip(starts, starts[1:])]


def gap_kinds(fim_example: Example, markers: FimIds, bar_id: int) -> np.ndarray:
    """The kind (an index into BAR_KINDS) of each gap token of an ``infill_examples`` FIM example."""
    ids = fim_example.input_ids
    p, s, m = ids.index(markers.prefix), ids.index(markers.suffix), ids.index(markers.middle)
    ends = (markers.bos, markers.eos)
    read_before, read_after = (ids[p + 1:s], ids[s + 1:m]) if p < s else (ids[p + 1:m], ids[s + 1:p])  # psm / spm
    before = set(_bars([t for t in read_before if t not in ends], bar_id))
    after = set(_bars([t for t in read_after if t not in ends], bar_id))
    gap = _bars(ids[m + 1:], bar_id)
    return np.repeat([0 if bar in before else 1 if bar in after else 2 for bar in gap], [len(bar) for bar in gap])


def suffix_by_bar_kind(model, fim: Examples, left_to_right: Examples, markers: FimIds, bar_id: int) -> dict:
    """Total nats over the gap tokens of each bar kind, read with and without the bars after the gap
    (the same gaps, one forward each), and the tokens of each kind."""
    bf16 = bf16_on_cpu(model.device)
    totals = {"fim": np.zeros(3), "l2r": np.zeros(3), "tokens": np.zeros(3, dtype=np.int64)}
    for with_after, alone in zip(fim.examples, left_to_right.examples):
        kinds = gap_kinds(with_after, markers, bar_id)
        n = kinds.size
        for key, example in (("fim", with_after), ("l2r", alone)):
            totals[key] += np.bincount(kinds, weights=token_losses(model, example.input_ids, bf16)[-n:], minlength=3)
        totals["tokens"] += np.bincount(kinds, minlength=3)
    return totals


#: How each FIM order lays a gap out, as the table's text names it.
ARRANGEMENTS = {"psm": "`<fim_prefix> ... <fim_suffix> ... <fim_middle>`",
                "spm": "`<fim_suffix> ... <fim_prefix> ... <fim_middle>`"}


def suffix_value(model_dir: Path, data_dir: Path) -> tuple[list[str], dict]:
    loaded = load_model(model_dir)
    tokenizer = load_tokenizer(data_dir)
    texts = read_split(data_dir, "test")
    context = loaded.model.config.max_position_embeddings
    pad = tokenizer.token_to_id("<pad>")
    markers = fim_ids(tokenizer.get_vocab())
    bar_id = tokenizer.token_to_id(BAR)
    lines = [
        f"Model `{model_dir}`, test split of `{data_dir}` ({len(texts)} pieces): every 4-bar gap with a bar after it "
        f"whose arrangement fits the context of {context}, scored given the bars before and after it "
        f"({ARRANGEMENTS[fim_order_of(loaded.model)]}, the model's FIM order) and given the same bars before "
        "alone (left to right). "
        f"The first row is what `mozart infill` reads (up to {PREV_BARS} bars before, {NEXT_BARS} after).",
        "",
        "| bars before / after | notes scored | bits/note, before and after | bits/note, before only | "
        "suffix lowers bits/note by |",
        "|---|---|---|---|---|",
    ]
    gains, breakdown = {}, []
    for prev, after in SUFFIX_SETTINGS:
        examples = {with_suffix: infill_examples(texts, tokenizer, context, with_suffix, span_bars=4, prev_bars=prev,
                                                 next_bars=after, order=fim_order_of(loaded.model))
                    for with_suffix in (True, False)}
        notes = examples[True].notes
        if (prev, after) == SUFFIX_SETTINGS[0]:  # token by token, to split the gap by kind of bar
            totals = suffix_by_bar_kind(loaded.model, examples[True], examples[False], markers, bar_id)
            bits = {key: totals[key].sum() / math.log(2) / notes for key in ("fim", "l2r")}
            breakdown = [
                "",
                f"Where the difference comes from ({prev} / {after}): the gap's bars by whether their exact token "
                "sequence is among the bars the model reads before the gap, only among those after it, or neither.",
                "",
                "| gap bar | share of gap tokens | nats/token, before and after | nats/token, before only | ratio |",
                "|---|---|---|---|---|",
            ] + [f"| {kind} | {totals['tokens'][k] / totals['tokens'].sum():.0%} | "
                 f"{totals['fim'][k] / totals['tokens'][k]:.3f} | {totals['l2r'][k] / totals['tokens'][k]:.3f} | "
                 f"{totals['fim'][k] / totals['l2r'][k]:.2f} |" for k, kind in enumerate(BAR_KINDS)]
        else:
            bf16 = bf16_on_cpu(loaded.model.device)
            bits = {key: likelihood(loaded.model, examples[with_suffix], pad, bf16=bf16)["bits_per_note"]
                    for key, with_suffix in (("fim", True), ("l2r", False))}
        gains[f"{prev}/{after}"] = gain = 1 - bits["fim"] / bits["l2r"]
        lines.append(f"| {prev} / {after} | {notes:,} | {bits['fim']:.3f} | {bits['l2r']:.3f} | "
                     f"**{100 * gain:.1f}%** |")
    return lines + breakdown, {"gain": gains}


def thirty_two_bars(corpus: Path, out: Path) -> Path:
    """The first 32 bars of the first corpus piece with at least 32 bars and one instrument."""
    for path in sorted(corpus.glob("*.mid")):
        try:
            piece = quantize(read_midi(path), 24)
        except mozart.MozartError:
            continue
        starts = piece_bars(piece)[0]
        if starts.size > 33 and len(set(piece.note_stream.tolist())) == 1 and piece.ts_step.size == 1:
            write_midi(to_score(slice_steps(piece, 0, int(starts[32]))), out)
            return path
    raise SystemExit("bench: no 32-bar piece in the corpus")


def speed(model: Path | None, corpus: Path, runs: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        piece = Path(tmp) / "piece.mid"
        origin = thirty_two_bars(corpus, piece)
        mozart.infill(piece, "13-16", model=model)  # warm-up: imports, model load, caches
        inside, walls = [], []
        for seed in range(runs):
            started = time.perf_counter()
            mozart.infill(piece, "13-16", model=model, seed=seed)
            inside.append(time.perf_counter() - started)
        for seed in range(runs):
            cmd = [sys.executable, "-m", "mozart", "infill", str(piece), "--bars", "13-16", "--seed", str(seed),
                   "-o", str(Path(tmp) / f"out{seed}")] + (["-m", str(model)] if model else [])
            started = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
    fmt = ", ".join
    return [
        f"Bars 13-16 of the first 32 bars of `{origin.name}` (one instrument), model "
        f"`{model or 'built-in'}`, seeds 0..{runs - 1}.",
        "",
        "| measure | median, s | runs, s |",
        "|---|---|---|",
        f"| `mozart.infill` in-process (model load included, after a warm-up) | {statistics.median(inside):.2f} | "
        f"{fmt(f'{t:.2f}' for t in inside)} |",
        f"| `mozart infill piece.mid --bars 13-16 -o out` (new process, WAV and PNG included) | "
        f"{statistics.median(walls):.2f} | {fmt(f'{t:.2f}' for t in walls)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model trained with fill-in-the-middle")
    parser.add_argument("--data", type=Path, help="its dataset (the test split is scored)")
    parser.add_argument("--speed-model", type=Path, default=None, help="default: the built-in model")
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    where = f"`python bench/infill.py` ({machine()}, {torch.get_num_threads()} torch threads)."
    # two sections, so that a speed-only run (no --model/--data) leaves the suffix table in place
    if args.model and args.data:
        value = ["### What the bars after the gap are worth", "", where, ""] + suffix_value(args.model, args.data)[0]
        publish("infill-suffix", "\n".join(value), write=not args.no_write)
    lines = ["## Infilling", "", "### Speed", "", where, ""] + speed(args.speed_model, args.corpus, args.runs)
    return publish("infill", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
