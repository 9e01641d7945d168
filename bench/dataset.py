"""Dataset-build benchmark: throughput with 1 and 2 workers, and peak memory as the corpus grows.

    python bench/dataset.py [--corpus DIR] [--no-write]

Runs `mozart dataset` (a real subprocess, workers included) on the corpus with 1 and 2
workers, and on 4x the corpus (four distinct variants of every file, so deduplication
does not shrink it) to show that memory stays flat.  Peak memory is the largest total
RSS of the build's whole process tree, sampled every 20 ms.  For reference, MidiTok's
`tokenize_dataset` (REMI, one process) tokenizes the same files in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import symusic

from report import default_corpus, machine, package_version, publish


def peak_rss_run(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak total RSS of its process tree in MiB)."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    return wall, peak / 2**20


def variants(corpus: Path, out: Path, copies: int) -> int:
    """Write ``copies`` distinct variants of every corpus file into ``out``: variant k has
    its melodic notes transposed by k semitones (or velocities offset by k where a
    transposition would leave 0..127).  Returns the number of files written."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in sorted(corpus.iterdir()):
        if path.suffix.lower() not in {".mid", ".midi"}:
            continue
        for k in range(copies):
            score = symusic.Score(str(path))
            for track in score.tracks:
                if not len(track.notes) or k == 0:
                    continue
                notes = track.notes.numpy()
                pitch = notes["pitch"].astype(np.int64) + (0 if track.is_drum else k)
                velocity = notes["velocity"].astype(np.int64)
                if pitch.max() > 127 or track.is_drum:
                    pitch = notes["pitch"].astype(np.int64)
                    velocity = np.clip(velocity - k, 1, 127)
                track.notes = symusic.Note.from_numpy(notes["time"], notes["duration"],
                                                      pitch.astype(np.int8), velocity.astype(np.int8))
            score.dump_midi(str(out / f"v{k}_{path.stem}.mid"))
            n += 1
    return n


def mozart_build(midi: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "mozart", "dataset", str(midi), "-o", str(out), "--workers", str(workers), "-q"]
    wall, peak = peak_rss_run(cmd)
    stats = json.loads((out / "stats.json").read_text())
    return {"wall": wall, "peak_mib": peak, "files": stats["files"], "tokens": stats["tokens"],
            "pieces": stats["pieces"]}


def miditok_build(midi: Path, out: Path) -> dict:
    code = (
        "import miditok, pathlib, sys;"
        "cfg = miditok.TokenizerConfig(use_programs=True, one_token_stream_for_programs=True,"
        " use_tempos=True, use_time_signatures=True);"
        "files = sorted(p for p in pathlib.Path(sys.argv[1]).iterdir() if p.suffix in ('.mid', '.midi'));"
        "miditok.REMI(cfg).tokenize_dataset(files, sys.argv[2], verbose=False, parallel_workers_size=1)"
    )
    wall, peak = peak_rss_run([sys.executable, "-c", code, str(midi), str(out)])
    n_files = sum(1 for p in midi.iterdir() if p.suffix in (".mid", ".midi"))
    tokens = 0
    for f in out.rglob("*.json"):
        ids = json.loads(f.read_text()).get("ids", [])
        tokens += len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)
    return {"wall": wall, "peak_mib": peak, "files": n_files, "tokens": tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"bench: corpus folder {args.corpus} not found", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="mozart-bench-"))
    try:
        one = tmp / "x1"
        n1 = variants(args.corpus, one, 1)
        four = tmp / "x4"
        n4 = variants(args.corpus, four, 4)
        rows = []
        cases = [("1x corpus", one, 1), ("1x corpus", one, 2), ("4x corpus", four, 1), ("4x corpus", four, 2)]
        for label, midi, workers in cases:
            r = mozart_build(midi, tmp / f"out-{label[0]}-{workers}", workers)
            rows.append((f"Mozart, {label}, {workers} worker{'s' if workers > 1 else ''}", r))
        peer = miditok_build(one, tmp / "miditok")
        rows.append(("MidiTok REMI `tokenize_dataset`, 1x corpus, 1 process", peer))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = [
        "## Dataset build",
        "",
        f"`python bench/dataset.py` on `{args.corpus.name}/` ({n1} files; the 4x corpus has {n4} files: four variants "
        f"of each, transposed or with other velocities, so none is a duplicate). {machine()}, MidiTok "
        f"{package_version('miditok')}. Wall time of the whole command (process start-up and worker spawn "
        "included, about 1 s for the parent and each spawned worker, which dominates the 1x runs); peak memory is "
        "the largest total RSS of the process tree (parent + workers). Mozart writes "
        "train/valid/test shards, vocab, tokenizer, stats and errors; MidiTok writes one JSON file of token ids "
        "per MIDI file (no splits, no dedupe).",
        "",
        "| run | files | files/s | tokens/s | wall, s | peak RSS, MiB |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        table.append(f"| {label} | {r['files']} | {r['files'] / r['wall']:,.0f} | {r['tokens'] / r['wall']:,.0f} | "
                     f"{r['wall']:.1f} | {r['peak_mib']:,.0f} |")
    m1, m4 = rows[1][1], rows[3][1]
    table += ["", f"Memory at 4x the corpus is {m4['peak_mib'] / m1['peak_mib']:.2f}x the memory at 1x "
              f"({m4['tokens'] / m1['tokens']:.1f}x the tokens)."]
    body = "\n".join(table)
    return publish("dataset", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
