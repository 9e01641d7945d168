"""What real music scores on evaluate's per-style statistics: the ceiling a model is measured against.

    python bench/style_ceiling.py DATA [--samples 32] [--seed 0]

For each style of the test split, ``--samples`` random *training* segments of that style stand in
for a model's samples and are compared with the style's test pieces exactly as ``mozart evaluate``
compares samples (Yang & Lerch overlapping area per feature): once with segments in their own key,
once with transposed copies (the dataset's augmentation, records whose id carries ``@t``).  A model
cannot be expected to beat real music of its own style; where real music scores below a bar, the bar
measures the set, not the model.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from mozart.evaluate import valid_pieces
from mozart.lmdata import read_split, read_split_styles
from mozart.metrics import compare_sets, feature_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    test, test_styles = read_split(args.data, "test"), read_split_styles(args.data, "test")
    with open(args.data / "train.jsonl") as f:
        records = [json.loads(line) for line in f]
    rng = random.Random(args.seed)
    print("| style | segments | lowest OA (feature) | pitch-class histogram OA |")
    print("|---|---|---|---|")
    for style in sorted({s for s in test_styles if s}):
        reference, _ = valid_pieces([t for t, s in zip(test, test_styles) if s == style])
        for transposed in (False, True):
            pool = [r["tokens"] for r in records if r.get("style") == style and ("@t" in r["id"]) == transposed]
            if not pool or not reference:
                continue
            segments, _ = valid_pieces(rng.sample(pool, min(args.samples, len(pool))))
            result = compare_sets(feature_table(segments), feature_table(reference))
            low = min(result, key=lambda name: result[name]["overlapping_area"])
            kind = "transposed" if transposed else "own key"
            print(f"| {style} | {len(segments)} {kind} | {result[low]['overlapping_area']:.2f} ({low}) | "
                  f"{result['pitch_class_histogram']['overlapping_area']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
