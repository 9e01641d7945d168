"""Publish a trained run as the built-in model: copy its files and write its model card.

    python -m mozart.modelcard RUN_DIR DATA_DIR DEST_DIR [REPORT_DIR] [--finetune ADAPTER_DIR ADAPTER_DATA]
    python -m mozart.modelcard --check DEST_DIR
    python -m mozart.modelcard --digest DATA_DIR
    python -m mozart.modelcard --evaluation DEST_DIR REPORT_DIR

``make default-model`` runs the first form with DEST_DIR = src/mozart/default_model,
evaluates the published model (``mozart evaluate``) and runs it again with the report
folder, which adds the evaluation (the one test-split figure: the whole split).  Every
number and every recipe word in the card comes from the run's own files (metrics.json,
config.json, the dataset's stats.json and shards, the report), never from this file.
With ``--finetune``, the weights are those of ``ADAPTER_DIR/merged`` (``mozart finetune --merge``
of the published model on ADAPTER_DATA) and the card describes that second stage too.

``--evaluation`` rewrites only a published card's evaluation (and out-of-domain table, when the report
folder has one) from a new report: the sampler changes more often than the weights, and the figures it
gives must be the card's.  The section names the dataset it was evaluated on when that is not the one
the model was trained on (a rebuild with other code or another music21 can differ).

The card also stores a *check figure*: the model's bits/note on the chorale bundled with
the package, computed from the published weights.  ``--check`` (re)writes it; the test
suite recomputes it from the committed weights, which ties the card to those weights.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

from transformers import AutoConfig

from .files import write_atomic
from .weights import PREVIOUS_TOKENS_ARCHITECTURE, PREVIOUS_TOKENS_KEY

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "metrics.csv")
WEIGHTS = "model.safetensors"
#: The fixed piece the check figure scores (in the package: src/mozart/examples/).
CHECK_PIECE = "bach_bwv66.6.mid"
CHECK_HEADING = "## Check figure"
_CHECK_PATTERN = re.compile(r"at ([0-9.]+) bits/note with these weights")


def check_figure(model_dir: Path) -> float:
    """The model's bits/note on CHECK_PIECE (encoded at the model's grid, scored whole)."""
    from . import encode
    from .likelihood import comparable_stride, model_likelihood
    from .lmdata import load_tokenizer
    from .models import load_model

    loaded = load_model(model_dir)
    with resources.as_file(resources.files("mozart") / "examples" / CHECK_PIECE) as path:
        text = encode(path, grid=loaded.grid)
    stride = comparable_stride(loaded.model.config.max_position_embeddings)
    return model_likelihood(loaded.model, load_tokenizer(model_dir), [text], stride)["bits_per_note"]


def stored_check_figure(card: str) -> float | None:
    """The check figure a card stores (None when it has none)."""
    found = _CHECK_PATTERN.search(card)
    return float(found.group(1)) if found else None


def check_section(model_dir: Path) -> str:
    figure = check_figure(model_dir)
    return f"""{CHECK_HEADING}

