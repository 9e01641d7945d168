"""A folder of MIDI files -> train/valid/test token shards, vocabulary and tokenizer.

Each file is read, encoded and (optionally) cut into segments in a supervised worker
process (see workers.py), so a file that fails, hangs or crashes its process is listed
in ``errors.tsv`` and the build goes on.  Records stream in file order to a staging
file; in memory stay only a digest (exact duplicates are dropped) and a 256-byte
fingerprint per distinct piece.  Near-duplicates (variants of one tune: transposed,
re-timed, re-voiced, a bar changed; fingerprint.py) are grouped and each group goes
whole to one split, then the records are dealt into the split files.  Everything is
built in a staging folder beside the output, under a lock, and moved into place only
when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import MozartError, check_range
from .events import Piece, bar_layout, content_digest, slice_steps, transpose, validate_grid
from .files import check_output_dir, make_parents, write_atomic
from .fingerprint import SHINGLE, THRESHOLD, group_near_duplicates, signature
from .interrupts import interrupts_deferred
from .tokenizer import STYLES, piece_ids, save_tokenizer
from .tokens import FORMAT_VERSION, bar_indices, count_notes, encode_piece, vocabulary
from .tokenstore import StoreWriter
from .workers import MAX_TIMEOUT, MAX_WORKERS, run_tasks

SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi", ".smf")
#: Smallest accepted --max-tokens: a header and a bar with one note.
MIN_SEGMENT_TOKENS = 16
#: Test-only hooks: a file whose name equals the variable's value kills its worker process
#: (MOZART_TEST_CRASH_ON) or hangs it (MOZART_TEST_HANG_ON), to exercise the supervisor.
CRASH_HOOK, HANG_HOOK = "MOZART_TEST_CRASH_ON", "MOZART_TEST_HANG_ON"


@dataclass(frozen=True)
class DatasetConfig:
    """How a dataset is built (every field is a CLI option of ``mozart dataset``)."""

    valid: float = 0.05  # share of distinct pieces in the valid split
    test: float = 0.05  # share of distinct pieces in the test split
    seed: int = 0  # changes which pieces land in valid/test
    max_tokens: int | None = None  # cut pieces at bar lines into segments of at most this many tokens
    transpose: tuple[int, int] | None = None  # inclusive semitone range of extra train copies, e.g. (-5, 6)
    grid: int = 24  # steps per quarter note
    workers: int = max(1, os.cpu_count() or 1)  # worker processes
    timeout: float = 60.0  # seconds a single file may take before it is reported and skipped
    # works (near-duplicate groups) each style keeps in test at least, within a quarter of its works (0: off)
    min_test_works: int = 0

    def validate(self) -> None:
        validate_grid(self.grid)
        check_range("--valid", self.valid, 0, 1)
        check_range("--test", self.test, 0, 1)
        check_range("--seed", self.seed, -(2**63), 2**63 - 1, integer=True)
        check_range("--min-test-works", self.min_test_works, 0, 2**31 - 1, integer=True)
        if not (0 <= self.valid < 1 and 0 <= self.test < 1 and self.valid + self.test < 1):
            raise MozartError(f"--valid {self.valid} and --test {self.test} must be in [0, 1) with a sum below 1")
        if self.max_tokens is not None and self.max_tokens < MIN_SEGMENT_TOKENS:
            raise MozartError(f"--max-tokens {self.max_tokens} is too small (at least {MIN_SEGMENT_TOKENS})")
        if self.transpose is not None:
            lo, hi = self.transpose
            if not (-12 <= lo <= hi <= 12):
                raise MozartError(f"--transpose {lo}..{hi}: expected a range within -12..12 with low <= high")
        check_range("--workers", self.workers, 1, MAX_WORKERS, integer=True)
        check_range("--timeout", self.timeout, 0, MAX_TIMEOUT, low_open=True)


def split_of(digest: str, config: DatasetConfig) -> tuple[str, float]:
    """The split of a piece, from its content digest and the seed alone (so it does not
    change when other files join the folder), and the uniform number that chose it."""
    u = int(hashlib.sha256(f"{config.seed}:{digest}".encode()).hexdigest()[:16], 16) / 2**64
    if u < config.test:
        return "test", u
    if u < config.test + config.valid:
        return "valid", u
    return "train", u


def segments(piece: Piece, max_tokens: int | None) -> tuple[list[str], int]:
    """Cut ``piece`` at bar lines into self-contained texts of at most ``max_tokens`` tokens.

    Each segment restates the time signature and tempo in force where it starts and names
    its first program, so it checks and decodes on its own.  Returns the segments that
    hold notes and the number of bars dropped because one bar alone exceeds the limit.
    """
    text = encode_piece(piece)
    words = text.split()
    if max_tokens is None or len(words) <= max_tokens:
        return [text], 0
    bar_word = bar_indices(words)
    bar_cost = [b - a for a, b in zip(bar_word, bar_word[1:] + [len(words)])]
    header = bar_word[0] + 1  # header words, plus a Prog that a segment may need to restate
    starts, _ = bar_layout(piece)
    n_bars, out, dropped, b = len(starts), [], 0, 0
    while b < n_bars:
        e, cost = b, header
        while e < n_bars and cost + bar_cost[e] <= max_tokens:
            cost += bar_cost[e]
            e += 1
        e = max(e, b + 1)
        while True:  # the estimate can be a little short: shrink until the text fits
            stop = int(starts[e]) if e < n_bars else None
            seg = encode_piece(slice_steps(piece, int(starts[b]), stop))
            if len(seg.split()) <= max_tokens or e == b + 1:
                break
            e -= 1
        if len(seg.split()) > max_tokens:
            dropped += 1
        elif count_notes(seg.split()):
            out.append(seg)
        b = e
    return out, dropped


@dataclass
class FileResult:
    """What a worker learned about one file."""

    n_notes: int
    digest: str
    signature: np.ndarray | None  # fingerprint.signature: near-duplicates share a split
    segments: list[str]  # the piece's own segments
    augmented: list[tuple[int, list[str]]]  # (semitones, segments) of transposed copies (kept for train only)
    dropped_bars: int


def process_file(task: tuple[str, str, DatasetConfig]) -> FileResult:
    """Worker: read, quantize, split, segment and augment one file."""
    path, source, config = task
    name = Path(path).name
    if os.environ.get(CRASH_HOOK) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(HANG_HOOK) == name:
        time.sleep(10**6)
    from .midi import quantize, read_midi  # the worker reads MIDI; the parent never needs to

    try:
        piece = quantize(read_midi(path), config.grid)
    except MozartError as e:  # errors.tsv names the file already: keep only the reason
        raise MozartError(str(e).removeprefix(f"{path}: ")) from None
    if piece.n_notes == 0:
        return FileResult(0, "", None, [], [], 0)
    own, dropped = segments(piece, config.max_tokens)
    augmented = []
    if config.transpose is not None:  # the split is decided later, by group: make the copies for every piece
        for k in range(config.transpose[0], config.transpose[1] + 1):
            shifted = transpose(piece, k) if k else None
            if shifted is not None:
                augmented.append((k, segments(shifted, config.max_tokens)[0]))
    return FileResult(piece.n_notes, content_digest(piece), signature(piece), own, augmented, dropped)


def find_midi_files(folder: Path) -> list[Path]:
    """MIDI files below ``folder`` (recursively, hidden folders skipped), sorted by path."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if f.lower().endswith(MIDI_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _record(record_id: str, source: str, text: str, style: str | None = None) -> str:
    record = {"id": record_id, "source": source, "tokens": text} | ({"style": style} if style else {})
    return json.dumps(record, ensure_ascii=False) + "\n"


