"""Rendering benchmark: times real time with FluidR3_GM and TimGM6mb on the corpus.

    python bench/render.py [--corpus DIR] [--limit N] [--no-write]

For every file and SoundFont: the whole `mozart.render` path in one process (note
extraction, FluidSynth synthesis on one core, tail trim, loudness normalisation), with
the SoundFont load timed apart and excluded from the x-real-time figure (the samples of the
presets a piece uses load inside the rendering: audio.SYNTH_SETTINGS).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import symusic

from mozart.audio import RenderSettings, render_score

from report import default_corpus, machine, midi_files, publish

SOUNDFONTS = {
    "FluidR3_GM": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "TimGM6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
}


def bench_font(font: str, scores: list[tuple[str, symusic.Score]]) -> dict:
    ratios, loads, total_audio, total_time = [], [], 0.0, 0.0
    for name, score in scores:
        timings: dict = {}
        started = time.perf_counter()
        audio = render_score(score, font, RenderSettings(), timings)
        elapsed = time.perf_counter() - started - timings["load_s"]
        seconds = audio.shape[0] / RenderSettings.sample_rate
        ratios.append((seconds / elapsed, name))
        loads.append(timings["load_s"])
        total_audio += seconds
        total_time += elapsed
    ratios.sort()
    return {"median": float(np.median([r for r, _ in ratios])), "slowest": ratios[0],
            "overall": total_audio / total_time, "audio_s": total_audio, "load_s": float(np.median(loads))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=default_corpus())
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    paths = midi_files(args.corpus)[: args.limit]
    scores = [(p.name, symusic.Score(str(p))) for p in paths]
    rows = []
    for label, font in SOUNDFONTS.items():
        if not Path(font).is_file():
            print(f"bench: {font} missing (apt-get install --no-install-recommends fluid-soundfont-gm "
                  "timgm6mb-soundfont); skipped", file=sys.stderr)
            continue
        r = bench_font(font, scores)
        rows.append(f"| {label} | {r['median']:.1f}x | {r['slowest'][0]:.1f}x ({r['slowest'][1]}) | "
                    f"{r['overall']:.1f}x | {r['audio_s'] / 60:.1f} min | {r['load_s'] * 1000:.0f} ms |")
    body = "\n".join([
        "## Rendering",
        "",
        f"`python bench/render.py` on `{args.corpus.name}/` ({len(scores)} files); {machine()}; one process, "
        "FluidSynth on one core. Times real time = seconds of audio / seconds of rendering (note extraction, "
        "synthesis at 44.1 kHz stereo float, tail trim and -16 LUFS normalisation), SoundFont load excluded "
        "and shown apart (median per file). The load reads the SoundFont's presets; each preset's samples "
        "load when a piece selects it (FluidSynth's dynamic sample loading), inside the rendering time. "
        "Target: at least 30x real time per core with FluidR3_GM.",
        "",
        "| SoundFont | median file | slowest file | whole corpus | audio rendered | SoundFont load |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    return publish("render", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
