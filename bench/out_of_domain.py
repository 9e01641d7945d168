"""Out-of-domain likelihood: bits/note of models on a MIDI folder they never trained on.

    python bench/out_of_domain.py --model DIR [--model DIR ...] [--corpus DIR] [--no-write]

Every MIDI file of the corpus (default: the development corpus, 94 pop, piano, game and
classical files) is encoded at each model's grid and scored whole as ``<bos> words <eos>``
with the evaluation's sliding window (``likelihood.model_likelihood``: exact sums, each token
scored once, stride half the context).  A unigram model fitted on the corpus itself (the
same files: an optimistic baseline) is shown beside.  The built-in model's card quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import symusic

import mozart
from mozart.likelihood import baseline_likelihoods, comparable_stride, model_likelihood
from mozart.lmdata import load_tokenizer, piece_ids
from mozart.modelcard import check_figure
from mozart.models import load_model

from report import default_corpus, machine, midi_files, publish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the figures here (the model card reads REPORT_DIR/out_of_domain.json)")
    args = parser.parse_args(argv)
    corpus = args.corpus or default_corpus()
    paths = midi_files(corpus)
    rows, figures = [], []
    for folder in args.model:
        loaded = load_model(folder)
        tokenizer = load_tokenizer(folder)
        texts = [mozart.encode(symusic.Score(str(p)), grid=loaded.grid) for p in paths]
        started = time.perf_counter()
        stride = comparable_stride(loaded.model.config.max_position_embeddings)  # comparable across editions
        m = model_likelihood(loaded.model, tokenizer, texts, stride)
        seconds = time.perf_counter() - started
        ids = piece_ids(texts, tokenizer)
        unigram = baseline_likelihoods(ids, ids, tokenizer.get_vocab(), 2)["unigram"]
        params = sum(p.numel() for p in loaded.model.parameters())
        figures.append({"model": str(folder), "check_bits_per_note": check_figure(Path(folder)),
                        "bits_per_note": m["bits_per_note"], "bits_per_token": m["bits_per_token"],
                        "notes": m["notes"], "unigram_bits_per_note": unigram["bits_per_note"]})
        rows.append(f"| `{folder}` ({loaded.arch}, {params / 1e6:.1f}M) | {m['bits_per_note']:.2f} | "
                    f"{m['bits_per_token']:.3f} | {unigram['bits_per_note']:.2f} | {m['notes']:,} | {seconds:.0f} |")
    body = "\n".join([
        "## Out-of-domain likelihood",
        "",
        f"`python bench/out_of_domain.py` on `{corpus.name}/` ({len(paths)} MIDI files none of the models trained "
        f"on), {machine()}: each file encoded at the model's grid and scored whole (sliding window, stride half the "
        "context). The unigram is fitted on these same files (an optimistic baseline a model should beat).",
        "",
        "| model | bits/note | bits/token | unigram fitted on the corpus, bits/note | notes | seconds |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    if args.json:
        args.json.write_text(json.dumps({"corpus": corpus.name, "files": len(paths), "models": figures}, indent=1))
    return publish("out-of-domain", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