#: Share of labelled records whose token store entry leaves the style token out, so that a
#: model also learns to write without one ("any style").
STYLE_FREE_SHARE = 0.2


def corpus_styles(midi_dir: Path) -> dict[str, str]:
    """Style of each MIDI file, from ``corpus.tsv`` beside them (columns ``midi_file`` and
    ``style``, as ``mozart corpus`` writes it); empty when there is no such file or column."""
    path = Path(midi_dir) / "corpus.tsv"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if "midi_file" not in header or "style" not in header:
        return {}
    name, column = header.index("midi_file"), header.index("style")
    styles = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) <= max(name, column) or not cells[column]:
            continue
        if cells[column] not in STYLES:
            raise MozartError(f"{path}:{number}: style {cells[column]!r}: expected one of {', '.join(STYLES)}")
        styles[cells[name]] = cells[column]
    return styles


def _style_free(record_id: str) -> bool:
    """Whether a labelled record is stored without its style token (a fixed share, by id)."""
    return int(hashlib.sha1(record_id.encode()).hexdigest()[:8], 16) < STYLE_FREE_SHARE * 2**32


def _prepare_output(out_dir: Path) -> Path:
    """Check the output folder again (under the lock, which made its parents) and return the path
    of a fresh staging folder beside it (created by the caller, inside its clean-up)."""
    check_output_dir(out_dir, "stats.json", flag=None)
    parent = out_dir.parent
    for stale in parent.glob(f".{out_dir.name}.partial-*"):  # left by an interrupted build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    return parent / f".{out_dir.name}.partial-{os.getpid()}"


