"""Generation benchmark: batched constrained sampling, the mask's cost, and `mozart generate` wall time.

    python bench/generate.py [--model DIR ...] [--runs 3] [--no-write]

Sampling is timed in-process (model loaded once, one warm-up piece first), 16 bars at
the decoding defaults, seeds 0..runs-1, for each model (default: the built-in one):
- n = 1 and n = 8 (one batch of 8 rows: aggregate tokens/s), constrained;
- the time spent in the grammar mask, as a share of constrained sampling (timed directly), and the
  same pieces' rate unconstrained (no mask; other pieces of other lengths, so only indicative);
- n = 1 and n = 8 through torch's step decoder (``decoding.py``, the path of models the numpy decoders do
  not cover: BART, adapters beyond plain LoRA), and n = 1 through transformers' forward.
The command `mozart generate --bars 16 -n 4 -o out` is timed end to end as a user runs it
(Python start-up, model load, sampling, MIDI, piano rolls, FluidSynth WAVs), and a fresh
process reports its import, model-load and sampling seconds apart.  Targets on 2 CPU
cores: >= 1,500 tokens/s with n = 8, >= 600 with n = 1, mask <= 15%, the command < 8 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import mozart.sampling
from mozart.controls import Controls, SamplingSettings
from mozart.decoding import HFStepDecoder
from mozart.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from mozart.masks import GrammarLogitsProcessor
from mozart.models import default_model_dir, load_model, load_sampler
from mozart.sampling import generate_pieces

from report import machine, publish

#: A fresh process: import, model load and sampling timed apart (the start-up item).
STARTUP = """
import json, sys, time
t0 = time.perf_counter()
import mozart.cli  # what `mozart generate` imports before it starts work, then what it imports to sample
from mozart.controls import Controls, SamplingSettings
from mozart.models import default_model_dir, load_sampler
from mozart.sampling import generate_pieces
t1 = time.perf_counter()
loaded = load_sampler(sys.argv[1])
t2 = time.perf_counter()
generate_pieces(loaded, Controls(bars=16), SamplingSettings(), n=1, seed=0)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "sample": t3 - t2}))
"""


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def runs(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def sampling_rates(loaded, n: int, constrained: bool, seeds: range) -> list[float]:
    """Aggregate tokens/s of one batch of ``n`` 16-bar pieces per seed (seed*n .. seed*n+n-1)."""
    settings = SamplingSettings(constrained=constrained, max_new_tokens=None if constrained else 16 * 40)
    rates = []
    for seed in seeds:
        started = time.perf_counter()
        texts = generate_pieces(loaded, Controls(bars=16), settings, n=n, seed=seed * n)
        elapsed = time.perf_counter() - started
        rates.append(sum(len(t.split()) for t in texts) / elapsed)
    return rates


def mask_share(loaded, n: int, seeds: range) -> float:
    """The share of constrained sampling's wall time spent building the grammar masks, timed directly
    (the time inside ``GrammarLogitsProcessor.row_mask`` over the whole sampling time)."""
    spent = [0.0]
    real = GrammarLogitsProcessor.row_mask

    def timed(self, *args):
        started = time.perf_counter()
        try:
            return real(self, *args)
        finally:
            spent[0] += time.perf_counter() - started

    GrammarLogitsProcessor.row_mask = timed
    try:
        started = time.perf_counter()
        for seed in seeds:
            generate_pieces(loaded, Controls(bars=16), SamplingSettings(), n=n, seed=seed * n)
        total = time.perf_counter() - started
    finally:
        GrammarLogitsProcessor.row_mask = real
    return spent[0] / total


def decoder_name(loaded) -> str:
    """The step decoder ``mozart generate`` samples ``loaded`` with, and how it stores its weights."""
    fast = mozart.sampling._step_decoder(loaded.model, None, 1)
    fast = getattr(fast, "decoder", fast)  # behind _TorchSteps: torch's decoder
    weights = getattr(fast, "weights", "dense")
    return type(fast).__name__ + ("" if weights == "dense" else f", {weights} weights")


def model_rows(folder: Path | None, label: str, seeds: range) -> list[str]:
    loaded = load_sampler(folder or default_model_dir())  # as `mozart generate` loads it
    full = load_model(loaded.folder)  # torch and transformers: the path of BART and of unusual adapters
    params = sum({t.data_ptr(): t.numel() for t in full.model.state_dict().values()}.values())  # tied once
    generate_pieces(loaded, Controls(bars=4), SamplingSettings(), n=2, seed=99)  # warm-up
    r1, r8 = sampling_rates(loaded, 1, True, seeds), sampling_rates(loaded, 8, True, seeds)
    u1, u8 = sampling_rates(loaded, 1, False, seeds), sampling_rates(loaded, 8, False, seeds)
    m1, m8 = mask_share(loaded, 1, seeds), mask_share(loaded, 8, seeds)
    generate_pieces(full, Controls(bars=4), SamplingSettings(), n=2, seed=99)  # warm-up
    t1, t8 = sampling_rates(full, 1, True, seeds), sampling_rates(full, 8, True, seeds)
    fast = mozart.sampling._step_decoder
    mozart.sampling._step_decoder = lambda m, enc=None, rows=1: mozart.sampling._TorchSteps(HFStepDecoder(m))
    try:
        hf1 = sampling_rates(full, 1, True, seeds)
    finally:
        mozart.sampling._step_decoder = fast
    name = f"{label} ({loaded.arch}, {params / 1e6:.1f}M parameters, {decoder_name(loaded)})"
    torch_name = f"{label} through torch ({decoder_name(full)})"
    return [
        f"| {name}: n=1, tokens/s | {median(r1):,.0f} | {runs(r1)} |",
        f"| {name}: n=8, aggregate tokens/s | {median(r8):,.0f} | {runs(r8)} |",
        f"| {name}: n=1 unconstrained, tokens/s | {median(u1):,.0f} | {runs(u1)} |",
        f"| {name}: n=8 unconstrained, aggregate tokens/s | {median(u8):,.0f} | {runs(u8)} |",
        f"| {name}: time in the grammar mask, share of constrained sampling, n=1 / n=8 | {m1:.0%} / {m8:.0%} | |",
        f"| {name}: 1 - constrained/unconstrained tokens/s, n=1 / n=8 (other pieces, other lengths) | "
        f"{1 - median(r1) / median(u1):.0%} / {1 - median(r8) / median(u8):.0%} | |",
        f"| {torch_name}: n=1, tokens/s | {median(t1):,.0f} | {runs(t1)} |",
        f"| {torch_name}: n=8, aggregate tokens/s | {median(t8):,.0f} | {runs(t8)} |",
        f"| {label} through transformers' forward: n=1, tokens/s | {median(hf1):,.0f} | {runs(hf1)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", default=None,
                        help="a model folder (repeatable; default: the built-in model)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.model is None and default_model_dir() is None:
        print("bench: no model (pass --model or run make default-model)", file=sys.stderr)
        return 1
    seeds = range(args.runs)
    rows = []
    for folder in args.model or [None]:
        rows += model_rows(folder, "built-in" if folder is None else f"`{folder}`", seeds)
    first = args.model[0] if args.model else None
    walls, startup = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            cmd = [sys.executable, "-m", "mozart", "generate", "--bars", "16", "-n", "4", "--seed", str(seed),
                   "-o", str(Path(tmp) / str(seed))] + (["-m", str(first)] if first else [])
            started = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
            out = subprocess.run([sys.executable, "-c", STARTUP, str(first or default_model_dir())], check=True,
                                 capture_output=True, text=True).stdout
            startup.append(json.loads(out.strip().splitlines()[-1]))
    parts = {k: median([s[k] for s in startup]) for k in ("import", "load", "sample")}
    body = "\n".join([
        "## Generation",
        "",
        f"`python bench/generate.py` ({machine()}, {torch.get_num_threads()} torch threads): 16 bars, the decoding "
        f"defaults (temperature {DEFAULT_TEMPERATURE}, top-p {DEFAULT_TOP_P}), "
        f"seeds 0..{args.runs - 1}, in-process after a warm-up (sampling only); n=8 is one batch of 8 rows, "
        "aggregate tokens/s. Unconstrained: the same loop without the grammar mask (up to 640 tokens). The mask's "
        "cost is the time inside `GrammarLogitsProcessor.row_mask` over the sampling time.",
        "",
        "| measure | median | runs |",
        "|---|---|---|",
        *rows,
        f"| `mozart generate --bars 16 -n 4 -o out` (WAVs and PNGs included), wall s | {median(walls):.1f} | "
        f"{', '.join(f'{w:.1f}' for w in walls)} |",
        "| a fresh process: import `mozart.cli` and the sampler / load the model / sample 16 bars, s | "
        f"{parts['import']:.2f} / {parts['load']:.2f} / {parts['sample']:.2f} | |",
    ])
    return publish("generate", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
