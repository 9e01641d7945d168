"""A Ctrl-C that a library swallowed still stops the command: the CLI's handler remembers it and the
long loops (training steps, sampling steps, scoring batches, worker results) raise it again."""

from __future__ import annotations

import os
import signal
import time
from contextlib import closing
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import mozart
from mozart import interrupts
from mozart.controls import Controls, SamplingSettings
from mozart.dataset import DatasetConfig, build_dataset
from mozart.likelihood import model_likelihood
from mozart.lmdata import load_tokenizer
from mozart.models import build_model, load_model
from mozart.sampling import generate_pieces
from mozart.train import load_config, special_ids, train
from mozart.workers import run_tasks

from conftest import DATA


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A dataset of the MIDI files kept with the tests."""
    out = tmp_path_factory.mktemp("interrupts") / "data"
    build_dataset(DATA, out, DatasetConfig(max_tokens=256, workers=1, valid=0.2, test=0.2), progress=False)
    return out


@pytest.fixture
def cli_handler():
    """The CLI's Ctrl-C handler, as ``python -m mozart`` installs it; Python's own one back afterwards."""
    previous = signal.getsignal(signal.SIGINT)
    interrupts.install()
    yield
    signal.signal(signal.SIGINT, previous)
    interrupts._installed = interrupts._interrupted = False


def lose_a_ctrl_c() -> None:
    """Press Ctrl-C where a library ignores every error, as a ``__del__`` or a broad ``except`` does."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs at the next bytecode, long before this ends
        raise AssertionError("the Ctrl-C never arrived")
    except KeyboardInterrupt:
        pass


def random_model(data: Path, folder: Path) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(str(data))
    model = build_model("gpt2", "tiny", special_ids(tokenizer), 256)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_without_a_ctrl_c_nothing_is_raised(cli_handler):
    interrupts.raise_if_interrupted()
    with interrupts.interrupts_deferred():
        pass
    interrupts.raise_if_interrupted()


def test_library_use_keeps_pythons_handler():
    """Without the CLI's handler a swallowed Ctrl-C stays swallowed: the loops' checks never raise."""
    lose_a_ctrl_c()
    interrupts.raise_if_interrupted()


def test_a_lost_ctrl_c_stops_training_at_its_first_step(cli_handler, data, tmp_path):
    lose_a_ctrl_c()
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(data, out, load_config(None, arch="gpt2", max_steps=50, eval_every=50, context=256, batch_size=2,
                                     validity_samples=0))
    assert not (out / "model.safetensors").exists() and not list(out.glob("checkpoints/checkpoint-*"))


def test_a_lost_ctrl_c_stops_sampling_and_scoring(cli_handler, data, tmp_path):
    folder = random_model(data, tmp_path / "model")
    loaded, texts = load_model(folder), [mozart.encode(DATA / "music21_bach_bwv66.6.mid")]
    lose_a_ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        generate_pieces(loaded, Controls(bars=4), SamplingSettings(), n=1, seed=0)
    with pytest.raises(KeyboardInterrupt):
        model_likelihood(loaded.model, load_tokenizer(folder), texts, None)


def test_a_lost_ctrl_c_stops_waiting_for_workers(cli_handler):
    lose_a_ctrl_c()
    with pytest.raises(KeyboardInterrupt), closing(run_tasks(len, ["a", "bb"], workers=1, timeout=None)) as outcomes:
        next(outcomes)


def test_a_ctrl_c_held_for_a_critical_step_is_remembered(cli_handler):
    with pytest.raises(KeyboardInterrupt), interrupts.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
    with pytest.raises(KeyboardInterrupt):
        interrupts.raise_if_interrupted()


def test_an_error_after_a_ctrl_c_is_an_interrupt(cli_handler, monkeypatch, capsys):
    """An extension whose import a Ctrl-C cut short raises "ImportError: initialization failed" (CI saw it
    in evaluate): after a Ctrl-C the CLI reports any error as the interrupt it is, exit 130, one line."""
    import mozart.cli

    def cut_short(**kwargs):
        raise ImportError("initialization failed")

    monkeypatch.setattr(mozart.cli, "app", cut_short)
    with pytest.raises(ImportError):  # no Ctrl-C: a real error, shown as such
        mozart.cli.main([])
    lose_a_ctrl_c()
    with pytest.raises(SystemExit) as exit_:
        mozart.cli.main([])
    assert exit_.value.code == 130 and capsys.readouterr().err == "mozart: interrupted\n"


def test_the_interrupted_line_comes_after_an_open_progress_bar(tmp_path):
    """Regression (CI, session 13): a Ctrl-C during training left the Trainer's progress bar open, and
    tqdm redrew it at interpreter exit, after "mozart: interrupted".  The bar must be closed first."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from tqdm import tqdm\n"
              "from mozart.interrupts import exit_interrupted\n"
              "bar = tqdm(total=100, file=sys.stderr)\n"
              "bar.update(3)\n"
              "exit_interrupted()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 130, result.stderr
    assert "3/100" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "mozart: interrupted", result.stderr
