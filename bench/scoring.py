"""Scoring speed: how fast ``mozart evaluate`` computes a model's likelihood, in float32 and bf16.

    python bench/scoring.py [--model DIR] [--corpus DIR] [--files 15] [--data DATA] [--runs 2] [--no-write]

The first ``--files`` MIDI files of the corpus (default: 15 of the development corpus, as the issue's
measurement had) is encoded at the model's grid and
scored whole, as ``mozart evaluate`` scores a test split (``likelihood.model_likelihood``: sliding
window, exact sums, each token scored once), in float32 and under bf16 autocast (evaluate's
default where the CPU computes bf16 natively).  Reported: scored tokens per second (median of the
runs, after a warm-up) and the bits/note each precision gives.  With ``--data DATA`` the test split
of a dataset is timed too, record by record as ``mozart evaluate DATA`` scores it (a dataset cut
at ``--max-tokens`` up to the context needs no sliding window).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import symusic
import torch

import mozart
from mozart.hardware import cpu_has_bf16
from mozart.likelihood import model_likelihood
from mozart.lmdata import load_tokenizer, read_split, sliding_examples
from mozart.models import default_model_dir, load_model

from report import default_corpus, machine, midi_files, publish


class Row(NamedTuple):
    precision: str
    median: float  # scored tokens/s
    speeds: list[float]
    result: dict  # model_likelihood's figures


def measure(loaded, tokenizer, texts: list[str], runs: int) -> tuple[list[Row], int]:
    """A row per precision (float32, bf16), and the positions the model computes for the texts (a
    sliding window computes its overlap twice)."""
    model_likelihood(loaded.model, tokenizer, texts[:2], None)  # warm-up
    rows = []
    for bf16 in (False, True):
        speeds, result = [], None
        for _ in range(runs):
            started = time.perf_counter()
            result = model_likelihood(loaded.model, tokenizer, texts, None, bf16=bf16)
            speeds.append(result["tokens"] / (time.perf_counter() - started))
        rows.append(Row(result["precision"], statistics.median(speeds), speeds, result))
    first = rows[0].result
    positions = sum(len(e.input_ids) for e in sliding_examples(texts, tokenizer, first["context"],
                                                               first["stride"]).examples) \
        if first["stride"] else first["tokens"]
    return rows, positions


def table(what: str, rows: list[Row], positions: int) -> list[str]:
    first = rows[0].result
    computed = positions / first["tokens"]
    lines = [f"{what}: {first['tokens']:,} tokens, sliding window of {first['context']}, stride "
             f"{first['stride']}: {positions:,} positions run through the model, {computed:.2f} per scored "
             "token.", "",
             "| precision | scored tokens/s (median) | runs | positions/s | bits/note |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.precision} | {row.median:,.0f} | {', '.join(f'{s:,.0f}' for s in row.speeds)} | "
                     f"{row.median * computed:,.0f} | {row.result['bits_per_note']:.4f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the built-in model")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--files", type=int, default=15)
    parser.add_argument("--data", type=Path, default=None,
                        help="also score this dataset's test split (its records, as `mozart evaluate DATA` does)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(str(args.model or default_model_dir()))
    corpus = args.corpus or default_corpus()
    loaded, tokenizer = load_model(folder), load_tokenizer(folder)
    texts = []
    for path in midi_files(corpus)[: args.files]:
        try:
            texts.append(mozart.encode(symusic.Score(str(path)), grid=loaded.grid))
        except Exception:  # noqa: BLE001 - a file the codec refuses is simply not scored
            continue
    name = "built-in" if args.model is None else str(args.model)
    lines = [f"`python bench/scoring.py{f' --data {args.data}' if args.data else ''}` ({machine()}, "
             f"{torch.get_num_threads()} torch threads; CPU bf16: {'yes' if cpu_has_bf16() else 'no'}): model "
             f"`{name}` ({loaded.arch}).", ""]
    lines += table(f"{len(texts)} files of `{corpus.name}/` scored whole",
                   *measure(loaded, tokenizer, texts, args.runs))
    if args.data:
        test = read_split(args.data, "test")
        lines += table(f"The test split of `{args.data}` ({len(test):,} records, each scored whole as "
                       "`mozart evaluate` does)", *measure(loaded, tokenizer, test, args.runs))
    return publish("Scoring", "\n".join(lines).rstrip(), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
