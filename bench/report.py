"""Shared by the benchmark scripts: where the corpus is, and how tables reach docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


def default_corpus() -> Path:
    """$MOZART_TEST_CORPUS, else the shared development corpus beside the checkout."""
    env = os.environ.get("MOZART_TEST_CORPUS")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "midi" / "dev"


def midi_files(corpus: Path) -> list[Path]:
    """The corpus folder's MIDI files (.mid, .midi), sorted by name: what every benchmark reads."""
    return sorted(p for p in Path(corpus).iterdir() if p.suffix.lower() in (".mid", ".midi"))


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows: figures differ several-fold between
    the machines we run on (an Intel CPU with AMX and an AVX2-only AMD EPYC), so every table names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    from mozart.hardware import cpu_has_bf16

    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16"
    return f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} CPUs, {bf16}, Python {platform.python_version()}"


def package_version(name: str) -> str:
    return version(name)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section of docs/benchmarks.md marked ``bench:<name>``."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    section = f"{start}\n{body.strip()}\n\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by a script in `bench/`.\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def publish(name: str, body: str, write: bool = True) -> int:
    """Print a benchmark's table and, unless ``write`` is False (``--no-write``), put it in
    docs/benchmarks.md; the exit status for ``main``."""
    print(body)
    if write:
        write_section(name, body)
    return 0
