"""Training benchmark: tokens/s and peak memory per model family and size, on this machine.

    python bench/train.py [--steps 6] [--batch 8] [--context 256] [--device cpu|cuda] [--compile] [--no-write]

Each (family, size) runs in its own process: a model built from the recipe, AdamW, and
`--steps` optimizer steps of forward + backward on batches of real token windows (from a
dataset built here from the corpus), after one warm-up step.  Tokens/s counts input
tokens; peak memory is the process's maximum RSS (CPU) or the GPU's peak allocation.

``--device cuda`` moves the model and batches to the GPU, autocasts to bf16 (SDPA
attention, as transformers picks it), optionally ``torch.compile``s the model, and
reports MFU: model FLOPs per token (6 x parameters + 12 x layers x width x context, the
usual estimate for forward + backward) x tokens/s / the GPU's dense bf16 peak
(``--peak-tflops``, or looked up from the device name).  Its table is a separate section
of docs/benchmarks.md, written only from a run on a GPU.
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

#: (family, size, precision, packed).  The first small row is the old default path (GPT-2, fp32, one
#: piece per window, padded), the last small row the new one (LLaMA, bf16 where the CPU has it, packed).
CASES = [("gpt2", "tiny", "fp32", True), ("llama", "tiny", "fp32", True), ("bart", "tiny", "fp32", False),
         ("gpt2", "small", "fp32", False), ("gpt2", "small", "fp32", True), ("gpt2", "small", "bf16", True),
         ("llama", "small", "fp32", True), ("llama", "small", "bf16", True), ("gpt2", "base", "bf16", True)]


#: Dense bf16 peak, TFLOP/s, by a substring of torch.cuda.get_device_name() (vendor datasheets).
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                   "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


def gpu_peak_tflops(name: str) -> float | None:
    for key, peak in GPU_PEAK_TFLOPS.items():  # more specific names first in the table
        if key in name:
            return peak
    return None


def run_case(data: str, arch: str, size: str, steps: int, batch: int, context: int, device: str = "cpu",
             compile_model: bool = False, precision: str = "fp32", packed: bool = True) -> dict:
    """Child process body: time ``steps`` optimizer steps and report as JSON."""
    import contextlib

    import torch
    from transformers import AutoTokenizer

    from mozart.lmdata import collate
    from mozart.models import SIZES, build_model
    from mozart.train import build_examples, load_config, special_ids

    torch.manual_seed(0)
    ids = special_ids(AutoTokenizer.from_pretrained(data))
    model = build_model(arch, size, ids, context).to(device)
    params = sum(p.numel() for p in model.parameters())
    runner = torch.compile(model) if compile_model else model
    bf16 = device == "cuda" or precision == "bf16"
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    config = load_config(None, arch=arch, size=size, context=context, packing=packed)
    examples = build_examples(Path(data), "train", config, context)
    full = [examples[i] for i in range(len(examples))]
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0)).tolist()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step(i: int) -> int:
        rows = [full[order[(i * batch + j) % len(full)]] for j in range(batch)]
        b = collate(rows, ids.pad)
        b = {k: v.to(device) for k, v in b.items()}
        with autocast:
            loss = runner(**b).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        computed[0] += b["attention_mask"].numel()
        return int(b["attention_mask"].sum())

    computed = [0]
    step(0)  # warm-up (and compilation)
    computed[0] = 0
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tokens, started = 0, time.perf_counter()
    for i in range(1, steps + 1):
        tokens += step(i)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    shape = SIZES[size]
    out = {"arch": arch, "size": size, "precision": "bf16" if bf16 else "fp32", "packed": packed,
           "padding_share": 1 - tokens / computed[0], "params": params, "tokens_per_s": tokens / elapsed,
           "step_s": elapsed / steps,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "threads": torch.get_num_threads(), "shape": shape.__dict__, "device": device}
    if device == "cuda":
        name = torch.cuda.get_device_name()
        flops_per_token = 6 * params + 12 * shape.layers * shape.width * context
        peak = gpu_peak_tflops(name)
        out.update(gpu=name, peak_gpu_mib=torch.cuda.max_memory_allocated() / 2**20, peak_tflops=peak,
                   mfu=flops_per_token * out["tokens_per_s"] / (peak * 1e12) if peak else None)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak for MFU")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--memory", action="store_true", help="also: peak RSS of `mozart train` on 1x and 16x")
    parser.add_argument("--case", nargs=5, help=argparse.SUPPRESS)  # internal: DATA ARCH SIZE PRECISION PACKED
    args = parser.parse_args(argv)
    if args.peak_tflops:
        GPU_PEAK_TFLOPS.clear()
        GPU_PEAK_TFLOPS[""] = args.peak_tflops
    if args.case:
        data, arch, size, precision, packed = args.case
        print(json.dumps(run_case(data, arch, size, args.steps, args.batch, args.context, args.device, args.compile,
                                  precision, packed == "packed")))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench: --device cuda but torch sees no GPU", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="mozart-bench-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run([sys.executable, "-m", "mozart", "dataset", str(args.corpus), "-o", str(data),
                        "--max-tokens", str(args.context), "-q"], check=True, capture_output=True)
        results = []
        for arch, size, precision, packed in CASES if args.device == "cpu" else [c for c in CASES if c[3]]:
            extra = ["--device", args.device] + (["--compile"] if args.compile else []) + \
                (["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else [])
            case = [str(data), arch, size, precision, "packed" if packed else "padded"]
            out = subprocess.run([sys.executable, __file__, "--case", *case, "--steps",
                                  str(args.steps), "--batch", str(args.batch), "--context", str(args.context),
                                  *extra], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], file=sys.stderr)
    if args.device == "cuda":
        return publish("train-gpu", gpu_table(results, args), write=not args.no_write)
    rows = [f"| {r['arch']} | {r['size']} | {r['precision']} | {'packed' if r['packed'] else 'one piece, padded'} | "
            f"{r['params'] / 1e6:.2f}M | {r['tokens_per_s']:,.0f} | {r['padding_share']:.1%} | {r['step_s']:.2f} | "
            f"{r['peak_rss_mib']:,.0f} |" for r in results]
    old = next(r for r in results if (r["arch"], r["size"], r["precision"], r["packed"]) == ("gpt2", "small", "fp32",
                                                                                              False))
    new = next(r for r in results if (r["arch"], r["size"], r["precision"], r["packed"]) == ("llama", "small", "bf16",
                                                                                              True))
    speedup = (f"The new default path (LLaMA small, bf16 autocast, packed windows) trains at "
               f"{new['tokens_per_s']:,.0f} real tokens/s against {old['tokens_per_s']:,.0f} for the old one (GPT-2 "
               f"small, fp32, one piece per window, padded, {old['padding_share']:.0%} of computed tokens padding): "
               f"{new['tokens_per_s'] / old['tokens_per_s']:.1f}x in the same run.")
    import torch

    gpu_note = ("This machine has a GPU: `--device cuda` measures it (a separate table)." if torch.cuda.is_available()
                else "This machine has no GPU; GPU figures come only from `--device cuda` runs on one.")
    body = "\n".join([
        "## Training throughput (CPU)",
        "",
        speedup,
        "",
        f"`python bench/train.py` ({machine()}, {results[0]['threads']} torch threads): batches of "
        f"{args.batch} x {args.context} real token windows from the corpus, AdamW, {args.steps} timed steps "
        "after one warm-up step, each case in its own process, windows in the same random order. Tokens/s counts "
        "real (non-padding) input tokens (for BART, encoder tokens); padding is the share of computed positions "
        "that are padding. bf16: CPU autocast (this CPU has AMX/AVX512-BF16 where `mozart train` turns it on). "
        + gpu_note,
        "",
        "| family | size | precision | windows | parameters | tokens/s | padding | s/step | peak RSS, MiB |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    status = publish("train", body, write=not args.no_write)
    if args.memory:
        status = status or publish("train-memory", memory_table(args.corpus), write=not args.no_write)
    return status


def memory_table(corpus: Path, copies: int = 16, steps: int = 50) -> str:
    """Peak RSS of `mozart train` (LLaMA tiny, packed, from the token store) on the corpus and on
    ``copies`` distinct variants of every file: resident memory must not grow with the corpus."""
    from dataset import peak_rss_run, variants

    rows = []
    with tempfile.TemporaryDirectory(prefix="mozart-bench-mem-") as tmp:
        for n in (1, copies):
            midi = Path(tmp) / f"midi{n}"
            files = variants(corpus, midi, n)
            data, run = Path(tmp) / f"data{n}", Path(tmp) / f"run{n}"
            subprocess.run([sys.executable, "-m", "mozart", "dataset", str(midi), "-o", str(data), "-q",
                            "--max-tokens", "512"], check=True, capture_output=True)
            stats = json.loads((data / "stats.json").read_text())
            wall, peak = peak_rss_run([sys.executable, "-m", "mozart", "train", str(data), "-o", str(run), "--arch",
                                       "llama", "--size", "tiny", "--max-steps", str(steps), "--batch-size", "8"])
            rows.append((n, files, stats["splits"]["train"]["tokens"], wall, peak))
    ratio = rows[1][4] / rows[0][4]
    return "\n".join([
        "## Training memory as the corpus grows",
        "",
        f"`python bench/train.py --memory`: `mozart train --arch llama --size tiny --max-steps {steps} --batch-size 8` "
        f"(a real subprocess; peak total RSS of its process tree, sampled every 20 ms) on the corpus and on "
        f"{copies} distinct variants of every file. Training reads windows from the token store's memory map, so "
        f"the {copies}x corpus peaks at {ratio:.2f}x the memory of the 1x one.",
        "",
        "| corpus | files | train tokens | wall, s | peak RSS, MiB |",
        "|---|---|---|---|---|",
        *[f"| {n}x | {files} | {tokens:,} | {wall:.0f} | {peak:,.0f} |" for n, files, tokens, wall, peak in rows],
    ])


def gpu_table(results: list[dict], args) -> str:
    rows = [f"| {r['arch']} | {r['size']} | {r['params'] / 1e6:.2f}M | {r['tokens_per_s']:,.0f} | {r['step_s']:.3f} | "
            f"{r['peak_gpu_mib']:,.0f} | {'n/a' if r['mfu'] is None else format(r['mfu'], '.1%')} |" for r in results]
    r0 = results[0]
    return "\n".join([
        "## Training throughput (GPU)",
        "",
        f"`python bench/train.py --device cuda{' --compile' if args.compile else ''}` on {r0['gpu']} "
        f"(bf16 autocast, SDPA attention; dense bf16 peak {r0['peak_tflops']} TFLOP/s for MFU): batches of "
        f"{args.batch} x {args.context} real token windows, AdamW, {args.steps} timed steps after one warm-up step. "
        "MFU = (6 x parameters + 12 x layers x width x context) x tokens/s / peak.",
        "",
        "| family | size | parameters | tokens/s | s/step | peak GPU memory, MiB | MFU |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])


if __name__ == "__main__":
    sys.exit(main())
