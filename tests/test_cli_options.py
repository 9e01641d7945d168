"""Every command, every option, set to an invalid value: exit 1 with one line
``mozart: error: ...`` (or 2 with the usage message), no traceback, nothing written.

Runs the real CLI in-process (``mozart.cli.main``), so the whole table takes seconds: each
case must be refused before any real work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozart.cli import main
from mozart.dataset import DatasetConfig, build_dataset
from mozart.models import default_model_dir

from conftest import DATA, corpus_files, link_all

MIDI = DATA / "music21_bach_bwv66.6.mid"
NOT_MIDI = Path(__file__)  # a Python file
HUGE = str(10**13)

# Placeholders filled per test: DATA_DIR (a small dataset), MODEL (the built-in model), OUT (the -o path),
# TOKENS (a valid token file), MIDI_DIR (a folder of MIDI files), MISSING, FOLDER (an empty folder).
PATHS = ["MISSING", "FOLDER", "NOT_MIDI"]
TABLE: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "encode": (["MIDI", "-o", "OUT/x.txt"], {"MIDI": PATHS, "--grid": ["0", "-4", "10", "1000", "nan", "abc"]}),
    "decode": (["TOKENS", "-o", "OUT/x.mid"], {"TOKENS": ["MISSING", "FOLDER", "MIDI"]}),
    "check": (["TOKENS"], {"TOKENS": ["MISSING", "FOLDER", "MIDI"]}),
    "render": (["MIDI", "-o", "OUT/x.wav"], {
        "MIDI": PATHS, "--sample-rate": ["0", "-1", HUGE, "abc"], "--gain": ["nan", "inf", "-1", "abc"],
        "--loudness": ["nan", "5", "-inf"], "--soundfont": ["MISSING", "FOLDER", "MIDI"]}),
    "plot": (["MIDI", "-o", "OUT/x.png"], {"MIDI": PATHS}),
    "dataset": (["MIDI_DIR", "-o", "OUT", "-q"], {
        "MIDI_DIR": ["MISSING", "MIDI", "FOLDER"], "--workers": ["0", "-1", HUGE, "abc"],
        "--valid": ["-0.1", "nan", "1", "inf", "abc"], "--test": ["nan", "2", "-1"], "--seed": ["abc", "1.5"],
        "--max-tokens": ["0", "-5", "abc"], "--transpose": ["abc", "5..-5", "-99..0", "1..nan"],
        "--grid": ["0", "10", "1000", "nan"], "--timeout": ["0", "-1", "nan", "inf", "abc"],
        "--min-test-works": ["-1", "abc", "1.5"]}),
    "corpus": (["music21", "-o", "OUT", "-q"], {
        "--subset": ["nope"], "--limit": ["0", "-1", "abc"], "--workers": ["0", HUGE, "-2"],
        "--timeout": ["0", "nan", "-inf"]}),
    "train": (["DATA_DIR", "-o", "OUT"], {
        "DATA_DIR": ["MISSING", "MIDI", "FOLDER"], "--arch": ["nope"], "--size": ["huge"],
        "--max-steps": ["0", "-1", "abc"], "--batch-size": ["0", HUGE], "--grad-accum": ["0", "-3"],
        "--lr": ["0", "nan", "inf", "-1"], "--seed": ["-1", str(2**40), "abc"],
        "--config": ["MISSING", "FOLDER", "MIDI", "BAD_TOML_KEY", "BAD_TOML_TYPE"]}),
    "finetune": (["MODEL", "DATA_DIR", "-o", "OUT"], {
        "MODEL": ["MISSING", "FOLDER", "MIDI"], "DATA_DIR": ["MISSING", "FOLDER"], "--lora-r": ["0", "-1", HUGE],
        "--lora-alpha": ["0", "abc"], "--max-steps": ["0"], "--lr": ["nan"]}),
    "generate": (["-m", "MODEL", "-o", "OUT"], {
        "-m": ["MISSING", "FOLDER", "MIDI"], "--prompt": PATHS, "--prompt-bars": ["0", "-1", HUGE],
        "--bars": ["0", HUGE, "abc"], "--program": ["200", "-1", "abc"], "--tempo": ["0", "nan", "inf", HUGE],
        "--time-signature": ["3/5", "abc", "0/4", "4/0"], "--temperature": ["0", "-1", "nan", "inf"],
        "--top-p": ["0", "1.5", "nan"], "--top-k": ["-1", "abc"], "--seed": ["-1", str(2**64), "abc"],
        "-n": ["0", "-1", HUGE], "--adapter": ["MISSING", "FOLDER"], "--style": ["jazz"],
        "--form": ["A", "AB1", "aaba", "ABC", ""]}),
    "infill": (["MIDI", "--bars", "2-3", "-m", "MODEL", "-o", "OUT"], {
        "MIDI": PATHS, "--bars": ["0-2", "3-2", "1-999", "abc", "-1", ""], "-m": ["MISSING", "FOLDER", "MIDI"],
        "--program": ["200", "-1", "abc"], "--temperature": ["0", "nan", "inf"], "--top-p": ["0", "1.5"],
        "--top-k": ["-1"], "--seed": ["-1", str(2**64)], "-n": ["0", HUGE], "--adapter": ["MISSING", "FOLDER"]}),
    "accompany": (["MIDI", "--program", "33", "-m", "MODEL", "-o", "OUT"], {
        "MIDI": PATHS, "--program": ["200", "-1", "abc"], "--bars": ["0-2", "9-99", "abc"],
        "-m": ["MISSING", "FOLDER"], "--temperature": ["nan", "-1"], "--seed": [str(2**64)], "-n": ["0"]}),
    "evaluate": (["-m", "MODEL", "DATA_DIR", "-o", "OUT", "-q"], {
        "DATA_DIR": ["MISSING", "MIDI", "FOLDER"], "-m": ["MISSING", "FOLDER"], "--samples": ["0", "nan", HUGE],
        "--seed": ["-1", "abc"], "--bars": ["0", "-2"], "--stride": ["0", "-1"], "--max-test-pieces": ["0"],
        "--precision": ["fp16", "abc"], "--temperature": ["0", "nan"], "--top-p": ["0", "1.5", "nan"],
        "--train-reference": ["-1", "abc"]}),
    "stats": (["MIDI_DIR", "--json", "OUT/s.json"], {"MIDI_DIR": ["MISSING", "MIDI", "FOLDER"],
                                                     "--grid": ["10", "0", "abc"], "--json": ["FOLDER"]}),
    "serve": (["-m", "MODEL", "--port", "7860"], {"--port": ["0", "70000", "-1", "abc"], "-m": ["MISSING", "FOLDER"]}),
    "demo": (["-o", "OUT"], {"-o": ["MIDI_COPY"]}),
}
CASES = [(command, option, value) for command, (_, options) in TABLE.items()
         for option, values in options.items() for value in values]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("options")
    midi_dir = link_all(corpus_files()[:4], root / "midi")
    build_dataset(midi_dir, root / "data", DatasetConfig(workers=1), progress=False)
    tokens = root / "piece.txt"
    tokens.write_text("Format_1 Grid_24 TS_4/4 Tempo_120 Bar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24\n")
    (root / "bad_key.toml").write_text("learning_rate = 0.1\n")
    (root / "bad_type.toml").write_text('max_steps = "many"\n')
    return {"DATA_DIR": root / "data", "MIDI_DIR": midi_dir, "TOKENS": tokens, "BAD_TOML_KEY": root / "bad_key.toml",
            "BAD_TOML_TYPE": root / "bad_type.toml"}


def invoke(args: list[str], capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command, option, value", CASES, ids=[f"{c} {o} {v}" for c, o, v in CASES])
def test_invalid_option_is_a_clean_error(command, option, value, places, tmp_path, capsys):
    model = default_model_dir()
    if model is None and ("MODEL" in TABLE[command][0] or value == "MODEL"):
        pytest.skip("no built-in model")
    out = tmp_path / "out"
    folder = tmp_path / "empty"
    folder.mkdir()
    midi_copy = tmp_path / "song.mid"
    midi_copy.write_bytes(MIDI.read_bytes())
    fill = {**places, "MODEL": Path(str(model)) if model else None, "OUT": out, "MISSING": tmp_path / "missing.mid",
            "FOLDER": folder, "NOT_MIDI": NOT_MIDI, "MIDI": MIDI, "MIDI_COPY": midi_copy}

    def resolve(word: str) -> str:
        head, _, rest = word.partition("/")
        return str(fill[head] / rest) if head in fill and rest else str(fill.get(word, word))

    base, _ = TABLE[command]
    args = [command] + [resolve(a) for a in base]
    if option.isupper():  # a positional argument: replace its placeholder
        args[1 + base.index(option)] = resolve(value)
    elif option in base:  # an option the base already sets: replace its value
        args[1 + base.index(option) + 1] = resolve(value)
    else:
        args += [option, resolve(value)]
    code, err = invoke(args, capsys)
    assert code in (1, 2), f"exit {code}: {args}\n{err}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("mozart: error: "), err
    else:
        assert "Usage:" in err or "Error" in err, err
    assert not out.exists(), f"{args} left {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "song.mid"]
    assert midi_copy.read_bytes() == MIDI.read_bytes() and not any(folder.iterdir())
