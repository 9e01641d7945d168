"""The grid travels with the model: a grid-12 model trains, generates (with a prompt),
evaluates, finetunes and serves at grid 12, and refuses data of another grid cleanly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from studio_driver import Server

import mozart
from mozart.models import load_model, model_format

from conftest import DATA, cli_reporting_imports, corpus_files, link_all

BACH = DATA / "music21_bach_bwv66.6.mid"


def mozart_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mozart", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def grid12(tmp_path_factory) -> tuple[Path, Path]:
    """`mozart dataset --grid 12` then `mozart train --max-steps 5`, as a user runs them."""
    root = tmp_path_factory.mktemp("grid12")
    midi = link_all(corpus_files()[:8], root / "midi")
    data, run = root / "d", root / "run"
    made = mozart_cli("dataset", midi, "-o", data, "--grid", "12", "--max-tokens", "256", "--workers", "1",
                      "--valid", "0.2", "--test", "0.2", "-q")
    assert made.returncode == 0, made.stderr
    trained = mozart_cli("train", data, "-o", run, "--max-steps", "5", "--batch-size", "2",
                         "--config", Path(__file__).parents[1] / "configs" / "tiny-gpt2.toml")
    assert trained.returncode == 0, trained.stderr[-2000:]
    return data, run


def test_the_model_knows_its_grid(grid12):
    data, run = grid12
    assert model_format(run) == model_format(data) == 12
    assert load_model(run).grid == 12


def test_generate_with_a_prompt_at_the_models_grid(grid12, tmp_path):
    _, run = grid12
    out = tmp_path / "out"
    done = mozart_cli("generate", "-m", run, "--bars", "2", "--prompt", BACH, "--prompt-bars", "2", "-n", "2",
                      "-o", out)
    assert done.returncode == 0, done.stderr[-2000:]
    prompt = mozart.encode(BACH, grid=12).split()
    for i in range(2):
        text = (out / f"sample_{i:03d}.txt").read_text()
        mozart.check(text)
        words = text.split()
        assert words[:2] == ["Format_1", "Grid_12"]
        assert words.count("Bar") == 4
        first_bars = prompt[: [j for j, w in enumerate(prompt) if w == "Bar"][2]]  # the prompt's 2 bars
        assert words[: len(first_bars)] == first_bars
    api = mozart.generate(model=run, bars=3, seed=1, tempo=90, time_signature=(3, 4))[0]
    assert api.split()[:3] == ["Format_1", "Grid_12", "TS_3/4"] and api.split().count("Bar") == 3


def test_evaluate_at_the_models_grid_and_refuse_another(grid12, tmp_path):
    data, run = grid12
    done = mozart_cli("evaluate", "-m", run, data, "-o", tmp_path / "report", "--samples", "2", "--bars", "2", "-q")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "report" / "report.json").is_file()
    other = tmp_path / "d24"
    assert mozart_cli("dataset", link_all(corpus_files()[:4], tmp_path / "m"), "-o", other, "--workers", "1",
                      "-q").returncode == 0
    # refused before torch is imported (seconds on 2 cores)
    for args in (("evaluate", "-m", run, other, "-o", tmp_path / "r2", "-q"),
                 ("evaluate", data, "-o", tmp_path / "r2", "-q"),  # no -m: the built-in model, at grid 24
                 ("finetune", run, other, "-o", tmp_path / "ft", "--max-steps", "1")):
        refused = cli_reporting_imports(*args)
        assert refused.stdout.split() == ["1", "False", "False"], (refused.stdout, refused.stderr[-2000:])
        assert refused.stderr.startswith("mozart: error:") and refused.stderr.count("\n") == 1, refused.stderr
        assert "grid 12" in refused.stderr and "grid 24" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "r2").exists() and not (tmp_path / "ft").exists()


def test_studio_serves_a_grid_12_model(grid12):
    _, run = grid12
    server = Server(run)
    try:
        with open(BACH, "rb") as f:
            answer = requests.post(server.url + "/api/generate", data={"bars": "2", "seed": "3", "prompt_bars": "1"},
                                   files={"prompt": ("bach.mid", f, "audio/midi")}, timeout=30)
        assert answer.status_code == 202, answer.text
        deadline = time.time() + 120
        while (job := requests.get(f"{server.url}/api/jobs/{answer.json()['id']}", timeout=10).json())["status"] \
                not in ("done", "error") and time.time() < deadline:
            time.sleep(0.1)
        assert job["status"] == "done", job
        text = requests.get(server.url + job["files"]["txt"], timeout=10).text
        mozart.check(text)
        assert text.split()[1] == "Grid_12" and text.split().count("Bar") == 3
    finally:
        server.stop()
