"""Training: real tiny GPT-2, Llama and BART models on a dataset built from the corpus."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mozart.dataset import DatasetConfig, build_dataset
from mozart.errors import MozartError
from mozart.likelihood import likelihood
from mozart.models import build_model, known_programs
from mozart.train import finetune, latest_complete_checkpoint, load_config, special_ids, train

from conftest import corpus_files, link_all, styleless_model

CONTEXT = 256
FAST = {"size": "tiny", "batch_size": 4, "lr": 2e-3, "validity_samples": 2, "max_eval_examples": 48}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    midi = link_all(corpus_files()[:40], root / "midi")
    build_dataset(midi, root / "data", DatasetConfig(max_tokens=CONTEXT, workers=1, valid=0.15, test=0.1),
                  progress=False)
    return root / "data"


def eval_losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r["eval_loss"]) for r in csv.DictReader(f) if r["eval_loss"]]


def untrained_nats(data: Path, arch: str) -> float:
    from transformers import AutoTokenizer

    from mozart.train import build_examples

    config = load_config(None, arch=arch, **FAST)
    ids = special_ids(AutoTokenizer.from_pretrained(str(data)))
    model = build_model(arch, "tiny", ids, CONTEXT)
    valid = build_examples(data, "valid", config, CONTEXT)
    return likelihood(model, type(valid)(valid.examples[:48]), ids.pad)["nats_per_token"]


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    """One short run per family (shared by the tests below)."""
    out = {}
    for arch in ("gpt2", "llama", "bart"):
        run = tmp_path_factory.mktemp(arch) / "run"
        train(data, run, load_config(None, arch=arch, max_steps=40, eval_every=10, context=CONTEXT, **FAST))
        out[arch] = run
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart"])
def test_valid_loss_drops(runs, data, arch):
    run = runs[arch]
    metrics = json.loads((run / "metrics.json").read_text())
    before = untrained_nats(data, arch)
    after = metrics["valid"]["nats_per_token"]
    assert after < before - 0.3, (before, after)  # from ~ln(1466) = 7.3 nats: clearly learning
    losses = eval_losses(run)
    # 40 steps of a tiny model on 40 files: the valid loss falls below its first evaluation, but the last
    # one can rise again (measured, gpt2: 6.06, 5.94, 5.91, 6.31 with one record order, 6.17 ... 5.98 with another)
    assert len(losses) >= 3 and min(losses[1:]) < losses[0]
    v = metrics["valid"]
    assert abs(v["bits_per_token"] * 0.6931471805599453 - v["nats_per_token"]) < 1e-9
    assert v["bits_per_note"] > v["bits_per_token"] and v["notes"] > 0
    assert (run / "loss.png").stat().st_size > 5000
    assert 0 <= metrics["validity"]["valid"] <= metrics["validity"]["samples"] == 2


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart"])
def test_outputs_load_with_plain_transformers(runs, data, arch):
    loader = "AutoModelForSeq2SeqLM" if arch == "bart" else "AutoModelForCausalLM"
    code = (
        "import sys, transformers, torch;"
        f"m = transformers.{loader}.from_pretrained(sys.argv[1]);"
        "t = transformers.AutoTokenizer.from_pretrained(sys.argv[1]);"
        "ids = t('Format_1 Grid_24 TS_4/4 Tempo_120 Bar', return_tensors='pt')['input_ids'];"
        "assert t.unk_token_id not in ids[0].tolist();"
        "kw = {'decoder_input_ids': ids} if m.config.is_encoder_decoder else {};"
        "out = m(input_ids=ids, **kw);"
        "assert out.logits.shape[-1] == len(t);"
        "assert 'mozart' not in sys.modules;"
        "print('loaded', m.config.model_type, t.pad_token, t.eos_token)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(runs[arch])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"loaded {arch} <pad> <eos>" in result.stdout
    assert (runs[arch] / "model.safetensors").is_file()
    # the programs the model was trained on travel with it (stand-ins, standins.py)
    recorded = json.loads((data / "tokenizer_config.json").read_text())["mozart_programs"]
    assert known_programs(runs[arch]) == set(recorded)


def _train_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mozart", "train", str(data), "-o", str(run), "--max-steps", "30",
            "--batch-size", "4", "--lr", "2e-3", "--config", str(run.parent / "fast.toml"), *extra]


def _fast_toml(folder: Path) -> None:
    (folder / "fast.toml").write_text(
        f"eval_every = 5\ncontext = {CONTEXT}\nvalidity_samples = 0\nmax_eval_examples = 24\n")


def test_resume_after_kill_9_matches_an_uninterrupted_run(data, tmp_path):
    _fast_toml(tmp_path)
    straight = tmp_path / "straight"
    assert subprocess.run(_train_cmd(data, straight), capture_output=True).returncode == 0

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest_complete_checkpoint_name(run) >= 10:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists(), "the run was killed before it finished"
    resumed = subprocess.run(_train_cmd(data, run, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((straight / "metrics.json").read_text())["valid"]["nats_per_token"]
    b = json.loads((run / "metrics.json").read_text())["valid"]["nats_per_token"]
    assert abs(a - b) < 1e-4, (a, b)
    assert eval_losses(run)[-1] == pytest.approx(eval_losses(straight)[-1], abs=1e-4)


def latest_complete_checkpoint_name(run: Path) -> int:
    found = [int(p.parent.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*/checkpoint-complete")]
    return max(found, default=0)


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "checkpoint-complete").write_text("5")
    (tmp_path / "checkpoint-10").mkdir()  # killed while saving: no mark
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-5"
    assert not (tmp_path / "checkpoint-10").exists()


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_previous_token_model_trains_finetunes_and_samples(data, tmp_path):
    """A Llama with previous-token tables (previous_tokens.py): it learns, its LoRA fine-tune merges
    with the tables kept, and the sampler's light path (numpy, the table read from the folder) writes valid
    pieces, a seed's the same at any -n."""
    from mozart import generate
    from mozart.models import load_base, load_sampler
    from mozart.tokens import check
    from mozart.weights import previous_token_weights

    run = tmp_path / "run"
    config = load_config(None, arch="llama", max_steps=40, eval_every=10, context=CONTEXT, previous_tokens=2,
                         **FAST)
    metrics = train(data, run, config)
    assert metrics["valid"]["nats_per_token"] < untrained_nats(data, "llama") - 0.3
    assert metrics["validity"]["samples"] == 2  # generate() without a cache, whole sequences
    base, _ = load_base(run)
    names = previous_token_weights(2)
    tables = [base.state_dict()[name] for name in names]
    finetune(run, data, tmp_path / "adapter", load_config(None, max_steps=4, eval_every=2, context=CONTEXT,
                                                        **FAST), lora_r=4, lora_alpha=8, merge=True)
    merged, _ = load_base(tmp_path / "adapter" / "merged")
    assert all(torch.equal(merged.state_dict()[name], table) for name, table in zip(names, tables))
    light = load_sampler(run).model
    assert all(np.array_equal(light.arrays[name], t.numpy()) for name, t in zip(names, tables))  # numpy path
    pieces = generate(str(run), bars=4, n=2, seed=5)
    for piece in pieces:
        check(piece)
    assert generate(str(run), bars=4, n=1, seed=5) == pieces[:1]  # a seed's piece at any -n
    from mozart.modelcard import copy_model  # publishing: float16 weights, the module beside them

    copy_model(run, tmp_path / "published")
    assert (tmp_path / "published" / "previous_tokens.py").is_file()
    published, _ = load_base(tmp_path / "published")
    assert all(torch.equal(published.state_dict()[name], t.half().float()) for name, t in zip(names, tables))


