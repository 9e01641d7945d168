"""Generation benchmark: sampling tokens/s and the wall time of `mozart generate --bars 16`.

    python bench/generate.py [--model DIR] [--runs 3] [--no-write]

Sampling is timed in-process (model loaded once; constrained sampling with the KV cache,
temperature 1, 16 bars, one sample per seed) three ways on the same seeds: Mozart's loop
with its GPT-2 step decoder, the same loop over transformers' forward, and transformers'
own ``generate()`` with the same grammar processor.  The command is timed end to end as a
user runs it: Python start-up, model load, sampling, MIDI, piano roll and FluidSynth
render.  Targets on 2 CPU cores: >= 300 tokens/s and under 20 s for 16 bars.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import mozart.sampling
from mozart.controls import Controls, SamplingSettings
from mozart.decoding import HFStepDecoder
from mozart.masks import hf_logits_processors
from mozart.models import default_model_dir, load_model
from mozart.sampling import generate_pieces

from report import machine, publish


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def runs(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    folder = args.model or default_model_dir()
    if folder is None:
        print("bench: no model (pass --model or run make default-model)", file=sys.stderr)
        return 1
    loaded = load_model(folder)
    model, tokenizer = loaded.model, loaded.tokenizer
    params = sum(p.numel() for p in model.parameters())
    rates, tokens_per_piece = [], []
    for seed in range(args.runs):
        started = time.perf_counter()
        text = generate_pieces(loaded, Controls(bars=16), SamplingSettings(), n=1, seed=seed)[0]
        elapsed = time.perf_counter() - started
        tokens_per_piece.append(len(text.split()))
        rates.append(len(text.split()) / elapsed)
    hf_rates = []
    fast = mozart.sampling.step_decoder
    mozart.sampling.step_decoder = lambda m, enc=None: HFStepDecoder(m, enc)  # the same loop, transformers' forward
    try:
        for seed in range(args.runs):
            started = time.perf_counter()
            text = generate_pieces(loaded, Controls(bars=16), SamplingSettings(), n=1, seed=seed)[0]
            hf_rates.append(len(text.split()) / (time.perf_counter() - started))
    finally:
        mozart.sampling.step_decoder = fast
    generate_rates = []
    bos = tokenizer.convert_tokens_to_ids("<bos>")
    for seed in range(args.runs):
        torch.manual_seed(seed)
        processors = hf_logits_processors(model, tokenizer, [], Controls(bars=16), SamplingSettings(), grid=loaded.grid)
        started = time.perf_counter()
        out = model.generate(torch.tensor([[bos]]), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=16 * 64 + 64, logits_processor=processors,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        generate_rates.append((out.shape[1] - 1) / (time.perf_counter() - started))
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.runs):
            cmd = [sys.executable, "-m", "mozart", "generate", "--bars", "16", "--seed", str(seed), "-o",
                   str(Path(tmp) / str(seed))] + (["-m", str(args.model)] if args.model else [])
            started = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
    body = "\n".join([
        "## Generation",
        "",
        f"`python bench/generate.py` ({machine()}, {torch.get_num_threads()} torch threads), model "
        f"`{'built-in' if args.model is None else args.model}` ({params / 1e6:.1f}M parameters), 16 bars, "
        f"seeds 0..{args.runs - 1}, constrained sampling with the KV cache.",
        "",
        "| measure | median | runs |",
        "|---|---|---|",
        f"| sampling, tokens/s (Mozart loop, GPT-2 step decoder) | {median(rates):,.0f} | {runs(rates)} |",
        f"| sampling, tokens/s (Mozart loop, transformers forward) | {median(hf_rates):,.0f} | {runs(hf_rates)} |",
        f"| sampling, tokens/s (transformers generate() + grammar processor) | {median(generate_rates):,.0f} | "
        f"{runs(generate_rates)} |",
        f"| tokens per 16-bar piece | {median(tokens_per_piece)} | "
        f"{', '.join(map(str, tokens_per_piece))} |",
        f"| `mozart generate --bars 16 -o out`, wall s | {median(walls):.1f} | "
        f"{', '.join(f'{w:.1f}' for w in walls)} |",
    ])
    return publish("generate", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
