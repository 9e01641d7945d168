"""Evaluation of a trained model against its dataset's test split: likelihood, validity, statistics.

``evaluate`` writes ``report.json``, ``report.md``, one PNG per musical feature (generated
vs real), the loss curve when the model folder has a ``metrics.csv``, and the samples it
drew (``samples.jsonl``).

- **Likelihood** on the test split, in nats/token, bits/token, bits/note and perplexity,
  for the model and for two baselines fitted on the train split (``ngram.Unigram`` and
  ``ngram.KneserNey``).  All three predict the same tokens (each piece's words, then
  ``<eos>``), so bits/note compares them whatever their context.  Decoders score pieces
  longer than their context with a sliding window (``lmdata.sliding_examples``; stride
  three quarters of the context by default, ``likelihood.default_stride``).  BART models
  score continuation: the bars after the first, each window seeing the four bars before it
  (the header is context, not scored).
- **Validity**: the share of samples that pass ``check`` and decode, sampled with and
  without the grammar constraint.
- **Statistics**: ``metrics.FEATURES`` of the constrained samples vs the test pieces,
  with Yang & Lerch's overlapping area and KL divergence; per style of the test split, samples
  asked for the style against its test pieces, and against train segments of the style (the
  style as the model learnt it, with real segments' own figure beside it).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from .errors import MozartError
from .events import Piece, bar_layout
from .files import write_atomic
from .likelihood import baseline_likelihoods, model_likelihood
from .lmdata import load_tokenizer, piece_ids, read_split, read_split_ids, read_split_sources, read_split_styles
from .metrics import FEATURES, compare_sets, describe, feature_table
from .tokenizer import music_token_count
from .tokens import TokenError, decode_piece

#: Fewer test works of a style than this and the per-style table says so: the built-in model's dataset has 2
#: classical and 2 romantic works in its test split (54 and 48 segments), which are not their styles' average
#: (classical: 10.3 notes a bar in 3/4 and 3/8, against 18.8 in the train pieces; docs/evaluation.md).
MIN_STYLE_WORKS = 5


@dataclass(frozen=True)
class EvaluateConfig:
    """What ``mozart evaluate`` measures (each field is an option or a documented default)."""

    samples: int = 32  # pieces sampled per mode (constrained, unconstrained)
    seed: int = 0  # seed of the first sample; sample i uses seed + i
    bars: int | None = None  # bars per sample; None: the median bar count of the test pieces (4..16)
    temperature: float = DEFAULT_TEMPERATURE  # sampling temperature
    top_p: float = DEFAULT_TOP_P  # nucleus sampling share (1.0: off)
    stride: int | None = None  # sliding-window stride in tokens; None: 3/4 of the context (likelihood.default_stride)
    ngram_order: int = 4  # order of the Kneser-Ney baseline
    max_test_pieces: int | None = None  # score only the first N test pieces (None: all)
    per_style: bool = True  # also compare, per style label of the test split, samples of that style with its pieces
    # ... and with this many random train segments of the style in their own key (0: not): the style as the model
    # learnt it, where the test split holds few works of it (MIN_STYLE_WORKS)
    train_reference: int = 300
    precision: str = "auto"  # scoring: auto (bf16 autocast on a CPU with native bf16) | bf16 | fp32

    def __post_init__(self):
        from .hardware import PRECISIONS

        if self.precision not in PRECISIONS:
            raise MozartError(f"unknown --precision {self.precision!r}: choose {', '.join(PRECISIONS)}")


def valid_pieces(texts: list[str]) -> tuple[list[Piece], int]:
    """The decoded pieces of the texts that pass ``check``, and how many failed."""
    pieces, failed = [], 0
    for text in texts:
        try:
            pieces.append(decode_piece(text))
        except TokenError:
            failed += 1
    return pieces, failed


def median_bars(pieces: list[Piece], low: int = 4, high: int = 16) -> int:
    """The median bar count of ``pieces``, clamped to ``low..high``."""
    counts = [bar_layout(p)[0].size for p in pieces] or [low]
    return int(min(high, max(low, np.median(counts))))


def scores_in_bf16(precision: str, model) -> bool:
    """Whether the test split is scored under bf16 autocast: asked for, or ``auto`` on a CPU that
    computes bf16 natively (a GPU keeps float32: scoring there is not the slow part)."""
    from .hardware import bf16_on_cpu

    return bf16_on_cpu(next(model.parameters()).device, precision)


def _check_vocabularies(model_dir: Path, data_dir: Path, tokenizer) -> None:
    """The model and the dataset must speak the same vocabulary (same format version and grid)."""
    from .models import check_same_grid

    grid = check_same_grid(model_dir, data_dir)
    music = music_token_count(grid)  # control specials may differ (a model made before they existed)

    def music_ids(vocab: dict[str, int]) -> dict[str, int]:
        return {w: i for w, i in vocab.items() if i < music}

    if music_ids(load_tokenizer(model_dir).get_vocab()) != music_ids(tokenizer.get_vocab()):
        raise MozartError(f"{data_dir}: the dataset's music words differ from those of the model ({model_dir}), "
                          f"though both speak grid {grid}: evaluate on a dataset of the model's vocabulary")


def evaluate(model_dir: Path | None, data_dir: Path, out_dir: Path, config: EvaluateConfig = EvaluateConfig(),
             progress: bool = True) -> dict:
    """Evaluate a model folder (None: the built-in model) on a dataset; write the report to ``out_dir``."""
    from .controls import Controls, SamplingSettings
    from .models import default_model_dir, load_model
    from .sampling import generate_pieces

    started = time.perf_counter()
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if model_dir is None:
        raise MozartError("no model given and the built-in model is not installed")
    data_dir = Path(data_dir)
    tokenizer = load_tokenizer(data_dir)
    test_texts = read_split(data_dir, "test")[: config.max_test_pieces]
    train_texts = read_split(data_dir, "train")
    if not test_texts or not train_texts:
        raise MozartError(f"{data_dir}: the train and test splits must not be empty")
    _check_vocabularies(model_dir, data_dir, tokenizer)
    loaded = load_model(model_dir)
    model = loaded.model
    if model.config.vocab_size < music_token_count(loaded.grid):
        raise MozartError(f"{model_dir}: the model has {model.config.vocab_size} outputs for "
                          f"{music_token_count(loaded.grid)} music tokens")
    reference, _ = valid_pieces(test_texts)
    bars = config.bars or median_bars(reference)
    bar = tqdm(total=4 + 2 * config.samples, desc="evaluate", unit="step", disable=not progress)

    bar.set_postfix_str("model likelihood")
    report: dict = {"model": str(model_dir), "data": str(data_dir), "config": {**asdict(config), "bars": bars}}
    likelihood = {"model": model_likelihood(model, tokenizer, test_texts, config.stride,
                                            bf16=scores_in_bf16(config.precision, model))}
    bar.update()
    bar.set_postfix_str("n-gram baselines")
    likelihood.update(baseline_likelihoods(piece_ids(train_texts, tokenizer), piece_ids(test_texts, tokenizer),
                                           tokenizer.get_vocab(), config.ngram_order))
    report["likelihood"] = likelihood
    bar.update()

    samples, report["validity"] = {}, {}
    for mode, constrained in (("constrained", True), ("unconstrained", False)):
        bar.set_postfix_str(f"{mode} samples")
        settings = SamplingSettings(temperature=config.temperature, top_p=config.top_p, constrained=constrained)
        # one batched call: sample i still uses seed + i, as it did one by one
        done = [0]

        def advance(share: float, done=done) -> None:
            pieces = int(share * config.samples)
            bar.update(pieces - done[0])
            done[0] = pieces

        texts = generate_pieces(loaded, Controls(bars=bars), settings, n=config.samples, seed=config.seed,
                                progress=advance)
        bar.update(config.samples - done[0])
        pieces, failed = valid_pieces(texts)
        samples[mode] = (texts, pieces)
        report["validity"][mode] = {"samples": len(texts), "valid": len(texts) - failed,
                                    "share": (len(texts) - failed) / max(1, len(texts))}

    bar.set_postfix_str("statistics")
    generated = samples["constrained"][1]
    report["statistics"] = {"generated_pieces": len(generated), "reference_pieces": len(reference),
                            "features": compare_sets(feature_table(generated), feature_table(reference))}
    bar.update()
    if config.per_style:
        bar.set_postfix_str("statistics per style")
        report["styles"] = style_statistics(loaded, data_dir, test_texts, config, train_texts)
    bar.set_postfix_str("report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = write_plots(feature_table(generated), feature_table(reference), model_dir, out_dir)
    report["seconds"] = round(time.perf_counter() - started, 1)
    lines = [json.dumps({"mode": mode, "seed": config.seed + i, "tokens": text})
             for mode, (texts, _) in samples.items() for i, text in enumerate(texts)]
    write_atomic(out_dir / "samples.jsonl", "\n".join(lines) + "\n")
    write_atomic(out_dir / "report.json", json.dumps(report, indent=1, default=_json_number) + "\n")
    write_atomic(out_dir / "report.md", report_markdown(report))
    bar.update()
    bar.close()
    return report


def style_statistics(loaded, data_dir: Path, test_texts: list[str], config: EvaluateConfig,
                     train_texts: list[str] | None = None) -> dict:
    """Per style S of the test split: ``config.samples`` constrained samples with ``--style S`` (of the
    median bar count of S's test pieces) against S's test pieces; with ``train_texts`` and
    ``config.train_reference``, the same samples against train segments of S too (``train_comparison``).
    Empty when the test split has no style labels, or the model has no style tokens or is BART (it could
    not be asked for one)."""
    from .controls import Controls, SamplingSettings, knows_style
    from .sampling import generate_pieces

    if loaded.model.config.is_encoder_decoder:
        return {}
    styles = read_split_styles(data_dir, "test")[: len(test_texts)]
    sources = read_split_sources(data_dir, "test")[: len(test_texts)]
    vocab = loaded.tokenizer.get_vocab()
    own_key = None
    if train_texts is not None and config.train_reference > 0:
        train_styles, train_ids = read_split_styles(data_dir, "train"), read_split_ids(data_dir, "train")
        own_key = {}  # style -> its train segments in their own key (no transposed copies)
        for text, style, record in zip(train_texts, train_styles, train_ids):
            if style and "@t" not in record:
                own_key.setdefault(style, []).append(text)
    out: dict = {}
    for style in sorted({s for s in styles if s}):
        if not knows_style(style, vocab, loaded.model.config.vocab_size):
            continue
        reference, _ = valid_pieces([t for t, s in zip(test_texts, styles) if s == style])
        if not reference:
            continue
        bars = config.bars or median_bars(reference)
        settings = SamplingSettings(temperature=config.temperature, top_p=config.top_p)
        texts = generate_pieces(loaded, Controls(bars=bars, style=style), settings, n=config.samples,
                                seed=config.seed)
        generated, _ = valid_pieces(texts)
        works = {source for source, s in zip(sources, styles) if s == style and source is not None}
        out[style] = {"bars": bars, "generated_pieces": len(generated), "reference_pieces": len(reference),
                      "reference_works": len(works),
                      "features": compare_sets(feature_table(generated), feature_table(reference))}
        if own_key is not None:
            out[style]["train"] = train_comparison(generated, own_key.get(style, []), config)
    return out


def train_comparison(generated: list[Piece], segments: list[str], config: EvaluateConfig) -> dict:
    """The samples of a style against ``config.train_reference`` random train segments of it
    (``features``), and, as real music's own figure, as many other random train segments as there are
    samples against the same ones (``real_features``).  Train segments were seen in training: this
    measures how close the samples come to the style the model learnt, not how it generalises.  Empty
    when the style has too few segments (fewer than twice the samples)."""
    if not generated or len(segments) < 2 * config.samples:
        return {}
    picked = random.Random(config.seed).sample(segments, min(len(segments), config.train_reference + config.samples))
    reference, _ = valid_pieces(picked[config.samples:])
    real, _ = valid_pieces(picked[: config.samples])
    table = feature_table(reference)
    return {"reference_pieces": len(reference), "real_pieces": len(real),
            "features": compare_sets(feature_table(generated), table),
            "real_features": compare_sets(feature_table(real), table)}


def _json_number(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def report_markdown(report: dict) -> str:
    """The report as Markdown: likelihood table, validity table, feature table, plot links."""
    lines = ["# Evaluation report", "", f"Model `{report['model']}` on the test split of `{report['data']}`.", "",
             "## Likelihood (test split)", "",
             "| model | bits/note | bits/token | nats/token | perplexity | tokens | notes |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["likelihood"].items():
        lines.append(f"| {name} | {r['bits_per_note']:.2f} | {r['bits_per_token']:.3f} | {r['nats_per_token']:.3f} | "
                     f"{r['perplexity']:.2f} | {r['tokens']:,} | {r['notes']:,} |")
    m = report["likelihood"]["model"]
    if m.get("stride"):
        lines += ["", f"The model scores pieces longer than its context ({m['context']}) with a sliding window, "
                      f"stride {m['stride']} tokens; each token is scored once."]
    if m.get("precision") == "bf16":
        lines += ["", "The model's forward ran under bf16 autocast (log-probabilities summed in float32; "
                      "`--precision fp32` for float32 throughout)."]
    lines += ["", "## Validity", "", "| sampling | samples | valid | share |", "|---|---|---|---|"]
    for mode, v in report["validity"].items():
        lines.append(f"| {mode} | {v['samples']} | {v['valid']} | {v['share']:.1%} |")
    s = report["statistics"]
    lines += ["", "## Musical statistics", "",
              f"{s['generated_pieces']} constrained samples of {report['config']['bars']} bars (temperature "
              f"{report['config']['temperature']}, top-p {report['config'].get('top_p', 1.0)}) vs "
              f"{s['reference_pieces']} test pieces. OA and KL compare the test pieces' intra-set distances "
              "with the generated-to-test distances (Yang & Lerch 2018): OA near 1 and KL near 0 mean the "
              "samples sit among real pieces as real pieces sit among themselves.", "",
              "| feature | generated mean ± std | test mean ± std | OA | KL |", "|---|---|---|---|---|"]
    for f in FEATURES:
        r = s["features"][f.name]
        if f.histogram:
            gen, ref = "histogram", "histogram"
        else:
            gen = f"{_fmt(r['generated_mean'])} ± {_fmt(r['generated_std'])}"
            ref = f"{_fmt(r['reference_mean'])} ± {_fmt(r['reference_std'])}"
        lines.append(f"| {f.name} | {gen} | {ref} | {_fmt(r['overlapping_area'])} | {_fmt(r['kl_divergence'])} |")
    if report.get("styles"):
        lines += ["", "## Musical statistics per style", ""] + style_table(report["styles"])
        against_train = style_train_table(report["styles"])
        if against_train:
            lines += ["", "## Musical statistics per style, against train segments", "",
                      "The same samples against random train segments of their style in their own key: the style "
                      "as the model learnt it (those segments were seen in training, so this is not a test of "
                      "generalisation), from many more works than some styles have in the test split. The last "
                      "rows give other train segments of the style against the same ones: real music's own "
                      "figure.", ""] + against_train
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in report["plots"]]
    lines += ["", f"Took {report['seconds']} s."]
    return "\n".join(lines) + "\n"


def style_table(styles: dict) -> list[str]:
    """Markdown lines: the overlapping area of every feature (rows) per style (columns), samples of
    the style against the test pieces of the style, and the smallest OA of each style; then a caveat
    naming the styles whose test pieces come from fewer than MIN_STYLE_WORKS works."""
    names = sorted(styles)
    lines = ["| feature | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in FEATURES:
        lines.append(f"| {f.name} | " + " | ".join(_fmt(styles[n]["features"][f.name]["overlapping_area"], 2)
                                                     for n in names) + " |")
    lowest = [min(r["overlapping_area"] for r in styles[n]["features"].values()) for n in names]
    lines.append("| **lowest OA** | " + " | ".join(f"**{_fmt(x, 2)}**" for x in lowest) + " |")
    if all("reference_works" in styles[n] for n in names):
        lines.append("| samples / test pieces (works), bars | " + " | ".join(
            f"{styles[n]['generated_pieces']} / {styles[n]['reference_pieces']} ({styles[n]['reference_works']}), "
            f"{styles[n]['bars']}" for n in names) + " |")
        few = [n for n in names if styles[n]["reference_works"] < MIN_STYLE_WORKS]
        if few:
            lines += ["", "Few works: the test pieces of these styles come from few source files ("
                      + ", ".join(f"{n} {styles[n]['reference_works']}" for n in few)
                      + "), so their columns measure how close the samples come to those works more than to the style."]
    else:  # a report written before works were counted
        lines.append("| samples / test pieces, bars | " + " | ".join(
            f"{styles[n]['generated_pieces']} / {styles[n]['reference_pieces']}, {styles[n]['bars']}"
            for n in names) + " |")
    return lines


def style_train_table(styles: dict) -> list[str]:
    """Markdown lines: per style (columns), the OA of every feature (rows) of the samples against train
    segments of the style, the smallest and the mean, then real train segments' own smallest and mean
    against the same segments.  Empty when no style has a train comparison."""
    names = [n for n in sorted(styles) if styles[n].get("train")]
    if not names:
        return []
    train = {n: styles[n]["train"] for n in names}

    def oa(n: str, key: str) -> list[float]:
        return [r["overlapping_area"] for r in train[n][key].values()]

    lines = ["| feature | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in FEATURES:
        lines.append(f"| {f.name} | " + " | ".join(_fmt(train[n]["features"][f.name]["overlapping_area"], 2)
                                                     for n in names) + " |")
    lines.append("| **lowest OA** | " + " | ".join(f"**{_fmt(min(oa(n, 'features')), 2)}**" for n in names) + " |")
    lines.append("| mean OA | " + " | ".join(_fmt(float(np.mean(oa(n, "features"))), 2) for n in names) + " |")
    lines.append("| real train segments: lowest / mean OA | " + " | ".join(
        f"{_fmt(min(oa(n, 'real_features')), 2)} / {_fmt(float(np.mean(oa(n, 'real_features'))), 2)}" for n in names)
        + " |")
    lines.append("| samples / real segments / reference segments | " + " | ".join(
        f"{styles[n]['generated_pieces']} / {train[n]['real_pieces']} / {train[n]['reference_pieces']}" for n in names)
        + " |")
    return lines


def write_plots(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray], model_dir: Path,
                out_dir: Path) -> list[str]:
    """One PNG per feature (generated vs test) and ``loss.png`` from the run's metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for f in FEATURES:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        gen, ref = generated[f.name], reference[f.name]
        if f.histogram:
            x = np.arange(len(f.labels))
            for offset, values, label in ((-0.2, gen, "generated"), (0.2, ref, "test")):
                if len(values):
                    ax.bar(x + offset, np.nanmean(values, axis=0), width=0.4, label=label)
            ax.set_xticks(x, f.labels, rotation=45 if len(f.labels) > 8 else 0)
            ax.set_ylabel("mean share")
        else:
            both = np.concatenate([gen, ref])
            both = both[np.isfinite(both)]
            edges = np.histogram_bin_edges(both if both.size else [0, 1], bins=20)
            for values, label in ((gen, "generated"), (ref, "test")):
                values = values[np.isfinite(values)]
                if values.size:
                    ax.hist(values, bins=edges, density=True, alpha=0.5, label=label)
            ax.set_ylabel("density")
        ax.set_title(f.name.replace("_", " "))
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"{f.name}.png"))
        plt.close(fig)
    if (model_dir / "metrics.csv").is_file():
        from .train import loss_figure

        fig = loss_figure(model_dir / "metrics.csv")
        if fig is not None:
            written.append(_save(fig, out_dir / "loss.png"))
            plt.close(fig)
    return written


def _save(fig, path: Path) -> str:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return path.name


def corpus_statistics(pieces: list[Piece]) -> dict[str, dict]:
    """Per feature, mean and standard deviation over ``pieces`` (per bin for histograms)."""
    table = feature_table(pieces)
    out = {}
    for f in FEATURES:
        values = table[f.name]
        extra = {"labels": list(f.labels)} if f.histogram else {"pieces": int(np.isfinite(values).sum())}
        out[f.name] = {**describe(values, f.histogram), **extra}
    return out