`python -m mozart.modelcard --check` scores `examples/{CHECK_PIECE}` (the chorale bundled with the
package, encoded at the model's grid and scored whole, stride half the context)
at {figure:.4f} bits/note with these weights.
The test suite recomputes it from the committed weights: a card that does not match its weights fails.
"""


def write_check(dest: Path) -> float:
    """Write (or replace) the check-figure section of ``dest``'s card; return the figure."""
    card_path = Path(dest) / "README.md"
    card = card_path.read_text() if card_path.exists() else ""
    if CHECK_HEADING in card:
        start = card.index(CHECK_HEADING)
        rest = card[start + len(CHECK_HEADING):]
        end = rest.find("\n## ")
        card = card[:start] + (rest[end + 1:] if end >= 0 else "")
    section = check_section(Path(dest))
    write_atomic(card_path, card.rstrip() + "\n\n" + section)
    return float(stored_check_figure(section))


def collections(data_dir: Path) -> Counter:
    """Distinct pieces per top-level folder of the sources (e.g. the music21 collection)."""
    pieces: dict[str, str] = {}
    for split in ("train", "valid", "test"):
        with open(Path(data_dir) / f"{split}.jsonl", encoding="utf-8") as f:
            for line in f:
                source = json.loads(line)["source"]
                pieces[source] = source.split("/")[0] if "/" in source else "(top level)"
    return Counter(pieces.values())


#: The dataset files whose bytes make its digest (the splits' records and the vocabulary).
DIGEST_FILES = ("train.jsonl", "valid.jsonl", "test.jsonl", "vocab.json")
#: How the card records the training dataset's digest (card_text writes it, refresh_evaluation reads it back).
DIGEST_LINE = "Dataset digest (`python -m mozart.modelcard --digest DATA`): "


def dataset_digest(data_dir: Path) -> str:
    """SHA-256 of the dataset's DIGEST_FILES, in that order: a rebuild with the same corpus
    and settings gives the same digest, so the card says whether a model was trained on it."""
    digest = hashlib.sha256()
    for name in DIGEST_FILES:
        with open(Path(data_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def card_text(run_dir: Path, data_dir: Path) -> str:
    """The card's description, from the run's and the dataset's own files."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stats = json.loads((data_dir / "stats.json").read_text())
    model = AutoConfig.from_pretrained(str(run_dir))  # standard names (layers, width, context) for every family
    version = json.loads((data_dir / "vocab.json").read_text())["format_version"]
    c, data_config, s = metrics["config"], stats["config"], stats["splits"]
    context = metrics.get("context") or model.max_position_embeddings
    folders = ", ".join(f"`{name}` ({n})" for name, n in sorted(collections(data_dir).items()))
    near = stats.get("near_duplicates", {})
    grouping = (f" in {near['groups']} near-duplicate groups (largest {near['largest_group']}; each group in one "
                "split)") if near else ""
    cut = f"segments of at most {data_config['max_tokens']} tokens" if data_config.get("max_tokens") else \
        "whole pieces"
    transpose = data_config.get("transpose")
    copies = f", train copies transposed by {transpose[0]}..{transpose[1]} semitones" if transpose else ""
    v = metrics["valid"]
    hours = f", {metrics['seconds'] / 3600:.1f} h" if metrics.get("seconds") else ""
    styles = stats.get("styles") or {}
    style_line = ("; style labels (records: segments and their transposed copies): "
                  + ", ".join(f"`{k}` {n}" for k, n in sorted(styles.items()))
                  + ", each a control token after `<bos>` (`mozart generate --style S`)") if styles else ""
    programs = stats.get("train_records_per_program", {})
    program_line = ("\n- **Programs** of the training records (records per program; `mozart_programs` in "
                    "tokenizer_config.json; infilling and accompaniment read and write any other program through "
                    "a stand-in among these, docs/generation.md): "
                    + ", ".join(f"{k} ({n:,})" for k, n in sorted(programs.items(), key=lambda kv: -kv[1]))
                    ) if programs else ""
    fim = c.get("fim_rate", 0) if c["arch"] != "bart" else 0
    order = {"psm": "prefix first", "spm": "suffix first"}.get(c.get("fim_order", "psm"), c.get("fim_order"))
    fim_words = f", {fim:.0%} of the windows fill-in-the-middle, {order} (`mozart infill`)" if fim else ""
    packed = c["arch"] != "bart" and c.get("packing", True)
    packed_words = " cut from the train records laid end to end in a random order" if packed else ""
    precision = f", {metrics['precision']}" if metrics.get("precision") else ""
    previous = c.get("previous_tokens", 0)
    previous_words = (f", the {previous} tokens before each position embedded into its input "
                      "(previous-token tables, docs/training.md)") if previous else ""
    device = metrics.get("device", "an unrecorded device")
    packages = metrics.get("packages")
    versions = ("\n- **Software**: " + ", ".join(f"{k} {v}" for k, v in packages.items())) if packages else ""
    return f"""# Mozart's built-in model

A {metrics['parameters'] / 1e6:.1f}M-parameter {model.model_type} model ({model.num_hidden_layers} layers,
width {model.hidden_size}, context {context}) over the Mozart token format v{version} at grid
{data_config['grid']}. `mozart generate` uses it when `-m` is not given.

- **Data**: {stats['pieces']} distinct pieces{grouping} ({s['train']['pieces']} train, {s['valid']['pieces']}
  valid, {s['test']['pieces']} test) from {folders}; {cut}{copies}; {stats['tokens']:,} tokens in all{style_line}.
  {DIGEST_LINE}`{dataset_digest(data_dir)[:16]}`.{program_line}
- **Recipe**: {c['arch']} size `{c['size']}`, {metrics['steps']} optimizer steps of {c['batch_size']} x
  {c['grad_accum']} sequences of {context} tokens{packed_words}{previous_words}, lr {c['lr']},
  warmup {c['warmup_ratio']} then cosine, seed {c['seed']}{fim_words}; trained on {device}{precision}{hours}.{versions}
- **Likelihood while training** (exact sums, the valid split's first {c['max_eval_examples']} windows,
  {v['notes']:,} notes): {v['bits_per_note']:.2f} bits/note ({v['bits_per_token']:.3f} bits/token). The
  test figure is the evaluation's, below.
- **License**: the weights are released under the MIT license, like Mozart; the training works are in the
  public domain (see docs/datasets.md for the corpus' per-work terms).
"""


def store_half(source: Path, dest: Path) -> None:
    """Write the weights of ``source`` to ``dest`` as float16: half the bytes in the package
    (the 25 MB budget), read back as float32 by ``models.load_base``.  The check figure and the
    evaluation are computed from these stored weights, so the card describes what ships."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {name: t.to(torch.float16) if t.is_floating_point() else t for name, t in load_file(source).items()}
    tmp = dest.with_name(dest.name + ".tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    tmp.replace(dest)


def copy_model(run_dir: Path, dest: Path, weights_dir: Path | None = None, extra: tuple[str, ...] = ()) -> None:
    """Copy a run's model files (FILES, then ``extra`` names where present) into ``dest``, the
    weights as float16 (``store_half``), taken from ``weights_dir`` when given."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, *extra):
        if name == WEIGHTS:
            store_half((weights_dir or run_dir) / name, dest / name)
        elif (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)
    add_previous_tokens_code(dest)


def add_previous_tokens_code(folder: Path) -> None:
    """A model folder with previous-token tables gets this Mozart's ``previous_tokens.py`` and the config
    entries that make ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` load it
    without Mozart (whatever the run that trained it saved)."""
    from . import previous_tokens

    config = json.loads((folder / "config.json").read_text())
    if not config.get(PREVIOUS_TOKENS_KEY):
        return
    module = Path(previous_tokens.__file__)
    shutil.copyfile(module, folder / module.name)
    config["architectures"] = [PREVIOUS_TOKENS_ARCHITECTURE]
    config["auto_map"] = {"AutoModelForCausalLM": f"{module.stem}.{PREVIOUS_TOKENS_ARCHITECTURE}"}
    write_atomic(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def publish(run_dir: Path, data_dir: Path, dest: Path, report_dir: Path | None = None,
            finetune: tuple[Path, Path] | None = None) -> dict:
    """Copy the model files of ``run_dir`` into ``dest`` and write README.md (the card).
    ``finetune``: (adapter run folder, its dataset): the weights come from its merged model."""
    run_dir, data_dir, dest = Path(run_dir), Path(data_dir), Path(dest)
    copy_model(run_dir, dest, Path(finetune[0]) / "merged" if finetune else None)
    card = card_text(run_dir, data_dir)
    if finetune:
        card += finetune_section(Path(finetune[0]), Path(finetune[1]))
    if report_dir is not None:
        card += evaluation_summary(json.loads((Path(report_dir) / "report.json").read_text()))
        if (Path(report_dir) / OUT_OF_DOMAIN).is_file():
            card += out_of_domain_section(json.loads((Path(report_dir) / OUT_OF_DOMAIN).read_text()))
    write_atomic(dest / "README.md", card)
    return {"check_bits_per_note": write_check(dest)}


def finetune_section(adapter_dir: Path, data_dir: Path) -> str:
    """The card's second stage: a LoRA fine-tune merged into the weights, from its own files."""
    m = json.loads((adapter_dir / "metrics.json").read_text())
    stats = json.loads((data_dir / "stats.json").read_text())
    c, v = m["config"], m["valid"]
    transpose = stats["config"].get("transpose")
    keys = f"train copies transposed by {transpose[0]}..{transpose[1]}" if transpose else "no transposed copies"
    return f"""
## Second stage: fine-tune

LoRA (r {m['lora_r']}, alpha {m['lora_alpha']}, {m['trainable_parameters']:,} parameters on the attention) on
the published first stage, {m['steps']} steps of {c['batch_size']} x {c['grad_accum']} sequences of {c['context']}
tokens, lr {c['lr']}, on a dataset of the same pieces and splits with {keys} ({stats['tokens']:,} tokens;
digest `{dataset_digest(data_dir)[:16]}`), merged into the weights: the model learns the keys each style is
written in, which transposed copies had spread over seven. Valid split of that dataset while fine-tuning:
{v['bits_per_note']:.2f} bits/note.
"""


#: Written by ``bench/out_of_domain.py --json REPORT_DIR/out_of_domain.json``; the card quotes it.
OUT_OF_DOMAIN = "out_of_domain.json"


def out_of_domain_section(figures: dict) -> str:
    """The card's out-of-domain table: bits/note of this and other models on a folder none trained on.
    Models are named by their check figure (bits/note of the bundled chorale), which identifies weights."""
    rows = "\n".join(f"| `{m['model']}` (check figure {m['check_bits_per_note']:.4f}) | {m['bits_per_note']:.2f} | "
                      f"{m['unigram_bits_per_note']:.2f} |" for m in figures["models"])
    return f"""
## Out of domain

`python bench/out_of_domain.py` on `{figures['corpus']}/` ({figures['files']} MIDI files of other kinds of music:
pop multitracks, piano, game music; never trained on), each file scored whole, with a unigram fitted on those
same files for scale:

| model | bits/note | unigram on the same files |
|---|---|---|
{rows}
"""


def evaluation_summary(report: dict, dataset_note: str = "") -> str:
    """The card's evaluation section, from a ``mozart evaluate`` report; ``dataset_note``, a sentence on the
    dataset it scored when that is not the training one."""
    lik, validity = report["likelihood"], report["validity"]
    rows = "\n".join(f"| {name} | {r['bits_per_note']:.2f} | {r['bits_per_token']:.3f} | {r['perplexity']:.2f} |"
                     for name, r in lik.items())
    features = report["statistics"]["features"]
    stats = "\n".join(
        f"| {name} | {_pm(r.get('generated_mean'), r.get('generated_std'))} | "
        f"{_pm(r.get('reference_mean'), r.get('reference_std'))} | {r['overlapping_area']:.2f} | "
        f"{r['kl_divergence']:.2f} |" for name, r in features.items())
    c, m = report["config"], lik["model"]
    scoring = f"sliding window of {m['context']} tokens, stride {m['stride']}" if m.get("stride") else \
        "each window scored whole"
    return f"""
## Evaluation

{dataset_note}`mozart evaluate` with {c['samples']} samples on the whole test split of its dataset \
({m['tokens']:,} tokens, {m['notes']:,} notes; {scoring}), against baselines fitted on the train split:

| model | bits/note | bits/token | perplexity |
|---|---|---|---|
{rows}

Validity: {validity['constrained']['valid']}/{validity['constrained']['samples']} constrained samples and
{validity['unconstrained']['valid']}/{validity['unconstrained']['samples']} unconstrained samples pass `check`.
Musical statistics of {report['statistics']['generated_pieces']} constrained {c['bars']}-bar samples (temperature
{c['temperature']}, top-p {c.get('top_p', 1.0)}) vs {report['statistics']['reference_pieces']} test pieces
(OA: overlapping area, 1 is best; KL: 0 is best; docs/evaluation.md):

| feature | samples mean ± std | test mean ± std | OA | KL |
|---|---|---|---|---|
{stats}
""" + _styles_section(report)


#: The training dataset's digest in a card.
_DIGEST_PATTERN = re.compile(re.escape(DIGEST_LINE) + r"`([0-9a-f]+)`")


def refresh_evaluation(dest: Path, report_dir: Path) -> dict:
    """Rewrite the evaluation of the card in ``dest`` (and its out-of-domain table, when ``report_dir`` has
    one) from ``report_dir``'s report; the rest of the card stays as it is.  Returns the evaluated dataset's
    digest and whether it is the training one."""
    dest, report_dir = Path(dest), Path(report_dir)
    card = (dest / "README.md").read_text()
    report = json.loads((report_dir / "report.json").read_text())
    trained_on = _DIGEST_PATTERN.search(card)
    evaluated = dataset_digest(Path(report["data"]))[:16]
    same = trained_on is not None and trained_on.group(1) == evaluated
    note = "" if same else \
        f"The dataset was rebuilt for this evaluation (digest `{evaluated}`; the training one's: " \
        f"`{trained_on.group(1) if trained_on else 'not recorded'}`).\n\n"
    sections = re.split(r"(?m)^(?=## )", card)
    replaced = {"## Evaluation": evaluation_summary(report, note).lstrip("\n")}
    if (report_dir / OUT_OF_DOMAIN).is_file():
        replaced["## Out of domain"] = out_of_domain_section(
            json.loads((report_dir / OUT_OF_DOMAIN).read_text())).lstrip("\n")
    missing = [h for h in replaced if not any(part.startswith(h + "\n") for part in sections)]
    if missing:
        raise ValueError(f"{dest / 'README.md'} has no {', '.join(missing)} section to rewrite")
    card = "".join(next((new + "\n" for h, new in replaced.items() if part.startswith(h + "\n")), part)
                   for part in sections)
    write_atomic(dest / "README.md", card)
    return {"evaluated_dataset": evaluated, "training_dataset": same}


def _styles_section(report: dict) -> str:
    """Per style: samples asked for the style against the test pieces of that style (OA), then against
    train segments of the style when the report has them."""
    from .evaluate import style_table, style_train_table

    if not report.get("styles"):
        return ""
    text = ("\nPer style (`--style S`; samples of style S against the test pieces of style S; overlapping "
            "area per feature, 1 is best):\n\n" + "\n".join(style_table(report["styles"])) + "\n")
    against_train = style_train_table(report["styles"])
    if against_train:
        text += ("\nThe same samples against random train segments of their style in their own key (seen in "
                 "training: the style as the model learnt it), with other train segments' own figure in the "
                 "last rows:\n\n" + "\n".join(against_train) + "\n")
    return text


def _pm(mean, std) -> str:
    if isinstance(mean, list) or mean is None:
        return "histogram"
    return f"{mean:.2f} ± {std:.2f}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mozart.modelcard", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", type=Path, metavar="DEST_DIR", help="(re)write the check figure of a published model")
    mode.add_argument("--digest", type=Path, metavar="DATA_DIR", help="print a dataset's digest")
    mode.add_argument("--evaluation", type=Path, nargs=2, metavar=("DEST_DIR", "REPORT_DIR"),
                      help="rewrite a published card's evaluation from a new mozart evaluate report")
    parser.add_argument("dirs", type=Path, nargs="*", metavar="RUN_DIR DATA_DIR DEST_DIR [REPORT_DIR]")
    parser.add_argument("--finetune", type=Path, nargs=2, metavar=("ADAPTER_DIR", "ADAPTER_DATA"),
                        help="publish the merged fine-tune of ADAPTER_DIR (made on ADAPTER_DATA) as a second stage")
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps({"check_bits_per_note": write_check(args.check)}))
    elif args.digest:
        print(dataset_digest(args.digest))
    elif args.evaluation:
        print(json.dumps(refresh_evaluation(*args.evaluation)))
    elif len(args.dirs) in (3, 4):
        run_dir, data_dir, dest, *report = args.dirs
        print(json.dumps(publish(run_dir, data_dir, dest, report[0] if report else None, args.finetune), indent=1))
    else:
        parser.error("publishing takes RUN_DIR DATA_DIR DEST_DIR [REPORT_DIR]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