@pytest.mark.parametrize("arch", ["gpt2", "bart"])
def test_lora_adapter_is_small_and_leaves_the_base_alone(runs, data, tmp_path, arch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    base = runs[arch]
    before = _digest(base)
    out = tmp_path / "adapter"
    config = load_config(None, max_steps=8, eval_every=4, context=CONTEXT, **FAST)
    metrics = finetune(base, data, out, config, lora_r=4, lora_alpha=8, merge=True)
    assert _digest(base) == before, "the base model's files are unchanged"
    share = metrics["trainable_parameters"] / metrics["total_parameters"]
    assert 0 < share < 0.1
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "adapter_model.safetensors").stat().st_size < (base / "model.safetensors").stat().st_size / 5
    loader = AutoModelForSeq2SeqLM if arch == "bart" else AutoModelForCausalLM
    merged = loader.from_pretrained(str(out / "merged"))
    original = loader.from_pretrained(str(base))
    with_adapter = PeftModel.from_pretrained(loader.from_pretrained(str(base)), str(out))
    changed = [n for n, p in merged.state_dict().items() if not p.equal(original.state_dict()[n])]
    assert changed, "merging the adapter changes the adapted weights"
    # the adapter on the base and the merged model compute the same function, and not the base's
    ids = torch.tensor([[1] + list(range(4, 40))])
    kwargs = {"decoder_input_ids": ids} if arch == "bart" else {}
    with torch.no_grad():
        logits = [m.eval()(input_ids=ids, **kwargs).logits for m in (with_adapter, merged, original)]
    assert torch.allclose(logits[0], logits[1], atol=1e-4), float((logits[0] - logits[1]).abs().max())
    assert not torch.allclose(logits[0], logits[2], atol=1e-4)


