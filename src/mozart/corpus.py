"""Export the public-domain part of the corpus that the ``music21`` package ships to MIDI.

``pip install mozart[corpus]`` brings music21; then ``mozart corpus music21 -o midi/``
gives a real training corpus on any machine with pip alone.  Each corpus file is
converted in a supervised worker process (see workers.py): one that fails or takes
longer than the timeout is listed in ``errors.tsv`` and the export goes on.  Files
already exported are kept, so an interrupted export resumes where it stopped.

Licensing: music21's corpus carries per-work terms (``music21/corpus/license.txt``).
The subsets below hold only works whose compositions are in the public domain and whose
directories carry no restriction of their own; see docs/datasets.md.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import MozartError
from .midi import write_atomic
from .workers import run_tasks

#: Corpus folders of each subset.  Bach's chorales (encodings by the music21 project);
#: folk tunes from collections printed before 1926 (Aird's Airs 1782-1797, O'Neill's
#: Music of Ireland 1903, Ryan's Mammoth Collection 1883), in ABC transcriptions.
#: Left out everywhere: essenFolksong (non-commercial permission only),
#: nottingham-dataset, leadSheet, miscFolk, theoryExercises, demos (terms unclear), and
#: schoenberg and webern (compositions still under copyright).
CHORALES = ("bach",)
FOLK = ("airdsAirs", "oneills1850", "ryansMammoth")
CLASSICAL = (
    "beach", "beethoven", "chopin", "ciconia", "corelli", "cpebach", "handel", "haydn", "johnson_j_r", "joplin",
    "josquin", "liliuokalani", "luca", "lusitano", "monteverdi", "mozart", "palestrina", "schubert",
    "schumann_clara", "schumann_robert", "trecento", "verdi", "weber",
)
SUBSETS = {"chorales": CHORALES, "folk": FOLK, "all": CHORALES + FOLK + CLASSICAL}
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mei", ".mid")
#: Seconds one corpus file (a score, or an ABC book of up to a few hundred tunes) may take.
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class ExportTask:
    corpus_file: str  # absolute path inside music21's corpus
    relative: str  # path relative to the corpus root, e.g. "bach/bwv66.6.mxl"
    stem: str  # output path without ".mid", e.g. "bach/bwv66.6"
    out_dir: str


def corpus_root() -> Path:
    """music21's corpus folder, or a MozartError saying how to get it."""
    try:
        from music21 import corpus
    except ImportError:
        raise MozartError("music21 is not installed: pip install 'mozart[corpus]' (or pip install music21)") from None
    return Path(corpus.__file__).parent


def list_works(subset: str) -> list[tuple[Path, str]]:
    """(absolute path, path relative to the corpus) of every file of ``subset``, sorted."""
    if subset not in SUBSETS:
        raise MozartError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    root = corpus_root()
    works = []
    for folder in SUBSETS[subset]:
        for dirpath, dirs, files in os.walk(root / folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            works += [Path(dirpath) / f for f in files if f.lower().endswith(SCORE_SUFFIXES)]
    return sorted(((p, p.relative_to(root).as_posix()) for p in works), key=lambda w: w[1])


def output_stems(relatives: list[str]) -> list[str]:
    """'bach/bwv66.6.mxl' -> 'bach/bwv66.6'; where two corpus files share a stem (as
    bach/bwv277.krn and bach/bwv277.mxl do) both keep their suffix: 'bach/bwv277.krn'."""
    stems = [r.rsplit(".", 1)[0] for r in relatives]
    shared = {s for s, n in Counter(stems).items() if n > 1}
    return [r if s in shared else s for r, s in zip(relatives, stems)]


def export_file(task: ExportTask) -> list[str]:
    """Worker: convert one corpus file (a score, or a book of tunes) to MIDI files.

    Returns the written files, relative to the output folder.  A book whose every tune
    fails raises; single failed tunes are skipped and the rest written.
    """
    import music21  # imported in the worker only: it is slow to import and optional

    parsed = music21.converter.parse(task.corpus_file)
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    stem = task.stem
    written, last_error = [], None
    for i, score in enumerate(scores):
        name = f"{stem}.mid" if len(scores) == 1 else f"{stem}-{i + 1:03d}.mid"
        target = Path(task.out_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = music21.midi.translate.streamToMidiFile(score).writestr()
        except Exception as e:  # one bad tune must not lose the whole book
            last_error = e
            continue
        write_atomic(target, data)
        written.append(name)
    if not written:
        raise MozartError(f"no score could be converted: {last_error}")
    return written


def export_music21(out_dir: Path, subset: str = "chorales", limit: int | None = None, workers: int = 1,
                   timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> dict:
    """Export ``subset`` of music21's corpus to ``out_dir`` as MIDI files; return a summary.

    Writes ``corpus.tsv`` (MIDI file, corpus source) and ``errors.tsv`` (corpus file,
    reason) beside the MIDI files.  Corpus files whose MIDI files exist are skipped.
    """
    works = list_works(subset)
    if limit is not None:
        if limit < 1:
            raise MozartError("--limit must be at least 1")
        works = works[:limit]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MozartError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    exported: dict[str, list[str]] = {}  # corpus stem -> MIDI files already written for it
    for p in out_dir.rglob("*.mid"):
        name = p.relative_to(out_dir).as_posix()
        stem = name[: -len(".mid")]
        exported.setdefault(re.sub(r"-\d{3}$", "", stem), []).append(name)
        exported.setdefault(stem, []).append(name)
    rows, errors, todo = [], [], []
    for (path, relative), stem in zip(works, output_stems([r for _, r in works])):
        already = sorted(set(exported.get(stem, [])))
        if already:
            rows += [(name, relative) for name in already]
        else:
            todo.append(ExportTask(str(path), relative, stem, str(out_dir)))
    outcomes = run_tasks(export_file, todo, workers, timeout)
    for outcome in tqdm(outcomes, total=len(todo), unit="work", desc="corpus", disable=not progress):
        if outcome.ok:
            rows += [(name, outcome.task.relative) for name in outcome.value]
        else:
            errors.append((outcome.task.relative, outcome.reason))
    rows.sort()
    write_atomic(out_dir / "corpus.tsv", "midi_file\tmusic21_source\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    write_atomic(out_dir / "errors.tsv", "music21_source\treason\n" + "".join(f"{a}\t{b}\n" for a, b in sorted(errors)))
    return {"subset": subset, "works": len(works), "midi_files": len(rows), "failed": len(errors),
            "skipped_existing": len(works) - len(todo)}
