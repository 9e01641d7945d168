"""The command line: outputs, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import symusic

import mozart

from conftest import DATA, cli_reporting_imports, edge_files
from reference import note_multiset

BACH = DATA / "music21_bach_bwv66.6.mid"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mozart", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_clean_error(result: subprocess.CompletedProcess, mentions: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mozart: error: ")
    assert mentions in lines[0]
    assert "Traceback" not in result.stderr


def test_encode_decode_check_round_trip(tmp_path):
    txt, mid = tmp_path / "bach.txt", tmp_path / "bach.mid"
    assert run("encode", BACH, "-o", txt).returncode == 0
    assert txt.read_text() == mozart.encode(BACH) + "\n"
    stdout = run("encode", BACH).stdout
    assert stdout == txt.read_text()
    checked = run("check", txt)
    assert checked.returncode == 0 and "ok" in checked.stdout
    assert run("decode", txt, "-o", mid).returncode == 0
    assert note_multiset(symusic.Score(str(mid)), 24) == note_multiset(symusic.Score(str(BACH)), 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bach.mid", "bach.txt"]  # no temp files left


def test_grid_option(tmp_path):
    out = run("encode", BACH, "--grid", "12").stdout
    assert out.startswith("Format_1 Grid_12 ")
    bad = run("encode", BACH, "--grid", "10", "-o", tmp_path / "x.txt")
    assert_clean_error(bad, "grid 10")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("command", ["encode", "decode", "check"])
def test_help_has_an_example(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert "Example: mozart " + command in " ".join(result.stdout.split())


def test_usage_error_exits_2():
    assert run("decode").returncode == 2
    assert run("encode", BACH, "--grid", "abc").returncode == 2


@pytest.mark.parametrize("kind", ["missing", "directory", "not_midi", "empty"])
def test_bad_midi_inputs(tmp_path, kind):
    path = {"missing": tmp_path / "nope.mid", "directory": tmp_path, "not_midi": Path(__file__),
            "empty": tmp_path / "empty.mid"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    out = tmp_path / "out.txt"
    result = run("encode", path, "-o", out)
    assert_clean_error(result, str(path))
    assert not out.exists()


def test_bad_token_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Format_1 Grid_24 TS_4/4 Tempo_120\nBar Pos_0 Prog_0 Pitch_60 Vel_80 Dur_0\n")
    out = tmp_path / "out.mid"
    for result in (run("check", bad), run("decode", bad, "-o", out)):
        assert_clean_error(result, "bad.txt: line 2, token 6 'Dur_0'")
    assert not out.exists()
    binary = tmp_path / "binary.txt"
    binary.write_bytes(BACH.read_bytes())
    assert_clean_error(run("check", binary), "not a text file")
    assert_clean_error(run("decode", tmp_path / "missing.txt", "-o", out), "no such file")
    assert_clean_error(run("check", tmp_path), "is a directory")


def test_existing_output_survives_a_failed_run(tmp_path):
    out = tmp_path / "keep.txt"
    out.write_text("precious")
    assert_clean_error(run("encode", tmp_path / "nope.mid", "-o", out), "no such file")
    assert out.read_text() == "precious"


def test_output_into_missing_folders_creates_them(tmp_path):
    """Every -o creates its missing parent folders, as mkdir -p would."""
    assert run("encode", BACH, "-o", tmp_path / "no" / "such" / "x.txt").returncode == 0
    assert (tmp_path / "no" / "such" / "x.txt").read_text() == mozart.encode(BACH) + "\n"
    assert run("plot", BACH, "-o", tmp_path / "a" / "b" / "x.png").returncode == 0
    assert (tmp_path / "a" / "b" / "x.png").stat().st_size > 0
    made = run("dataset", DATA, "-o", tmp_path / "c" / "d" / "data", "--workers", "1", "-q")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "c" / "d" / "data" / "stats.json").is_file()
    assert not [p for p in (tmp_path / "c" / "d").iterdir() if p.name.startswith(".")]  # no lock or staging left
    (tmp_path / "file").write_text("x")
    assert_clean_error(run("encode", BACH, "-o", tmp_path / "file" / "x.txt"), "not a folder")


def test_generate_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.md").write_text("keep")
    refused = run("generate", "--bars", "1", "-o", folder)
    assert_clean_error(refused, "pass --force")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.md"]
    forced = run("generate", "--bars", "1", "--force", "-o", folder)
    assert forced.returncode == 0, forced.stderr
    assert (folder / "notes.md").read_text() == "keep" and (folder / "samples.json").is_file()
    assert run("generate", "--bars", "1", "-o", folder).returncode == 0  # its own folder: no flag needed


@pytest.mark.parametrize("path", edge_files(), ids=lambda p: p.name)
def test_edge_files_encode_what_symusic_reads_or_fail_cleanly(path, tmp_path, covered):
    out = tmp_path / "out.txt"
    result = run("encode", path, "-o", out)
    if result.returncode == 0:
        source = symusic.Score(str(path))
        decoded = mozart.decode(out.read_text())
        assert note_multiset(decoded, 24) == note_multiset(source, 24)
        assert decoded.note_num() == source.note_num()
    else:
        assert_clean_error(result, path.name)
        assert list(tmp_path.iterdir()) == []
    covered("edge files", path)


def test_type2_file_encodes_what_symusic_reads(tmp_path):
    """A hand-built SMF type-2 file with one track: symusic reads it, so we encode it."""
    header = b"MThd" + (6).to_bytes(4, "big") + b"".join(x.to_bytes(2, "big") for x in (2, 1, 96))
    events = bytes([0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00])
    path = tmp_path / "type2.mid"
    path.write_bytes(header + b"MTrk" + len(events).to_bytes(4, "big") + events)
    result = run("encode", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[4:] == "Bar Pos_0 Prog_0 Pitch_60 Vel_100 Dur_24".split()


def test_demo_runs(tmp_path):
    result = run("demo", "-o", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "text identical: True" in result.stdout
    assert (tmp_path / "demo" / "bach_bwv66.6.mid").stat().st_size > 0
    from mozart.models import default_model_dir

    if default_model_dir() is not None:  # a folk tune and a chorale (a style-less model: one piece)
        made = sorted(p.name for p in (tmp_path / "demo").glob("generated*.mid"))
        assert made in (["generated-chorale.mid", "generated-folk.mid"], ["generated.mid"])
        for midi in made:
            text = (tmp_path / "demo" / midi).with_suffix(".txt").read_text()
            mozart.check(text)
            assert text.split().count("Bar") == 16
        if made == ["generated-chorale.mid", "generated-folk.mid"]:  # a bass and a piano added under the tune
            from rewrite_checks import assert_rewrite

            from mozart.cli import DEMO_ACCOMPANIMENT

            tune = mozart.decode_piece((tmp_path / "demo" / "generated-folk.txt").read_text())
            added = (tmp_path / "demo" / "accompanied-folk.txt").read_text().strip()
            assert_rewrite(tune, added, 0, 15, DEMO_ACCOMPANIMENT, keep=True, register="below")
            assert (tmp_path / "demo" / "accompanied-folk.png").stat().st_size > 0
            assert "accompanied:" in result.stdout


def test_demo_asks_the_model_whether_it_knows_the_styles(tmp_path, monkeypatch):
    """A built-in model without style tokens gets one piece in any style (decided by the model's
    vocabulary, not by the text of an error); a styled one a piece per demo style."""
    import mozart.cli
    import mozart.models

    from conftest import styleless_model

    monkeypatch.setattr(mozart.models, "default_model_dir", lambda: styleless_model(tmp_path / "plain"))
    pieces = mozart.cli._demo_pieces()
    assert [name for name, _ in pieces] == ["generated"]
    mozart.check(pieces[0][1])
    assert pieces[0][1].split().count("Bar") == 16


def test_ctrl_c_that_escaped_an_exec_still_exits_130(tmp_path):
    """Regression: a Ctrl-C that escaped an ``exec`` of a string (dataclasses, while a command lazily
    imports transformers) and was then handled made ``python -m mozart`` die by SIGINT (-2, with
    nothing on stderr) instead of exiting 130.  The command here is a stand-in that interrupts
    itself inside such an exec, then exits 130 as the real CLI does; ``run`` is the real entry point."""
    (tmp_path / "launch.py").write_text(
        "import sys\n"
        "import mozart.cli\n"
        "def main():\n"
        "    try:\n"
        "        exec('import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(1000): pass')\n"
        "    except KeyboardInterrupt:\n"
        "        print('mozart: interrupted', file=sys.stderr)\n"
        "        sys.exit(130)\n"
        "mozart.cli.main = main\n"
        "from mozart.__main__ import run\n"
        "run()\n")
    result = subprocess.run([sys.executable, "-m", "launch"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr == "mozart: interrupted\n"


@pytest.mark.parametrize("command", ["train", "evaluate", "corpus", "generate"])
def test_ctrl_c_in_a_long_command_exits_130_quickly(command, tmp_path):
    """Ctrl-C in the middle of train, evaluate, corpus or generate: exit 130 within 5 s, no traceback, no
    report, export summary or samples.json written (train keeps only complete, resumable checkpoints), and
    generate's piano-roll helper process gone with it."""
    import signal
    import time

    from conftest import corpus_files, link_all

    data = tmp_path / "data"
    if command in ("train", "evaluate"):
        made = run("dataset", link_all(corpus_files()[:6], tmp_path / "midi"), "-o", data, "--workers", "1", "-q")
        assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    args = {"train": ["train", data, "-o", out, "--arch", "llama", "--size", "tiny", "--max-steps", "100000"],
            "evaluate": ["evaluate", data, "-o", out, "--samples", "1000", "-q"],
            "corpus": ["corpus", "music21", "-o", out, "--subset", "folk", "--workers", "2", "-q"],
            "generate": ["generate", "-o", out, "-n", "16", "--bars", "64"]}[command]
    proc = subprocess.Popen([sys.executable, "-m", "mozart", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # well into the work: model loaded, steps or samples or conversions running
    assert proc.poll() is None, proc.stderr.read()
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5 and proc.returncode == 130, (proc.returncode, err[-1000:])
    assert err.strip().splitlines()[-1:] == ["mozart: interrupted"], err[-1000:]
    assert "Traceback" not in err
    if command == "evaluate":
        assert not out.exists()
    if command == "corpus":
        assert not (out / "corpus.tsv").exists()
    if command == "train":
        assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    if command == "generate":
        assert not (out / "samples.json").exists()
        assert children  # the piano-roll helper, started with the command
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(child) for child in children):
        time.sleep(0.1)
    left = [Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ") for child in children if _running(child)]
    assert not left, left  # worker or helper processes end with their command


def _running(pid: str) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_a_fifo_is_refused_not_read_forever(tmp_path):
    import os

    fifo = tmp_path / "song.mid"
    os.mkfifo(fifo)
    for command in (["encode", str(fifo)], ["check", str(fifo)], ["plot", str(fifo), "-o", str(tmp_path / "x.png")]):
        run = subprocess.run([sys.executable, "-m", "mozart", *command], capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and run.stderr.strip() == f"mozart: error: {fifo}: not a regular file"


def test_a_file_we_may_not_read_is_one_line(tmp_path, monkeypatch, capsys):
    """As root every file is readable, so the kernel's answer for a file behind a folder we may not
    enter is played by Path.stat; encode, check and render must say it in one line (exit 1)."""
    from pathlib import Path

    from mozart.cli import main

    locked = tmp_path / "locked" / "song.mid"
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    commands = (["encode", str(locked)], ["check", str(locked)], ["render", str(locked), "-o", str(tmp_path / "x.wav")])
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main(command)
        assert exit_.value.code == 1
        assert capsys.readouterr().err.strip() == f"mozart: error: {locked}: cannot read: Permission denied"


def test_a_token_text_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    """A hostile 'Bar Bar Bar ...' text of 17 MB would need about 0.3 GB per 16 MB to decode; it is refused
    from its size in one line (decode, check, render, plot), and a string over the cap by the API too."""
    from mozart.tokens import MAX_TEXT_CHARS

    big = tmp_path / "big.txt"
    header = "Format_1 Grid_24 TS_4/4 Tempo_120\n"
    with open(big, "w") as f:
        f.write(header + "Bar " * ((MAX_TEXT_CHARS - len(header)) // 4 + 1))
    assert big.stat().st_size > MAX_TEXT_CHARS
    for command in (["decode", big, "-o", tmp_path / "x.mid"], ["check", big],
                    ["render", big, "-o", tmp_path / "x.wav"], ["plot", big, "-o", tmp_path / "x.png"]):
        assert_clean_error(run(*command), "16 MB a piece's token text may have")
    assert not list(tmp_path.glob("x.*"))
    with pytest.raises(mozart.MozartError, match="over the 16 MB"):
        mozart.check(big.read_text())
    note = " Pos_0 Prog_0 Pitch_60 Vel_80 Dur_24"
    at_cap = header + "Bar " * ((MAX_TEXT_CHARS - len(header) - len(note)) // 4 - 1) + "Bar" + note
    assert len(at_cap) <= MAX_TEXT_CHARS
    mozart.check(at_cap)  # at the cap the text is read as any other (many empty bars, then a note)


#: Commands given a path that is not there (a model folder, a dataset, a MIDI file; "MISSING" stands for it).
MISTYPED = {
    "generate -m": ["generate", "-m", "MISSING", "-o", "out"],
    "generate --prompt": ["generate", "--prompt", "MISSING", "-o", "out"],
    "infill": ["infill", "MISSING", "--bars", "1-2", "-o", "out"],
    "accompany": ["accompany", "MISSING", "--program", "33", "-o", "out"],
    "train": ["train", "MISSING", "-o", "out"],
    "finetune data": ["finetune", "BUILT_IN", "MISSING", "-o", "out"],
    "finetune model": ["finetune", "MISSING", "MISSING", "-o", "out"],
    "evaluate": ["evaluate", "MISSING", "-o", "out"],
    "evaluate -m": ["evaluate", "MISSING", "-m", "MISSING", "-o", "out"],
    "serve -m": ["serve", "-m", "MISSING"],
}


@pytest.mark.parametrize("command", list(MISTYPED))
def test_a_mistyped_path_fails_at_once_before_torch_loads(command, tmp_path):
    """A path that is not there is a one-line error before the command imports torch (which took 4-10 s
    on 2 cores before the error came), and nothing is written."""
    from mozart.models import default_model_dir

    missing = tmp_path / "no-such-thing"
    args = [str(missing) if a == "MISSING" else str(default_model_dir()) if a == "BUILT_IN" else a
            for a in MISTYPED[command]]
    result = cli_reporting_imports(*args, cwd=tmp_path)
    assert result.stdout.split() == ["1", "False", "False"], (result.stdout, result.stderr[-2000:])
    assert result.stderr.startswith(f"mozart: error: {missing}: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()
