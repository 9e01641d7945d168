"""Publish a trained run as the built-in model: copy its files and write its model card.

    python -m mozart.modelcard RUN_DIR DATA_DIR DEST_DIR [REPORT_DIR]

``make default-model`` runs this with DEST_DIR = src/mozart/default_model, evaluates the
published model (``mozart evaluate``) and runs it again with the report folder, which
adds the evaluation summary to the card.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from .likelihood import likelihood
from .train import build_examples, load_config, special_ids

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "metrics.csv")


def publish(run_dir: Path, data_dir: Path, dest: Path, report_dir: Path | None = None) -> dict:
    """Copy the model files of ``run_dir`` into ``dest`` and write README.md (the card)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = json.loads((run_dir / "metrics.json").read_text())
    stats = json.loads((data_dir / "stats.json").read_text())
    config = load_config(None, **{k: v for k, v in metrics["config"].items()})
    model = AutoModelForCausalLM.from_pretrained(str(run_dir))
    ids = special_ids(AutoTokenizer.from_pretrained(str(run_dir)))
    context = config.context or model.config.n_positions
    test_set = build_examples(data_dir, "test", config, context)
    test = likelihood(model, type(test_set)(test_set.examples[: config.max_eval_examples]), ids.pad)
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)
    v = metrics["valid"]
    card = f"""# Mozart's built-in model

A {metrics['parameters'] / 1e6:.1f}M-parameter GPT-2 decoder ({model.config.n_layer} layers, width
{model.config.n_embd}, context {context}) over the Mozart token format v1 at grid 24. `mozart generate` uses it
when `-m` is not given.

- **Data**: music21's public-domain corpus, subsets `chorales` (Bach chorale harmonizations) and `folk`
  (Aird's Airs, O'Neill's Music of Ireland, Ryan's Mammoth Collection), exported with `mozart corpus
  music21`; {stats['pieces']} distinct pieces ({stats['splits']['train']['pieces']} train,
  {stats['splits']['valid']['pieces']} valid, {stats['splits']['test']['pieces']} test), segments of at most
  512 tokens, train copies transposed by -3..3 semitones; {stats['tokens']:,} tokens in all.
- **Recipe**: `make default-model` (configs/default-model.toml): {metrics['steps']} optimizer steps of
  {config.batch_size} x {config.grad_accum} sequences, lr {config.lr}, warmup + cosine, on 2 CPU cores (no GPU).
- **Likelihood** (exact sums over all predicted tokens): valid {v['bits_per_note']:.2f} bits/note
  ({v['bits_per_token']:.3f} bits/token, {v['nats_per_token']:.3f} nats/token); test
  {test['bits_per_note']:.2f} bits/note ({test['bits_per_token']:.3f} bits/token) on the first
  {config.max_eval_examples} test segments ({test['notes']:,} notes).
- **License**: the weights are released under the MIT license, like Mozart; the training works are in the
  public domain (see docs/datasets.md for the corpus' per-work terms).
"""
    if report_dir is not None:
        card += evaluation_summary(json.loads((report_dir / "report.json").read_text()))
    (dest / "README.md").write_text(card)
    return {"valid": v, "test": test}


def evaluation_summary(report: dict) -> str:
    """The card's evaluation section, from a ``mozart evaluate`` report."""
    lik, validity = report["likelihood"], report["validity"]
    rows = "\n".join(f"| {name} | {r['bits_per_note']:.2f} | {r['bits_per_token']:.3f} | {r['perplexity']:.2f} |"
                     for name, r in lik.items())
    features = report["statistics"]["features"]
    stats = "\n".join(
        f"| {name} | {_pm(r.get('generated_mean'), r.get('generated_std'))} | "
        f"{_pm(r.get('reference_mean'), r.get('reference_std'))} | {r['overlapping_area']:.2f} | "
        f"{r['kl_divergence']:.2f} |" for name, r in features.items())
    c = report["config"]
    return f"""
## Evaluation

`mozart evaluate build/data -o build/default-report --samples {c['samples']}` on the whole test split of
its dataset ({lik['model']['tokens']:,} tokens, {lik['model']['notes']:,} notes; sliding window, stride
{lik['model']['stride']}), against baselines fitted on the train split:

| model | bits/note | bits/token | perplexity |
|---|---|---|---|
{rows}

Validity: {validity['constrained']['valid']}/{validity['constrained']['samples']} constrained samples and
{validity['unconstrained']['valid']}/{validity['unconstrained']['samples']} unconstrained samples pass `check`.
Musical statistics of {report['statistics']['generated_pieces']} constrained {c['bars']}-bar samples (temperature
{c['temperature']}) vs {report['statistics']['reference_pieces']} test pieces (OA: overlapping area, 1 is best;
KL: 0 is best; docs/evaluation.md):

| feature | samples mean ± std | test mean ± std | OA | KL |
|---|---|---|---|---|
{stats}
"""


def _pm(mean, std) -> str:
    if isinstance(mean, list) or mean is None:
        return "histogram"
    return f"{mean:.2f} ± {std:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    report = Path(args[3]) if len(args) == 4 else None
    print(json.dumps(publish(Path(args[0]), Path(args[1]), Path(args[2]), report), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
