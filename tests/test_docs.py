"""The token examples in docs/format.md are valid, canonical and say what the text claims."""

from __future__ import annotations

import re
from pathlib import Path

import mozart

FORMAT_MD = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def examples() -> list[str]:
    blocks = re.findall(r"```text\n(.*?)```", FORMAT_MD.read_text(), re.S)
    return [" ".join(b.split()) for b in blocks if b.startswith("Format_1")]


def test_format_examples_are_canonical():
    found = examples()
    assert len(found) >= 3
    for text in found:
        mozart.check(text)
        assert mozart.encode(mozart.decode(text)) == text


def test_stated_vocabulary_size():
    assert f"{len(mozart.vocabulary(24)):,} words" in FORMAT_MD.read_text()


def test_worked_example_facts():
    text = examples()[1]
    piece = mozart.decode_piece(text)
    assert piece.tempo_centi.tolist() == [9650, 30000]
    assert piece.ts_step.tolist() == [0, 96 + 48]
    assert (piece.ts_numerator.tolist(), piece.ts_denominator.tolist()) == ([4, 3], [4, 4])
    assert piece.pedal_duration.tolist() == [90]
    assert 192 in piece.note_duration.tolist()
    assert sorted(set(piece.note_stream.tolist())) == [0, 33, 128]