def test_ddp_ranks_share_the_packed_windows_of_an_epoch(tmp_path):
    """Two processes, one epoch of packed windows from the token store: every window is served, each
    to one rank (DistributedSampler pads with at most a batch's worth of repeats to even them out).
    A dataset of 8 small files: an epoch of the module's 40 (1,666 windows) took a minute on 2 cores."""
    from mozart.lmdata import WINDOW_LOG_HOOK, PackedWindows
    from mozart.tokenstore import TokenStore

    data = tmp_path / "data"
    small = sorted(corpus_files()[:20], key=lambda p: p.stat().st_size)[:8]
    build_dataset(link_all(small, tmp_path / "midi"), data,
                  DatasetConfig(max_tokens=CONTEXT, workers=1, valid=0.15, test=0.1), progress=False)
    n_windows = len(PackedWindows(TokenStore(data, "train"), CONTEXT))
    batch = 4
    assert n_windows > 2 * batch  # more than one step per rank
    steps = -(-n_windows // (2 * batch))  # one epoch over both ranks
    (tmp_path / "epoch.toml").write_text(f"arch = 'llama'\nsize = 'tiny'\ncontext = {CONTEXT}\neval_every = {steps}\n"
                                         "validity_samples = 0\nmax_eval_examples = 8\n")  # no early stop
    log = tmp_path / "windows"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "mozart", "train", str(data), "-o", str(tmp_path / "ddp"), "--max-steps", str(steps),
           "--batch-size", str(batch), "--config", str(tmp_path / "epoch.toml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", WINDOW_LOG_HOOK: str(log)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served = [[int(x) for x in (tmp_path / f"windows.{rank}").read_text().split()] for rank in (0, 1)]
    assert set(served[0]) | set(served[1]) == set(range(n_windows))
    assert len(served[0]) + len(served[1]) - n_windows <= 2 * batch
    assert len(set(served[0]) & set(served[1])) <= 2 * batch


def test_ddp_two_processes_agree_and_only_rank_0_writes(data, tmp_path):
    _fast_toml(tmp_path)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "mozart", "train", str(data), "-o", str(run), "--max-steps", "6", "--batch-size", "2",
           "--config", str(tmp_path / "fast.toml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith(str(run))]
    assert len(summaries) == 2, result.stdout  # one per rank
    assert summaries[0] == summaries[1], "both ranks end with the same model"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    steps = [(r["step"], bool(r["train_loss"])) for r in rows]
    assert len(steps) == len(set(steps)), "each log row written once (rank 0 only)"
    assert (run / "model.safetensors").is_file()


def test_training_side_does_not_load_symusic():
    """Pre-tokenized data is enough to train: the CLI and the trainer never import symusic."""
    code = "import sys, mozart.cli, mozart.train, mozart.lmdata; assert 'symusic' not in sys.modules, 'symusic'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1000:]


def test_a_model_without_style_tokens_refuses_a_styled_dataset(tmp_path):
    model = styleless_model(tmp_path / "plain")
    files = corpus_files()[:6]
    midi = link_all(files, tmp_path / "midi")
    (midi / "corpus.tsv").write_text("midi_file\tstyle\n" + "".join(f"{f.name}\tfolk\n" for f in files))
    build_dataset(midi, tmp_path / "data", DatasetConfig(workers=1, valid=0.2, test=0.2), progress=False)
    with pytest.raises(MozartError, match="carry style tokens the model .* was trained without"):
        finetune(model, tmp_path / "data", tmp_path / "adapter", load_config(None, max_steps=1))
    assert not (tmp_path / "adapter").exists()


def test_max_minutes_stops_training_at_the_deadline_with_a_checkpoint(data, tmp_path):
    """The wall-clock guard ends a run far short of max_steps, evaluated and saved at that step."""
    run = tmp_path / "run"
    metrics = train(data, run, load_config(None, arch="llama", max_steps=100_000, eval_every=100_000,
                                           context=CONTEXT, max_minutes=0.05, **{**FAST, "validity_samples": 0}))
    assert 1 <= metrics["steps"] < 100_000
    assert metrics["steps"] == latest_complete_checkpoint_name(run)  # saved where it stopped
    assert len(eval_losses(run)) == 1  # and evaluated there, once


def test_medium_size_fits_the_package_budget_in_float16():
    """The medium size is the largest the package ships: float16 weights under 25 MB."""
    ids = special_ids_of(vocab_size=1_490)
    model = build_model("llama", "medium", ids, 512)
    params = sum(p.numel() for p in model.parameters())
    assert params * 2 < 25e6 and params > 1.5 * sum(p.numel() for p in build_model("llama", "small", ids, 512)
                                                     .parameters())


def special_ids_of(vocab_size: int):
    from mozart.models import SpecialIds

    return SpecialIds(pad=0, bos=1, eos=2, vocab_size=vocab_size)


@pytest.mark.parametrize("setting, value, message", [("fim_order", "mps", "unknown fim_order 'mps'"),
                                                     ("precision", "fp8", "unknown precision"),
                                                     ("fim_rate", 1.5, "--fim-rate"),
                                                     ("previous_tokens", 17, "--previous-tokens"),
                                                     ("previous_tokens", 1.5, "--previous-tokens")])
def test_bad_training_settings_are_one_line_errors(setting, value, message):
    with pytest.raises(MozartError, match=message):
        load_config(None, **{setting: value})
    with pytest.raises(MozartError, match="previous_tokens is for llama models, not gpt2"):
        load_config(None, arch="gpt2", previous_tokens=2)
    assert load_config(None, fim_order="spm").fim_order == "spm"


def test_the_same_recipe_and_seed_write_the_same_weights(data, tmp_path):
    """What lets `make default-model` rebuild the built-in model: on one machine, a run is a function of its
    data, recipe and seed (window order, fill-in-the-middle draws, dropout, bf16 autocast where the CPU has
    it), so two runs write byte-identical weights; another seed writes others (the check can fail)."""
    recipe = dict(arch="llama", max_steps=6, eval_every=6, context=CONTEXT, previous_tokens=4, fim_rate=0.5,
                  **{**FAST, "validity_samples": 0, "max_eval_examples": 8})
    digests = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(data, tmp_path / name, load_config(None, seed=seed, **recipe))
        digests.append(hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert digests[2] != digests[0]