@contextmanager
def output_lock(out_dir: Path):
    """Hold an exclusive lock on ``out_dir`` for the whole build, so two builds into one folder
    cannot interleave: the second fails at once with a clear error.  The lock file
    (``.NAME.lock`` beside the folder) is removed when the build ends."""
    make_parents(out_dir)
    path = out_dir.parent / f".{out_dir.name}.lock"
    fd = None
    try:
        with interrupts_deferred():  # a Ctrl-C while locking still removes the lock file
            fd = _lock_file(path, out_dir)
        yield
    finally:
        if fd is not None:
            path.unlink(missing_ok=True)
            os.close(fd)


def _lock_file(path: Path, out_dir: Path) -> int:
    """Open and exclusively lock ``path``; MozartError naming ``out_dir`` when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MozartError(f"{out_dir}: another build is writing to this folder (lock {path.name}); "
                              "wait for it to finish or choose another -o") from None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished staging folder into place (the old dataset, if any, goes last)."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def build_dataset(midi_dir: Path, out_dir: Path, config: DatasetConfig, progress: bool = True) -> dict:
    """Build a dataset from ``midi_dir`` into ``out_dir``; return its statistics."""
    config.validate()
    midi_dir, out_dir = Path(midi_dir), Path(out_dir)
    if not midi_dir.is_dir():
        raise MozartError(f"{midi_dir}: no such folder")
    files = find_midi_files(midi_dir)
    if not files:
        raise MozartError(f"{midi_dir}: no MIDI files (looked for {', '.join(MIDI_SUFFIXES)})")
    check_output_dir(out_dir, "stats.json", flag=None)
    with output_lock(out_dir):
        staging = _prepare_output(out_dir)
        try:
            staging.mkdir()
            stats = _build(files, midi_dir, staging, config, progress)
            with interrupts_deferred():  # never half-published: the old dataset or the new one, whole
                _publish(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return stats


def _build(files: list[Path], midi_dir: Path, staging: Path, config: DatasetConfig, progress: bool) -> dict:
    """Read every file (in workers), keep distinct pieces, group near-duplicates, write the splits."""
    sources = [p.relative_to(midi_dir).as_posix() for p in files]
    styles = corpus_styles(midi_dir)
    tasks = [(str(p), s, config) for p, s in zip(files, sources)]
    errors: list[tuple[str, str]] = []
    seen: dict[bytes, str] = {}  # digest prefix -> first source with that content
    duplicates: list[tuple[str, str]] = []
    dropped_bars = 0
    kept: list[tuple[str, str, np.ndarray | None]] = []  # (source, digest, signature) of each distinct piece
    # Records stream to one file, tagged with their piece, while the files are read (memory stays flat);
    # once every piece's group is known they are dealt into the split files.
    pool = staging / "records.tmp"
    with open(pool, "w", encoding="utf-8") as out, \
            closing(run_tasks(process_file, tasks, config.workers, config.timeout)) as outcomes:
        for outcome in tqdm(outcomes, total=len(tasks), unit="file", desc="dataset", disable=not progress):
            source = outcome.task[1]
            if not outcome.ok:
                errors.append((source, outcome.reason))
                continue
            result: FileResult = outcome.value
            if result.n_notes == 0:
                errors.append((source, "no notes"))
                continue
            key = bytes.fromhex(result.digest[:32])
            if key in seen:
                duplicates.append((source, seen[key]))
                continue
            seen[key] = source
            dropped_bars += result.dropped_bars
            piece = len(kept)
            kept.append((source, result.digest, result.signature))
            for i, text in enumerate(result.segments):
                out.write(f"{piece}\t0\t" + _record(f"{source}#{i}", source, text, styles.get(source)))
            for k, texts in result.augmented:
                for i, text in enumerate(texts):
                    out.write(f"{piece}\t1\t" + _record(f"{source}#{i}@t{k:+d}", source, text, styles.get(source)))
    groups = group_near_duplicates([sig for _, _, sig in kept])
    split_of_piece, moved = assign_splits([digest for _, digest, _ in kept], groups, config,
                                          [styles.get(source) for source, _, _ in kept])
    with open(pool, encoding="utf-8") as records:
        shards = {split: open(staging / f"{split}.jsonl", "w", encoding="utf-8") for split in SPLITS}
        try:
            for line in records:
                piece, augmented, record = line.split("\t", 2)
                split = split_of_piece[int(piece)]
                if augmented == "0" or split == "train":  # transposed copies are for training only
                    shards[split].write(record)
        finally:
            for f in shards.values():
                f.close()
    pool.unlink()
    moved_sources = {kept[i][0]: split for i, split in moved.items()}
    return _finish(staging, config, len(files), errors, duplicates, dropped_bars, moved_sources,
                   near_duplicate_summary([source for source, _, _ in kept], groups))


def assign_splits(digests: list[str], groups: list[int], config: DatasetConfig,
                  styles: list[str | None] | None = None) -> tuple[list[str], dict[int, str]]:
    """The split of every piece: each group goes whole to the split its smallest digest picks
    (``split_of``), so a group's split does not change when unrelated files join the folder.

    With at least 3 groups, valid and test (when asked for) each get one: an empty one takes
    the train group with the smallest split number.  With ``config.min_test_works`` and the
    pieces' ``styles``, a style whose test split holds fewer groups (works) than that takes
    train groups of the style, smallest split number first, up to a quarter of the style's
    groups in test (a group's style is its smallest digest's piece's): a per-style evaluation
    against two works measures those works, not the style.  Returns the splits and {piece:
    split} for the pieces so moved."""
    key: dict[int, str] = {}
    style_of: dict[int, str | None] = {}
    for i, (digest, group) in enumerate(zip(digests, groups)):
        if group not in key or digest < key[group]:
            key[group] = digest
            style_of[group] = styles[i] if styles is not None else None
    chosen = {group: split_of(digest, config) for group, digest in key.items()}
    moved_groups: dict[int, str] = {}
    present = {split for split, _ in chosen.values()}
    wanted = [s for s in ("test", "valid") if s not in present and getattr(config, s) > 0]
    if len(chosen) >= 3 and wanted:
        train_groups = sorted((u, group) for group, (split, u) in chosen.items() if split == "train")
        for (_, group), split in zip(train_groups, wanted):
            moved_groups[group] = split
    if config.min_test_works > 0 and config.test > 0:
        moved_groups.update(_works_for_test(chosen, moved_groups, style_of, config.min_test_works))
    splits = [moved_groups.get(g, chosen[g][0]) for g in groups]
    return splits, {i: moved_groups[g] for i, g in enumerate(groups) if g in moved_groups}


def _works_for_test(chosen: dict[int, tuple[str, float]], moved: dict[int, str], style_of: dict[int, str | None],
                    minimum: int) -> dict[int, str]:
    """The train groups to move to test so that each style has ``minimum`` groups there, or a quarter of its
    groups when it has fewer than 4 x ``minimum``; smallest split number first."""
    split = {group: moved.get(group, s) for group, (s, _) in chosen.items()}
    extra: dict[int, str] = {}
    for style in sorted({s for s in style_of.values() if s}):
        mine = [g for g, s in style_of.items() if s == style]
        target = min(minimum, len(mine) // 4)
        in_test = sum(split[g] == "test" for g in mine)
        train = sorted((chosen[g][1], g) for g in mine if split[g] == "train")
        for _, group in train[:max(0, target - in_test)]:
            extra[group] = "test"
    return extra


def near_duplicate_summary(sources: list[str], groups: list[int], examples: int = 20) -> dict:
    """How the distinct pieces grouped: counts, the largest group, and a few groups as examples."""
    members: dict[int, list[str]] = {}
    for source, group in zip(sources, groups):
        members.setdefault(group, []).append(source)
    shared = sorted((m for m in members.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))
    return {"method": f"MinHash of the top line's {SHINGLE}-interval n-grams, similarity >= {THRESHOLD} "
                      "(fingerprint.py), joined transitively",
            "groups": len(members), "largest_group": max((len(m) for m in members.values()), default=0),
            "groups_with_variants": len(shared), "pieces_in_those_groups": sum(len(m) for m in shared),
            "examples": shared[:examples]}


def _finish(staging, config, n_files, errors, duplicates, dropped_bars, moved, near_duplicates: dict) -> dict:
    """Count what was written and write each split's token store (one streaming pass), then write
    vocab, tokenizer, errors, stats."""
    vocab: Counter = Counter()
    styles: Counter = Counter()
    programs: Counter = Counter()  # training records per program: what a model trained here knows (standins.py)
    per_split = {}
    for split in SPLITS:
        pieces, records, notes, tokens = set(), 0, 0, 0
        with open(staging / f"{split}.jsonl", encoding="utf-8") as f, StoreWriter(staging, split) as store:
            for line in f:
                record = json.loads(line)
                words = record["tokens"].split()
                vocab.update(words)
                pieces.add(record["source"])
                records += 1
                tokens += len(words)
                record_notes = count_notes(words)
                notes += record_notes
                style = record.get("style")
                styles[style or "none"] += 1
                if split == "train":
                    programs.update({int(w[5:]) for w in words if w.startswith("Prog_")})
                stored_style = style if style and not _style_free(record["id"]) else None
                store.add(piece_ids(words, config.grid, stored_style), record_notes)
        per_split[split] = {"pieces": len(pieces), "records": records, "notes": notes, "tokens": tokens}
    order = vocabulary(config.grid).index  # vocabulary order, for a stable vocab.json
    counts = {w: vocab[w] for w in sorted(vocab, key=order.__getitem__)}
    vocab_json = {"format_version": FORMAT_VERSION, "grid": config.grid, "unique_tokens": len(counts), "counts": counts}
    write_atomic(staging / "vocab.json", json.dumps(vocab_json, indent=1) + "\n")
    save_tokenizer(staging, config.grid, programs=sorted(programs))
    lines = ["file\treason\n"] + [f"{f}\t{' '.join(r.split())}\n" for f, r in sorted(errors)]
    write_atomic(staging / "errors.tsv", "".join(lines))
    stats = {
        "files": n_files,
        "failed_files": len(errors),
        "duplicate_files": len(duplicates),
        "duplicates": [{"file": f, "same_as": s} for f, s in duplicates],
        "pieces": sum(v["pieces"] for v in per_split.values()),
        "records": sum(v["records"] for v in per_split.values()),
        "notes": sum(v["notes"] for v in per_split.values()),
        "tokens": sum(v["tokens"] for v in per_split.values()),
        "bars_dropped_over_max_tokens": dropped_bars,
        "moved_to_fill_splits": moved,
        "near_duplicates": near_duplicates,
        "styles": dict(sorted(styles.items())),
        "train_records_per_program": {str(p): programs[p] for p in sorted(programs)},
        "splits": per_split,
        "config": {k: v for k, v in asdict(config).items() if k not in ("workers", "timeout")},
    }
    # stats.json is the dataset's completion mark: written last, inside the staging folder
    write_atomic(staging / "stats.json", json.dumps(stats, indent=1) + "\n")
    return stats
