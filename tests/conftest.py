"""Shared fixtures: the MIDI files the tests run on.

``MOZART_TEST_CORPUS`` names a folder of MIDI files (CI sets it to the shared dev corpus);
without it the tests use the small public-domain/MIT/Apache files in tests/data.
``MOZART_TEST_EDGE`` names the folder of broken and odd MIDI files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests run 250 examples; `HYPOTHESIS_PROFILE=stress` runs 5000 (about a minute each).
settings.register_profile("mozart", max_examples=250, deadline=None)
settings.register_profile("stress", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mozart"))

# A shell starts background jobs (`make test &`, `(pytest ...) &`) with SIGINT ignored, and children
# inherit that: the tests that press Ctrl-C on a `mozart` process would then press it on a process
# that ignores it, as no user's terminal would.  Give the test session (and so its children, which get
# the default action at exec) a normal SIGINT.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

DATA = Path(__file__).parent / "data"
MIDI_SUFFIXES = {".mid", ".midi", ".rmi", ".kar"}
_covered: dict[str, set[str]] = {}


def corpus_dir() -> Path:
    env = os.environ.get("MOZART_TEST_CORPUS")
    if env and not Path(env).is_dir():
        raise RuntimeError(f"MOZART_TEST_CORPUS={env} is not a folder")
    if not env and os.environ.get("CI") == "true":
        raise RuntimeError("CI=true but MOZART_TEST_CORPUS is not set: the tests would run on tests/data alone")
    return Path(env) if env else DATA


def corpus_files() -> list[Path]:
    """MIDI files of the test corpus (sorted), or tests/data when none is configured."""
    return sorted(p for p in corpus_dir().iterdir() if p.suffix.lower() in MIDI_SUFFIXES)


def edge_files() -> list[Path]:
    env = os.environ.get("MOZART_TEST_EDGE")
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "midi" / "edge"
    folder = Path(env) if env else default
    if not folder.is_dir():
        if os.environ.get("CI") == "true":  # in CI a missing corpus is a failure, never a silent skip
            raise RuntimeError(f"CI=true but the edge corpus {folder} is missing (set MOZART_TEST_EDGE)")
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() not in {".md", ".tsv"})


def link_all(files: list[Path], folder: Path) -> Path:
    """``folder`` holding a symlink to each of ``files`` (a corpus subset without copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    return folder


#: The CLI run in-process by a script that then prints its exit code and whether torch and transformers
#: were imported: what a command loaded before it failed.
_CLI_REPORTING_IMPORTS = ("import sys, mozart.cli\n"
                          "code = 0\n"
                          "try:\n"
                          "    mozart.cli.main(sys.argv[1:])\n"
                          "except SystemExit as e:\n"
                          "    code = e.code or 0\n"
                          "print(code, 'torch' in sys.modules, 'transformers' in sys.modules)\n")


def cli_reporting_imports(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``mozart ARGS`` in a new process; the last line of its stdout is "<exit code> <torch imported>
    <transformers imported>" (after what the command itself printed)."""
    return subprocess.run([sys.executable, "-c", _CLI_REPORTING_IMPORTS, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def styleless_model(folder: Path) -> Path:
    """A random tiny GPT-2 whose outputs end at the music words (as the first built-in model's did:
    made before the control specials), saved with the grid-24 tokenizer."""
    from mozart.models import SpecialIds, build_model
    from mozart.tokenizer import music_token_count, save_tokenizer

    ids = SpecialIds(pad=0, bos=1, eos=2, vocab_size=music_token_count(24))
    folder.mkdir(parents=True, exist_ok=True)
    build_model("gpt2", "tiny", ids, 256).save_pretrained(str(folder))
    save_tokenizer(folder, 24)
    return folder


def mark_covered(suite: str, path: Path) -> None:
    """Record that ``suite`` checked ``path``; the terminal summary reports the counts."""
    _covered.setdefault(suite, set()).add(path.name)


@pytest.fixture
def covered():
    return mark_covered


def pytest_terminal_summary(terminalreporter):
    for suite, names in sorted(_covered.items()):
        source = "the edge folder" if "edge" in suite else corpus_dir()
        terminalreporter.write_line(f"{suite}: covered {len(names)} files from {source}")
