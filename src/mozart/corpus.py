"""Export the public-domain part of the corpus that the ``music21`` package ships to MIDI.

``pip install mozart[corpus]`` brings music21; then ``mozart corpus music21 -o midi/``
gives a real training corpus on any machine with pip alone.  Each piece (a corpus file,
or one tune of an ABC book) is converted in a supervised worker process (see
workers.py): one that fails or takes longer than the timeout is listed in
``errors.tsv`` and the export goes on.  Pieces already exported are kept, so an
interrupted export resumes where it stopped.

Licensing: music21's corpus carries per-work terms (``music21/corpus/license.txt``).
The subsets below hold only works whose compositions are in the public domain and whose
directories carry no restriction of their own; see docs/datasets.md.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import MozartError, check_range
from .files import write_atomic
from .workers import MAX_TIMEOUT, MAX_WORKERS, run_tasks

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
#: The style label of each collection (tokenizer.STYLES), written to corpus.tsv for the dataset.
#: Bach's folder is his chorales; medieval polyphony (Ciconia, the trecento) counts as renaissance.
STYLE_OF_COLLECTION = {
    "bach": "chorale", **{folk: "folk" for folk in FOLK},
    **{c: "renaissance" for c in ("ciconia", "josquin", "luca", "lusitano", "monteverdi", "palestrina", "trecento")},
    **{c: "baroque" for c in ("corelli", "cpebach", "handel")},
    **{c: "classical" for c in ("beethoven", "haydn", "mozart")},
    **{c: "romantic" for c in ("beach", "chopin", "johnson_j_r", "joplin", "liliuokalani", "schubert",
                               "schumann_clara", "schumann_robert", "verdi", "weber")},
}
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mei", ".mid")
#: Seconds one piece (a score, or one tune of an ABC book) may take to convert.
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class ExportTask:
    """One piece to convert: a whole corpus file, or one tune of an ABC book."""

    corpus_file: str  # absolute path inside music21's corpus
    relative: str  # path relative to the corpus root, e.g. "bach/bwv66.6.mxl"
    midi_name: str  # output file relative to the output folder, e.g. "bach/bwv66.6.mid"
    abc_tune: str | None = None  # the tune's ABC text (with the book's header) for books


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


def split_abc_book(text: str) -> list[str]:
    """The tunes of an ABC file, each with the file header (lines before the first X:)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if len(starts) <= 1:
        return [text]
    header = "".join(lines[: starts[0]])
    bounds = starts + [len(lines)]
    return [header + "".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]


def list_pieces(subset: str) -> list[ExportTask]:
    """Every piece of ``subset`` as an export task (without output folder), sorted: one per
    corpus file, or one per tune for ABC books (``book-007.mid``)."""
    works = list_works(subset)
    tasks = []
    for (path, relative), stem in zip(works, output_stems([r for _, r in works])):
        tunes = split_abc_book(path.read_text(encoding="utf-8", errors="replace")) if path.suffix == ".abc" else [None]
        for i, tune in enumerate(tunes):
            name = f"{stem}.mid" if len(tunes) == 1 else f"{stem}-{i + 1:03d}.mid"
            tasks.append(ExportTask(str(path), relative, name, tune if len(tunes) > 1 else None))
    return tasks


def drop_grace_notes(score) -> int:
    """Remove the notes and chords of no duration (grace notes) from a music21 score; return how many.

    music21 writes each as a note-on and a note-off at the same tick, and symusic (0.6.0; its issue #38)
    reads such a note-off as nothing, so the note sounds until the next note-off of its pitch, and each
    later note of that pitch takes the note-off of the one after it.  In Beethoven's Grosse Fuge (op. 133)
    172 grace notes made notes up to 773 quarters long; in the built-in model's dataset 2.9% of the
    classical notes (in 66% of its segments) rang more than 4 bars past their segment's end.  A grace
    note takes no metrical time, so dropping it moves no other note."""
    zero = [n for n in score.recurse().notes if n.duration.quarterLength == 0]
    for note in zero:
        score.remove(note, recurse=True)
    return len(zero)


def export_piece(task: tuple[ExportTask, str]) -> str:
    """Worker: convert one piece to a MIDI file in the output folder; return its name."""
    import music21  # imported in the worker only: it is slow to import and optional

    piece, out_dir = task
    if piece.abc_tune is not None:
        parsed = music21.converter.parse(piece.abc_tune, format="abc")
    else:
        parsed = music21.converter.parse(piece.corpus_file)
    if isinstance(parsed, music21.stream.Opus):  # a single-tune book still parses as an Opus
        parsed = parsed.scores[0]
    drop_grace_notes(parsed)
    data = music21.midi.translate.streamToMidiFile(parsed).writestr()
    target = Path(out_dir) / piece.midi_name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    return piece.midi_name


def export_music21(out_dir: Path, subset: str = "chorales", limit: int | None = None, workers: int = 1,
                   timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> dict:
    """Export ``subset`` of music21's corpus to ``out_dir`` as MIDI files; return a summary.

    Writes ``corpus.tsv`` (MIDI file, corpus source, style) and ``errors.tsv`` (MIDI file that
    could not be made, reason) beside the MIDI files.  Pieces whose MIDI file exists are
    skipped.
    """
    check_range("--workers", workers, 1, MAX_WORKERS, integer=True)
    check_range("--timeout", timeout, 0, MAX_TIMEOUT, low_open=True)
    if limit is not None:
        check_range("--limit", limit, 1, 2**31 - 1, integer=True)
    pieces = list_pieces(subset)
    if limit is not None:
        pieces = pieces[:limit]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MozartError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, errors, todo = [], [], []
    for piece in pieces:
        if (out_dir / piece.midi_name).is_file():  # exported by an earlier run
            rows.append((piece.midi_name, piece.relative))
        else:
            todo.append((piece, str(out_dir)))
    with closing(run_tasks(export_piece, todo, workers, timeout)) as outcomes:  # Ctrl-C stops the workers
        for outcome in tqdm(outcomes, total=len(todo), unit="piece", desc="corpus", disable=not progress):
            piece = outcome.task[0]
            if outcome.ok:
                rows.append((piece.midi_name, piece.relative))
            else:
                errors.append((piece.midi_name, outcome.reason))
    rows.sort()
    table = "".join(f"{a}\t{b}\t{STYLE_OF_COLLECTION[b.split('/')[0]]}\n" for a, b in rows)
    write_atomic(out_dir / "corpus.tsv", "midi_file\tmusic21_source\tstyle\n" + table)
    write_atomic(out_dir / "errors.tsv", "midi_file\treason\n" + "".join(f"{a}\t{b}\n" for a, b in sorted(errors)))
    return {"subset": subset, "pieces": len(pieces), "midi_files": len(rows), "failed": len(errors),
            "skipped_existing": len(pieces) - len(todo)}
