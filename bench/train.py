"""Training benchmark: tokens/s and peak memory per model family and size, on this machine.

    python bench/train.py [--steps 6] [--batch 8] [--context 256] [--no-write]

Each (family, size) runs in its own process: a model built from the recipe, AdamW, and
`--steps` optimizer steps of forward + backward on batches of real token windows (from a
dataset built here from the corpus), after one warm-up step.  Tokens/s counts input
tokens; peak memory is the process's maximum RSS.  On a GPU, run with the same flags.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import default_corpus, machine, publish

CASES = [("gpt2", "tiny"), ("llama", "tiny"), ("bart", "tiny"), ("gpt2", "small"), ("llama", "small"),
         ("gpt2", "base")]


def run_case(data: str, arch: str, size: str, steps: int, batch: int, context: int) -> dict:
    """Child process body: time ``steps`` optimizer steps and report as JSON."""
    import torch
    from transformers import AutoTokenizer

    from mozart.lmdata import collate
    from mozart.models import SIZES, build_model
    from mozart.train import build_examples, load_config, special_ids

    torch.manual_seed(0)
    config = load_config(None, arch=arch, size=size, context=context)
    ids = special_ids(AutoTokenizer.from_pretrained(data))
    model = build_model(arch, size, ids, context)
    examples = build_examples(Path(data), "train", config, context)
    full = [e for e in examples.examples if len(e.input_ids) >= context // 2] or examples.examples
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step(i: int) -> int:
        rows = [full[(i * batch + j) % len(full)] for j in range(batch)]
        b = collate([{"input_ids": r.input_ids, "labels": r.labels} for r in rows], ids.pad)
        loss = model(**b).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return int(b["attention_mask"].sum())

    step(0)  # warm-up
    tokens, started = 0, time.perf_counter()
    for i in range(1, steps + 1):
        tokens += step(i)
    elapsed = time.perf_counter() - started
    return {"arch": arch, "size": size, "params": sum(p.numel() for p in model.parameters()),
            "tokens_per_s": tokens / elapsed, "step_s": elapsed / steps,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "shape": SIZES[size].__dict__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # internal: DATA ARCH SIZE
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(*args.case, args.steps, args.batch, args.context)))
        return 0
    with tempfile.TemporaryDirectory(prefix="mozart-bench-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run([sys.executable, "-m", "mozart", "dataset", str(args.corpus), "-o", str(data),
                        "--max-tokens", str(args.context), "-q"], check=True, capture_output=True)
        results = []
        for arch, size in CASES:
            out = subprocess.run([sys.executable, __file__, "--case", str(data), arch, size, "--steps",
                                  str(args.steps), "--batch", str(args.batch), "--context", str(args.context)],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], file=sys.stderr)
    rows = [f"| {r['arch']} | {r['size']} | {r['params'] / 1e6:.2f}M | {r['tokens_per_s']:,.0f} | "
            f"{r['step_s']:.2f} | {r['peak_rss_mib']:,.0f} |" for r in results]
    body = "\n".join([
        "## Training throughput (CPU)",
        "",
        f"`python bench/train.py` ({machine()}, {results[0]['threads']} torch threads): batches of "
        f"{args.batch} x {args.context} real token windows from the corpus, AdamW, {args.steps} timed steps "
        "after one warm-up step, each case in its own process. Tokens/s counts input tokens (for BART, encoder "
        "tokens). No GPU was available for this run, so no GPU tokens/s or MFU figures are given.",
        "",
        "| family | size | parameters | tokens/s | s/step | peak RSS, MiB |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    return publish("train", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
