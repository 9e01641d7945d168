"""Evaluation: sliding-window likelihood, baselines on the same tokens, a full `mozart evaluate` run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from mozart.dataset import MIDI_SUFFIXES, DatasetConfig, build_dataset
from mozart.likelihood import baseline_likelihoods, model_likelihood
from mozart.lmdata import (
    IGNORE,
    Example,
    Examples,
    causal_examples,
    load_tokenizer,
    piece_ids,
    read_split,
    sliding_examples,
)
from mozart.metrics import FEATURES
from mozart.modelcard import evaluation_summary
from mozart.models import default_model_dir, load_model
from mozart.train import load_config, train

from conftest import corpus_files, edge_files, link_all


def _dataset(root: Path, grid: int, files: list[Path], max_tokens: int | None = 256, styled: bool = False) -> Path:
    midi = link_all(files, root / f"midi_{grid}")
    if styled:  # alternate two style labels, as corpus.tsv gives them (docs/datasets.md)
        rows = "".join(f"{f.name}\t{('folk', 'chorale')[i % 2]}\n" for i, f in enumerate(files))
        (midi / "corpus.tsv").write_text("midi_file\tstyle\n" + rows)
    data = root / f"data_{grid}"
    build_dataset(midi, data, DatasetConfig(max_tokens=max_tokens, workers=1, valid=0.2, test=0.2, grid=grid),
                  progress=False)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A dataset of 30 corpus files labelled with two styles and a tiny GPT-2 trained on it for 30 steps."""
    root = tmp_path_factory.mktemp("eval")
    data = _dataset(root, 24, corpus_files()[:30], styled=True)
    run = root / "run"
    train(data, run, load_config(None, max_steps=30, eval_every=15, context=256, batch_size=4, lr=2e-3,
                                 validity_samples=0))
    return data, run


def test_sliding_window_predicts_every_token_once(trained):
    data, run = trained
    tokenizer = load_tokenizer(data)
    texts = read_split(data, "train")[:20]
    total = sum(len(ids) - 1 for ids in piece_ids(texts, tokenizer))  # every token after <bos>
    for context, stride in ((64, 16), (64, 63), (32, 1), (300, 150)):
        examples = sliding_examples(texts, tokenizer, context, stride)
        predicted = sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in examples.examples)
        assert predicted == total
        assert all(len(e.input_ids) <= context for e in examples.examples)
    # pieces that fit: the same examples as training's windows
    whole = causal_examples(texts, tokenizer, 300)
    assert examples.notes == whole.notes
    assert [e.input_ids for e in examples.examples] == [e.input_ids for e in whole.examples]


