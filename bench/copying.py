"""Does a model copy? Its loss on bars that repeat an earlier bar of the piece, against other bars.

    python bench/copying.py --data DATA --model A [--model B ...] [--pieces 120] [--no-write]

Music repeats itself: in the built-in model's test split about one bar in six is an exact copy of
an earlier bar of its piece.  A model that has learnt to copy (attention heads that find the earlier
occurrence and carry on from it, "induction heads") predicts such a bar almost for free once it
has started; one that has not scores it like any other bar, and its samples repeat nothing, and a
fill-in-the-middle model cannot use the bars after a gap either.  For each of the first
``--pieces`` test pieces (its first context-length window, read left to right), every bar after the
first is a *repeat* when its whole token sequence (positions, pitches, durations, velocities) equals
an earlier bar's in the window, *new* otherwise; the table gives the mean loss per token of each
(every token of the bar but its ``Bar``, which no model can tell apart), and their ratio.

A plainer probe of the same skill: each piece's first half-context of tokens written twice in one window.
The second half is a verbatim copy, so a model that copies pays almost nothing for it; the table gives
its loss per token against the first half's (every token after the copy's first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mozart.hardware import bf16_on_cpu
from mozart.likelihood import token_losses
from mozart.lmdata import load_tokenizer, piece_ids, read_split
from mozart.models import load_model
from mozart.tokens import BAR

from report import machine, publish


def bar_losses(model, windows: list[list[int]], bar_id: int) -> tuple[list[float], list[float]]:
    """Mean nats/token of each repeated and each new bar (after the first) of every window."""
    repeated, new = [], []
    for window in windows:
        nll = token_losses(model, window, bf16=bf16_on_cpu(model.device))  # nll[j]: token j+1
        starts = [int(i) for i in np.flatnonzero(np.asarray(window) == bar_id)]
        seen: set[tuple[int, ...]] = set()
        for first, (start, end) in enumerate(zip(starts, starts[1:])):
            bar = tuple(window[start:end])
            if first:
                (repeated if bar in seen else new).append(float(nll[start:end - 1].mean()))
            seen.add(bar)
    return repeated, new


def verbatim_losses(model, pieces: list[list[int]], half: int) -> tuple[float, float]:
    """Mean nats/token of the first ``half`` tokens of each piece at least that long, and of the same
    tokens written again right after them (from the copy's second token on)."""
    first, copy = [], []
    for piece in pieces:
        if len(piece) < half:
            continue
        nll = token_losses(model, piece[:half] * 2, bf16=bf16_on_cpu(model.device))  # nll[j]: token j+1
        first.append(float(nll[:half - 1].mean()))
        copy.append(float(nll[half:].mean()))
    return float(np.mean(first)), float(np.mean(copy))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a dataset folder (its test split is read)")
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--pieces", type=int, default=120)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer(args.data)
    pieces = piece_ids(read_split(args.data, "test")[: args.pieces], tokenizer)
    lines = ["## Copying: loss on repeated bars", "",
             f"`python bench/copying.py --data {args.data} --pieces {args.pieces}` ({machine()}): the first window of "
             f"each of the first {len(pieces)} test pieces; mean nats/token of the bars that repeat an earlier bar of "
             "the window exactly, and of the other bars (every bar after the first). Verbatim: the first half-context "
             "of tokens of each piece that long, written twice in one window; nats/token of the first writing and "
             "of the copy.", "",
             "| model | repeated bars | nats/token, repeated | nats/token, new | repeated / new "
             "| verbatim: first / copy, nats/token | copy / first |",
             "|---|---|---|---|---|---|---|"]
    for folder in args.model:
        loaded = load_model(folder)
        context = loaded.model.config.max_position_embeddings
        repeated, new = bar_losses(loaded.model, [p[:context] for p in pieces], tokenizer.token_to_id(BAR))
        r, n = float(np.mean(repeated)), float(np.mean(new))
        once, twice = verbatim_losses(loaded.model, pieces, context // 2)
        counted = f"{len(repeated)} of {len(repeated) + len(new)}"
        lines.append(f"| `{folder}` | {counted} | {r:.3f} | {n:.3f} | {r / n:.2f} | {once:.3f} / {twice:.3f} "
                     f"| {twice / once:.2f} |")
    return publish("copying", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
