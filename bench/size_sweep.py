"""Model sizes under one wall-clock budget: which size learns most in the time a recipe has?

    python bench/size_sweep.py DATA --config configs/default-model.toml --size small --size medium \\
        --minutes 6 --batch-size 64 -o RUNS

Each size is first timed for a few optimizer steps (a calibration run), then trained with the
steps that fit ``--minutes`` (the cosine schedule ends on time; ``max_minutes`` guards the rest).
On a GPU the sizes train at once, one process each (small models leave most of the chip idle,
so each run's wall time is what it gets sharing it); on a CPU they train one after another.
Every run is then scored on the whole test split, as ``mozart evaluate`` scores it (sliding
window, exact sums), and its weights are written as float16 beside it (``RUNS/SIZE-half``: the
form the package ships).  The table goes to RUNS/sweep.md and RUNS/sweep.json (docs/training.md
quotes it with the machine it ran on).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from mozart.modelcard import copy_model

#: Trainer's closing summary line: {'train_runtime': 12.3, ..., 'train_steps_per_second': 4.1, ...}
_RUNTIME = re.compile(r"'train_runtime':\s*'?([0-9.]+)")


def _write_config(base: Path, path: Path, **values) -> Path:
    """The base TOML recipe with ``values`` overriding it (flat keys only, as configs/ are)."""
    recipe = {**tomllib.loads(base.read_text()), **values}
    lines = [f"{k} = {json.dumps(v)}" for k, v in recipe.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(data: Path, run: Path, config: Path) -> subprocess.Popen:
    run.parent.mkdir(parents=True, exist_ok=True)
    log = open(run.with_suffix(".log"), "w")
    return subprocess.Popen([sys.executable, "-m", "mozart", "train", str(data), "-o", str(run), "--config",
                             str(config)], stdout=log, stderr=subprocess.STDOUT)


def _run_all(jobs: list[tuple[Path, Path]], data: Path, parallel: bool) -> None:
    """Train every (run folder, config), at once or in turn; stop on the first failure."""
    procs = []
    for run, config in jobs:
        procs.append((run, _start(data, run, config)))
        if not parallel:
            procs[-1][1].wait()
    for run, proc in procs:
        if proc.wait() != 0:
            sys.exit(f"size_sweep: training {run} failed; see {run.with_suffix('.log')}:\n"
                     + run.with_suffix(".log").read_text()[-3000:])


def _seconds_per_step(run: Path, steps: int) -> float:
    found = _RUNTIME.findall(run.with_suffix(".log").read_text())
    if found:
        return float(found[-1]) / steps
    return json.loads((run / "metrics.json").read_text())["seconds"] / steps  # set-up included: errs long


def _test_figure(run: Path, data: Path) -> dict:
    """Bits/note of the run's model on the whole test split, as ``mozart evaluate`` scores it."""
    import torch

    from mozart.likelihood import model_likelihood
    from mozart.lmdata import load_tokenizer, read_split
    from mozart.models import load_base

    model, _ = load_base(run)
    if torch.cuda.is_available():
        model = model.to("cuda")
    with torch.no_grad():
        result = model_likelihood(model, load_tokenizer(data), read_split(data, "test"), None)
    return {"bits_per_note": result["bits_per_note"], "tokens": result["tokens"], "notes": result["notes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the recipe every size shares")
    parser.add_argument("--size", action="append", required=True)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of each run's steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--calibration-steps", type=int, default=40)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch

    parallel = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if parallel else f"CPU, {torch.get_num_threads()} threads"
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    common = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}

    started = time.perf_counter()
    steps = args.calibration_steps
    calib = [(out / f"calib-{size}", _write_config(args.config, out / f"calib-{size}.toml", size=size,
                                                   max_steps=steps, eval_every=steps, max_eval_examples=16,
                                                   validity_samples=0, **common))
             for size in args.size]
    _run_all(calib, args.data, parallel)
    per_step = {size: _seconds_per_step(run, steps) for size, (run, _) in zip(args.size, calib)}
    print(f"calibrated in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{s} {t * 1000:.0f} ms/step" for s, t in per_step.items()), flush=True)

    jobs = []
    for size in args.size:
        max_steps = max(1, int(args.minutes * 60 / per_step[size] * 0.97))
        config = _write_config(args.config, out / f"{size}.toml", size=size, max_steps=max_steps,
                               eval_every=max(1, max_steps // 8), max_minutes=args.minutes * 1.05, **common)
        jobs.append((out / size, config))
    _run_all(jobs, args.data, parallel)

    rows = {}
    for size in args.size:
        metrics = json.loads((out / size / "metrics.json").read_text())
        cfg = metrics["config"]
        rows[size] = {"parameters": metrics["parameters"], "steps": metrics["steps"],
                      "planned_steps": cfg["max_steps"], "seconds": metrics["seconds"],
                      "tokens_seen": metrics["steps"] * cfg["batch_size"] * cfg["grad_accum"] * metrics["context"],
                      "valid_bits_per_note": metrics["valid"]["bits_per_note"],
                      "test": _test_figure(out / size, args.data), "device": device,
                      "together": parallel, "packages": metrics.get("packages")}
        copy_model(out / size, out / f"{size}-half", extra=("metrics.json", "loss.png"))
    (out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = ["| size | parameters | steps | tokens seen | run wall time | valid bits/note | test bits/note |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size, r in rows.items():
        table.append(f"| {size} | {r['parameters'] / 1e6:.1f}M | {r['steps']:,} | {r['tokens_seen'] / 1e6:.0f}M | "
                     f"{r['seconds'] / 60:.1f} min | {r['valid_bits_per_note']:.2f} | "
                     f"{r['test']['bits_per_note']:.2f} |")
    note = (f"{device}; budget {args.minutes:g} min of steps per size"
            + (", all sizes at once" if parallel else ", one after another"))
    (out / "sweep.md").write_text("\n".join(table) + f"\n\n{note}\n")
    print("\n".join(table) + f"\n\n{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