def test_sliding_window_scores_each_token_with_its_documented_context(trained):
    """Token i is scored once, in the first window (starts 0, stride, 2 stride, ...) that reaches
    it, so it sees the tokens from that window's start: at least context - stride of them."""
    data, run = trained
    model = AutoModelForCausalLM.from_pretrained(str(run)).eval()
    tokenizer = load_tokenizer(data)
    texts = [" ".join(t.split()[:90]) for t in read_split(data, "test")[:2]]
    context, stride = 40, 16
    from mozart.likelihood import likelihood

    slid = likelihood(model, sliding_examples(texts, tokenizer, context, stride), 0)
    expected = 0.0
    with torch.no_grad():
        for ids in piece_ids(texts, tokenizer):
            for i in range(1, len(ids)):
                start = max(0, -(-(i - context + 1) // stride) * stride)
                assert i - start >= min(i, context - stride)
                logits = model(input_ids=torch.tensor([ids[start:i]])).logits[0, -1]
                expected -= float(torch.log_softmax(logits, -1)[ids[i]])
    assert slid["nats_per_token"] * slid["tokens"] == pytest.approx(expected, rel=1e-5)


def test_token_losses_are_the_likelihood_split_by_token(trained):
    """token_losses (the benchmarks' per-token view) gives each token's loss given the tokens
    before it: the same as a prefix-by-prefix computation, and summing to likelihood's total."""
    from mozart.likelihood import likelihood, token_losses

    data, run = trained
    model = AutoModelForCausalLM.from_pretrained(str(run)).eval()
    tokenizer = load_tokenizer(data)
    ids = piece_ids(read_split(data, "test")[:1], tokenizer)[0][:60]
    losses = token_losses(model, ids)
    assert losses.shape == (len(ids) - 1,)
    with torch.no_grad():
        for i in (1, 17, len(ids) - 1):
            logits = model(input_ids=torch.tensor([ids[:i]])).logits[0, -1]
            assert losses[i - 1] == pytest.approx(-float(torch.log_softmax(logits, -1)[ids[i]]), rel=1e-4, abs=1e-5)
    whole = likelihood(model, Examples([Example(list(ids), list(ids), 0)]), 0)
    assert whole["nats_per_token"] * whole["tokens"] == pytest.approx(float(losses.sum()), rel=1e-5)
    # batched (longest first, padded) over examples of many lengths: the same total, each token once
    cuts = [list(ids[:n]) for n in (60, 7, 33, 12, 59, 2, 41)]
    batched = likelihood(model, Examples([Example(c, c, 0) for c in cuts]), 0, batch_size=3)
    assert batched["tokens"] == sum(len(c) - 1 for c in cuts)
    expected = sum(float(token_losses(model, c).sum()) for c in cuts)
    assert batched["nats_per_token"] * batched["tokens"] == pytest.approx(expected, rel=1e-5)


def test_bf16_scoring_counts_the_same_tokens_and_stays_close_to_float32(trained):
    """Scoring under bf16 autocast (the default on a CPU with native bf16) sums the same tokens and
    notes, in float32, and moves bits/note by well under 1%."""
    from mozart.errors import MozartError
    from mozart.evaluate import EvaluateConfig, scores_in_bf16

    data, run = trained
    loaded, tokenizer = load_model(run), load_tokenizer(data)
    texts = read_split(data, "test")
    exact = model_likelihood(loaded.model, tokenizer, texts, None)
    fast = model_likelihood(loaded.model, tokenizer, texts, None, bf16=True)
    assert (fast["tokens"], fast["notes"]) == (exact["tokens"], exact["notes"])
    assert (exact["precision"], fast["precision"]) == ("fp32", "bf16")
    assert fast["bits_per_note"] == pytest.approx(exact["bits_per_note"], rel=0.01)
    assert scores_in_bf16("fp32", loaded.model) is False and scores_in_bf16("bf16", loaded.model) is True
    with pytest.raises(MozartError, match="unknown --precision"):
        EvaluateConfig(precision="fp16")


def test_baselines_and_model_score_the_same_tokens_and_notes(trained):
    data, run = trained
    tokenizer = load_tokenizer(data)
    test, train_texts = read_split(data, "test"), read_split(data, "train")
    base = baseline_likelihoods(piece_ids(train_texts, tokenizer), piece_ids(test, tokenizer), tokenizer.get_vocab(), 4)
    model = model_likelihood(AutoModelForCausalLM.from_pretrained(str(run)), tokenizer, test, stride=None)
    notes = sum(t.split().count(w) for t in test for w in set(t.split()) if w.startswith("Pitch_"))
    for r in (model, *base.values()):
        assert r["notes"] == notes
        assert r["tokens"] == model["tokens"]
        assert r["bits_per_note"] * r["notes"] == pytest.approx(r["bits_per_token"] * r["tokens"])
    assert base["kneser_ney_4gram"]["bits_per_note"] < base["unigram"]["bits_per_note"]


def test_bits_per_note_counts_notes_not_tokens_across_tokenizations(tmp_path):
    """The same pieces, whole, at grid 4 and at grid 24: different vocabularies and token counts
    (onsets merge on the coarse grid), the same notes, so bits/note of models over either
    tokenization share a denominator."""
    files = corpus_files()[:12]
    results = {}
    for grid in (4, 24):
        data = _dataset(tmp_path, grid, files, max_tokens=None)
        tokenizer = load_tokenizer(data)
        ids = piece_ids(read_split(data, "test") + read_split(data, "valid") + read_split(data, "train"), tokenizer)
        results[grid] = baseline_likelihoods(ids, ids, tokenizer.get_vocab(), 4)["unigram"]
    assert results[4]["notes"] == results[24]["notes"] > 0
    assert results[4]["tokens"] < results[24]["tokens"]
    for r in results.values():
        assert r["bits_per_note"] == pytest.approx(r["bits_per_token"] * r["tokens"] / r["notes"])


def test_evaluate_command_writes_a_full_report(trained, tmp_path):
    data, run = trained
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "mozart", "evaluate", "-m", str(run), str(data), "-o", str(out),
                           "--samples", "4", "--bars", "4", "-q"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    lik = report["likelihood"]
    assert set(lik) == {"model", "unigram", "kneser_ney_4gram"}
    for r in lik.values():
        assert np.isfinite(r["bits_per_note"]) and r["bits_per_note"] > 0
        assert r["perplexity"] == pytest.approx(np.exp(r["nats_per_token"]))
    assert lik["model"]["stride"] == 192 and lik["model"]["context"] == 256  # 3/4 of the context by default
    assert report["validity"]["constrained"] == {"samples": 4, "valid": 4, "share": 1.0}
    assert report["validity"]["unconstrained"]["samples"] == 4
    features = report["statistics"]["features"]
    assert set(features) == {f.name for f in FEATURES}
    for name, row in features.items():
        assert 0 <= row["overlapping_area"] <= 1.01, name
    assert report["statistics"]["generated_pieces"] == 4
    for name in report["plots"]:
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
    assert "loss.png" in report["plots"] and "pitch_range.png" in report["plots"]
    md = (out / "report.md").read_text()
    assert "| kneser_ney_4gram |" in md and "| constrained | 4 | 4 | 100.0% |" in md
    assert len((out / "samples.jsonl").read_text().splitlines()) == 8
    assert "bits/note" in done.stdout
    card = evaluation_summary(report)  # what the built-in model's card carries
    assert f"| kneser_ney_4gram | {lik['kneser_ney_4gram']['bits_per_note']:.2f} |" in card
    assert "4/4 constrained samples" in card


def test_built_in_model_beats_the_ngram_baseline():
    """The card of the committed model records its evaluation; the model must beat the 4-gram."""
    folder = default_model_dir()
    if folder is None:
        pytest.skip("no built-in model")
    card = (Path(str(folder)) / "README.md").read_text()
    rows = dict(re.findall(r"^\| (model|kneser_ney_4gram|unigram) \| ([0-9.]+) \|", card, re.M))
    assert set(rows) == {"model", "kneser_ney_4gram", "unigram"}, "the card has no evaluation table"
    assert float(rows["model"]) < float(rows["kneser_ney_4gram"]) < float(rows["unigram"])


def test_committed_card_matches_its_weights():
    """The card's check figure is recomputed from the committed weights: card and weights belong together."""
    from mozart.modelcard import check_figure, stored_check_figure

    folder = default_model_dir()
    if folder is None:
        pytest.skip("no built-in model")
    stored = stored_check_figure((Path(str(folder)) / "README.md").read_text())
    assert stored is not None, "the card stores no check figure (python -m mozart.modelcard --check)"
    assert check_figure(Path(str(folder))) == pytest.approx(stored, abs=1e-3)


def test_card_comes_from_the_runs_own_files(trained, tmp_path):
    """publish() writes every figure from metrics.json, config.json and stats.json: change one, the card follows."""
    from mozart.evaluate import EvaluateConfig, evaluate
    from mozart.modelcard import card_text, dataset_digest, publish, stored_check_figure

    data, run = trained
    report = evaluate(run, data, tmp_path / "report", EvaluateConfig(samples=2, bars=2, max_test_pieces=4),
                      progress=False)
    dest = tmp_path / "published"
    result = publish(run, data, dest, tmp_path / "report")
    card = (dest / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    stats = json.loads((data / "stats.json").read_text())
    assert f"{metrics['steps']} optimizer steps" in card and metrics["device"] in card
    assert f"{stats['pieces']} distinct pieces" in card and f"{stats['tokens']:,} tokens" in card
    assert f"{metrics['valid']['bits_per_note']:.2f} bits/note" in card
    m = report["likelihood"]["model"]
    assert f"{m['notes']:,} notes; sliding window of {m['context']} tokens, stride {m['stride']}" in card
    assert stored_check_figure(card) == pytest.approx(result["check_bits_per_note"], abs=1e-4)
    assert "GPT-2" not in card and "2 CPU cores" not in card  # nothing the run did not record
    assert f"transformers {metrics['packages']['transformers']}" in card and "torch " in card
    assert dataset_digest(data)[:16] in card
    programs = stats["train_records_per_program"]  # the card names them; the folder carries them (stand-ins)
    assert programs and all(f"{p} ({n:,})" in card for p, n in programs.items())
    from mozart.models import known_programs

    assert known_programs(dest) == {int(p) for p in programs}
    # the package holds float16 weights (half the bytes), loaded back as float32
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(dest / "model.safetensors").values()} == {torch.float16}
    assert (dest / "model.safetensors").stat().st_size < 0.6 * (run / "model.safetensors").stat().st_size
    assert next(load_model(dest).model.parameters()).dtype == torch.float32
    metrics["steps"], metrics["device"] = 12345, "a test device"
    copy = tmp_path / "run_copy"
    copy.mkdir()
    (copy / "config.json").write_bytes((run / "config.json").read_bytes())
    (copy / "metrics.json").write_text(json.dumps(metrics))
    changed = card_text(copy, data)
    assert "12345 optimizer steps" in changed and "a test device" in changed
    assert "previous-token" not in changed
    metrics["config"]["previous_tokens"] = 4
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert "the 4 tokens before each position embedded into its input" in card_text(copy, data)


def test_card_evaluation_is_rewritten_from_a_new_report(trained, tmp_path):
    """modelcard --evaluation: the card's evaluation follows a new report and says which dataset it scored;
    the description and the check figure stay as they were."""
    import shutil

    from mozart.evaluate import EvaluateConfig, evaluate
    from mozart.modelcard import dataset_digest, main, publish

    data, run = trained
    config = EvaluateConfig(samples=2, bars=2, max_test_pieces=4, per_style=False)
    evaluate(run, data, tmp_path / "first", config, progress=False)
    dest = tmp_path / "published"
    publish(run, data, dest, tmp_path / "first")
    before = (dest / "README.md").read_text()
    # the same model on a copy of the dataset whose test split lost its last piece: another digest
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(data, rebuilt)
    lines = (rebuilt / "test.jsonl").read_text().splitlines(keepends=True)
    (rebuilt / "test.jsonl").write_text("".join(lines[:-1]))
    report = evaluate(run, rebuilt, tmp_path / "second", config, progress=False)
    assert main(["--evaluation", str(dest), str(tmp_path / "second")]) == 0
    after = (dest / "README.md").read_text()
    head = before.split("## Evaluation")[0]
    assert after.startswith(head) and after.split("## Check figure")[1] == before.split("## Check figure")[1]
    m = report["likelihood"]["model"]
    assert f"({m['tokens']:,} tokens, {m['notes']:,} notes;" in after
    assert f"| model | {m['bits_per_note']:.2f} |" in after
    assert f"The dataset was rebuilt for this evaluation (digest `{dataset_digest(rebuilt)[:16]}`; the training " \
           f"one's: `{dataset_digest(data)[:16]}`)." in after
    assert after.count("## Evaluation") == 1 and after.count("| feature |") == 1
    main(["--evaluation", str(dest), str(tmp_path / "first")])  # back on the training dataset
    assert (dest / "README.md").read_text() == before


def test_card_of_a_fine_tuned_model_has_its_second_stage_and_its_merged_weights(trained, tmp_path):
    """publish(finetune=...): the weights are the merged fine-tune's (float16), the card describes both
    stages from their own files, and the check figure is the merged weights'."""
    from safetensors.torch import load_file

    from mozart.modelcard import publish, stored_check_figure
    from mozart.train import finetune

    data, run = trained
    adapter = tmp_path / "adapter"
    finetune(run, data, adapter, load_config(None, max_steps=3, eval_every=3, context=256, batch_size=2,
                                             validity_samples=0, max_eval_examples=8), lora_r=4, lora_alpha=8,
             merge=True)
    dest = tmp_path / "published"
    result = publish(run, data, dest, finetune=(adapter, data))
    card = (dest / "README.md").read_text()
    assert "## Second stage: fine-tune" in card and "LoRA (r 4, alpha 8" in card and "3 steps" in card
    assert stored_check_figure(card) == pytest.approx(result["check_bits_per_note"], abs=1e-4)
    merged = load_file(adapter / "merged" / "model.safetensors")
    shipped = load_file(dest / "model.safetensors")
    name = next(k for k in shipped if ("q_proj" in k or "c_attn" in k) and k.endswith("weight"))  # LoRA-adapted
    assert torch.equal(shipped[name], merged[name].to(torch.float16))


def test_statistics_per_style_compare_each_style_with_its_own_pieces(trained, tmp_path):
    """Samples asked for style S (its control token after <bos>) against the test pieces labelled S."""
    from mozart.evaluate import EvaluateConfig, evaluate
    from mozart.lmdata import read_split_ids, read_split_sources, read_split_styles

    data, run = trained
    report = evaluate(run, data, tmp_path / "report", EvaluateConfig(samples=3, bars=2), progress=False)
    labelled = {s for s in read_split_styles(data, "test") if s}
    assert labelled and set(report["styles"]) == labelled
    for style, r in report["styles"].items():
        assert r["generated_pieces"] == 3 and r["bars"] == 2
        assert r["reference_pieces"] == read_split_styles(data, "test").count(style)
        assert r["reference_works"] == len({src for src, s in zip(read_split_sources(data, "test"),
                                                                   read_split_styles(data, "test")) if s == style})
        assert all(0.0 <= f["overlapping_area"] <= 1.0 for f in r["features"].values())
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Musical statistics per style" in text and "| **lowest OA** |" in text
    assert "| samples / test pieces (works), bars |" in text
    # against train segments: the style's own-key train segments, the samples and as many real ones
    ids, train_styles = read_split_ids(data, "train"), read_split_styles(data, "train")
    for style, r in report["styles"].items():
        own_key = sum(s == style and "@t" not in i for i, s in zip(ids, train_styles))
        train = r["train"]
        if own_key < 2 * 3:
            assert train == {}
            continue
        assert train["real_pieces"] == 3 and train["reference_pieces"] == min(own_key - 3, 300)
        assert set(train["features"]) == set(train["real_features"]) == set(r["features"])
        assert all(0.0 <= f["overlapping_area"] <= 1.0 for f in train["features"].values())
    compared = any(r["train"] for r in report["styles"].values())  # the small stand-in corpus has too few
    assert ("## Musical statistics per style, against train segments" in text) == compared
    assert ("| real train segments: lowest / mean OA |" in text) == compared
    unstyled = evaluate(run, data, tmp_path / "plain", EvaluateConfig(samples=2, bars=2, per_style=False),
                        progress=False)
    assert "styles" not in unstyled
    untrained = evaluate(run, data, tmp_path / "untrained", EvaluateConfig(samples=2, bars=2, train_reference=0),
                         progress=False)
    assert untrained["styles"] and all("train" not in r for r in untrained["styles"].values())
    assert "against train segments" not in (tmp_path / "untrained" / "report.md").read_text()


def test_train_comparison_puts_real_segments_against_the_same_reference(trained):
    """Known answer: samples that are the very segments drawn as real ones score exactly real music's
    figure (both against the same reference segments, disjoint from them); too few segments: no comparison."""
    import random

    from mozart.evaluate import EvaluateConfig, train_comparison, valid_pieces
    from mozart.lmdata import read_split

    data, _ = trained
    segments = read_split(data, "train")[:12]
    config = EvaluateConfig(samples=2, train_reference=5, seed=3)
    picked = random.Random(3).sample(segments, 7)
    as_real, _ = valid_pieces(picked[:2])
    r = train_comparison(as_real, segments, config)
    def areas(features: dict) -> np.ndarray:  # nan where a feature is undefined on both sides
        return np.array([features[name]["overlapping_area"] for name in sorted(features)])

    assert r["real_pieces"] == 2 and r["reference_pieces"] == 5
    assert np.array_equal(areas(r["features"]), areas(r["real_features"]), equal_nan=True)
    other, _ = valid_pieces([t for t in segments if t not in picked][:2])
    assert not np.array_equal(areas(train_comparison(other, segments, config)["features"]),
                              areas(r["real_features"]), equal_nan=True)
    assert train_comparison(as_real, segments[:3], config) == {}


def test_style_table_names_the_styles_with_few_test_works():
    """Known answer: a style whose test pieces come from fewer than MIN_STYLE_WORKS source files is named
    under the table, with its count; one with enough is not; a report from before works were counted
    still renders (no works column, no caveat)."""
    from mozart.evaluate import MIN_STYLE_WORKS, style_table
    from mozart.metrics import FEATURES

    features = {f.name: {"overlapping_area": 0.9} for f in FEATURES}
    styles = {"folk": {"bars": 16, "generated_pieces": 32, "reference_pieces": 490, "reference_works": 183,
                       "features": features},
              "romantic": {"bars": 10, "generated_pieces": 32, "reference_pieces": 48, "reference_works": 2,
                           "features": features}}
    text = "\n".join(style_table(styles))
    assert "| samples / test pieces (works), bars | 32 / 490 (183), 16 | 32 / 48 (2), 10 |" in text
    assert "come from few source files (romantic 2)" in text
    styles["romantic"]["reference_works"] = MIN_STYLE_WORKS
    assert "Few works" not in "\n".join(style_table(styles))
    old = {n: {k: v for k, v in r.items() if k != "reference_works"} for n, r in styles.items()}
    text = "\n".join(style_table(old))
    assert "| samples / test pieces, bars | 32 / 490, 16 | 32 / 48, 10 |" in text and "Few works" not in text


def test_evaluate_runs_for_an_encoder_decoder(trained, tmp_path):
    """BART scores continuation (no sliding window) and samples through its encoder."""
    from transformers import AutoTokenizer

    from mozart.evaluate import EvaluateConfig, evaluate
    from mozart.models import build_model
    from mozart.train import special_ids

    data, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(str(data))
    folder = tmp_path / "bart"
    build_model("bart", "tiny", special_ids(tokenizer), 256).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    report = evaluate(folder, data, tmp_path / "report", EvaluateConfig(samples=2, bars=2, max_test_pieces=5),
                      progress=False)
    model = report["likelihood"]["model"]
    assert model["stride"] is None and model["notes"] > 0 and np.isfinite(model["bits_per_note"])
    assert report["validity"]["constrained"]["share"] == 1.0
    assert (tmp_path / "report" / "report.md").is_file() and "loss.png" not in report["plots"]


def test_evaluate_rejects_a_dataset_of_another_grid(trained, tmp_path):
    data, run = trained
    other = _dataset(tmp_path, 12, corpus_files()[:6])
    done = subprocess.run([sys.executable, "-m", "mozart", "evaluate", "-m", str(run), str(other), "-o",
                           str(tmp_path / "r"), "-q"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("mozart: error:") and "grid 12" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


def test_stats_command_on_a_corpus(tmp_path):
    edge = [f for f in edge_files() if f.suffix.lower() in MIDI_SUFFIXES]
    real = corpus_files()[:8]
    folder = link_all(real + edge, tmp_path / "midi")
    done = subprocess.run([sys.executable, "-m", "mozart", "stats", str(folder), "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["files"] == len(real) + len(edge)
    assert stats["pieces"] >= len(real)
    assert stats["pieces"] + stats["unreadable"] + stats["without_notes"] == stats["files"]
    assert done.stderr.count("mozart: skipped") == stats["unreadable"]
    assert 0 <= stats["features"]["scale_consistency"]["mean"] <= 1
    assert sum(stats["features"]["pitch_class_histogram"]["mean"]) == pytest.approx(1.0)
    assert "pitch_class_entropy" in done.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "mozart", "stats", str(empty)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("mozart: error:")
