"""mozart dataset: splits, records, tokenizer, errors, dedupe, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import symusic
from transformers import PreTrainedTokenizerFast

import mozart
from mozart.dataset import DatasetConfig, build_dataset, segments, split_of
from mozart.events import transpose
from mozart.tokenizer import CONTROL_TOKENS, SPECIAL_TOKENS

from conftest import DATA, corpus_files, edge_files, link_all

MAX_TOKENS = 512


def records(folder: Path, split: str) -> list[dict]:
    with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A dataset of the test corpus mixed with the edge files, segmented and augmented."""
    root = tmp_path_factory.mktemp("mixed")
    midi = link_all(corpus_files() + edge_files(), root / "midi")
    config = DatasetConfig(max_tokens=MAX_TOKENS, transpose=(-1, 1), workers=2)
    stats = build_dataset(midi, root / "data", config, progress=False)
    return root / "data", stats, midi


def test_splits_are_disjoint_and_non_empty(mixed):
    data, stats, _ = mixed
    sources = {split: {r["source"] for r in records(data, split)} for split in ("train", "valid", "test")}
    assert not sources["train"] & sources["valid"]
    assert not sources["train"] & sources["test"]
    assert not sources["valid"] & sources["test"]
    assert all(sources.values()), "valid and test each get at least one piece"
    for split, names in sources.items():
        assert stats["splits"][split]["pieces"] == len(names)


def test_every_record_checks_decodes_and_fits(mixed):
    data, _, _ = mixed
    n = 0
    for split in ("train", "valid", "test"):
        for r in records(data, split):
            assert set(r) == {"id", "source", "tokens"}
            assert len(r["tokens"].split()) <= MAX_TOKENS
            piece = mozart.decode_piece(r["tokens"])  # raises on any grammar error
            assert piece.n_notes > 0
            n += 1
    assert n > 0


def test_only_train_is_augmented_and_drums_never_move(mixed):
    data, _, _ = mixed
    assert not any("@t" in r["id"] for s in ("valid", "test") for r in records(data, s))
    train = records(data, "train")
    by_id = {r["id"]: r["tokens"] for r in train}
    augmented = [r for r in train if "@t" in r["id"]]
    assert augmented
    for r in augmented[:50]:
        base_id, shift = r["id"].split("@t")
        base, moved = mozart.decode_piece(by_id[base_id]), mozart.decode_piece(r["tokens"])
        drums = base.note_stream >= 128
        assert np.array_equal(np.sort(moved.note_pitch[moved.note_stream >= 128]), np.sort(base.note_pitch[drums]))
        melodic = np.sort(base.note_pitch[~drums]) + int(shift)
        assert np.array_equal(np.sort(moved.note_pitch[moved.note_stream < 128]), melodic)


def test_tokenizer_round_trips_every_token(mixed):
    data, _, _ = mixed
    tok = PreTrainedTokenizerFast(tokenizer_file=str(data / "tokenizer.json"))
    special = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert special == [0, 1, 2, 3]
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values()}
    # the whole format vocabulary, not only what was seen, then the control specials
    assert len(tok) == len(mozart.vocabulary(24)) + 4 + len(CONTROL_TOKENS)
    assert tok.convert_tokens_to_ids(list(CONTROL_TOKENS)) == list(range(len(tok) - len(CONTROL_TOKENS), len(tok)))
    unk = tok.convert_tokens_to_ids("<unk>")
    for split in ("train", "valid", "test"):
        for r in records(data, split):
            ids = tok(r["tokens"])["input_ids"]
            assert unk not in ids
            assert tok.convert_ids_to_tokens(ids) == r["tokens"].split()
            assert tok.decode(ids) == r["tokens"]


def test_vocab_json_counts_every_token(mixed):
    data, stats, _ = mixed
    vocab = json.loads((data / "vocab.json").read_text())
    assert sum(vocab["counts"].values()) == stats["tokens"]
    assert vocab["unique_tokens"] == len(vocab["counts"])
    assert set(vocab["counts"]) <= set(mozart.vocabulary(24).words)


def test_the_training_splits_programs_are_recorded_for_stand_ins(mixed):
    """tokenizer_config.json's ``mozart_programs`` (what a model trained here knows: standins.py) are the
    programs of the train records, and stats count the train records of each."""
    from collections import Counter

    data, stats, _ = mixed
    per_program = Counter()
    for record in records(data, "train"):
        per_program.update({int(w[5:]) for w in record["tokens"].split() if w.startswith("Prog_")})
    config = json.loads((data / "tokenizer_config.json").read_text())
    assert config["mozart_programs"] == sorted(per_program) and len(per_program) > 1
    assert stats["train_records_per_program"] == {str(p): per_program[p] for p in sorted(per_program)}


def test_failed_and_empty_files_are_listed(mixed):
    data, stats, midi = mixed
    lines = (data / "errors.tsv").read_text().splitlines()
    assert lines[0] == "file\treason"
    listed = dict(line.split("\t") for line in lines[1:])
    assert all(reason for reason in listed.values())
    for path in edge_files():
        try:
            notes = symusic.Score(str(path)).note_num()
        except Exception:
            notes = None
        if notes is None:
            assert path.name in listed, path.name
        elif notes == 0:  # "no notes", or a header error such as 0 ticks per quarter
            assert path.name in listed, path.name
    assert "no notes" in listed.values() or not edge_files()
    assert stats["failed_files"] == len(listed)


def test_content_duplicates_are_removed(tmp_path):
    source = DATA / "muspy_fur-elise.mid"
    midi = tmp_path / "midi"
    midi.mkdir()
    (midi / "a.mid").write_bytes(source.read_bytes())
    (midi / "b_trailing_garbage.mid").write_bytes(source.read_bytes() + b"\x00junk" * 10)
    resaved = symusic.Score(str(source)).resample(960)  # other resolution, other bytes
    resaved.dump_midi(str(midi / "c_resaved.mid"))
    (midi / "d_other.mid").write_bytes((DATA / "muspy_pitches.mid").read_bytes())
    assert len({p.read_bytes() for p in midi.iterdir()}) == 4
    stats = build_dataset(midi, tmp_path / "data", DatasetConfig(workers=1), progress=False)
    assert stats["pieces"] == 2
    assert stats["duplicate_files"] == 2
    assert {d["same_as"] for d in stats["duplicates"]} == {"a.mid"}


def test_split_is_stable_when_files_are_added(tmp_path):
    files = corpus_files()
    small = link_all(files[: len(files) // 2], tmp_path / "small")
    big = link_all(files, tmp_path / "big")
    cfg = DatasetConfig(workers=1, valid=0.3, test=0.3)
    build_dataset(small, tmp_path / "d1", cfg, progress=False)
    build_dataset(big, tmp_path / "d2", cfg, progress=False)
    where1 = {r["source"]: s for s in ("train", "valid", "test") for r in records(tmp_path / "d1", s)}
    where2 = {r["source"]: s for s in ("train", "valid", "test") for r in records(tmp_path / "d2", s)}
    moved = json.loads((tmp_path / "d1" / "stats.json").read_text())["moved_to_fill_splits"]
    for source, split in where1.items():
        if source not in moved:
            assert where2[source] == split


def test_split_of_depends_on_content_and_seed_only():
    cfg = DatasetConfig(valid=0.1, test=0.1, seed=0)
    splits = [split_of(f"{i:064x}", cfg)[0] for i in range(2000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert 0.07 < share["valid"] < 0.13 and 0.07 < share["test"] < 0.13
    assert split_of("ab" * 32, cfg) == split_of("ab" * 32, cfg)
    other = [split_of(f"{i:064x}", DatasetConfig(valid=0.1, test=0.1, seed=1))[0] for i in range(2000)]
    assert other != splits


def test_min_test_works_moves_each_styles_likeliest_train_works_to_test():
    """Known answer on synthetic works: a style with too few works in test takes its train works with the
    smallest split numbers, up to min_test_works or a quarter of its works; near-duplicates move together;
    the other splits and styles are untouched; 0 is the plain assignment."""
    from mozart.dataset import assign_splits

    rng = np.random.default_rng(0)
    styles = ["classical"] * 40 + ["romantic"] * 12 + ["baroque"] * 3 + [None] * 20
    digests = [f"{rng.integers(2**63):064x}" for _ in styles]
    groups = list(range(len(styles)))
    groups[1] = 0  # two classical pieces, one work
    plain_cfg, cfg = DatasetConfig(seed=3), DatasetConfig(seed=3, min_test_works=5)
    plain, _ = assign_splits(digests, groups, plain_cfg, styles)
    assert assign_splits(digests, groups, plain_cfg, styles) == assign_splits(digests, groups, plain_cfg)
    new, moved = assign_splits(digests, groups, cfg, styles)
    works = {}  # style -> {group: (split number, plain split, new split)}
    for i, (style, group) in enumerate(zip(styles, groups)):
        works.setdefault(style, {})[group] = (split_of(digests[i], cfg)[1], plain[i], new[i])
    for style, expected in (("classical", 5), ("romantic", 3), ("baroque", 0)):
        mine = works[style]
        in_test = sum(after == "test" for _, _, after in mine.values())
        assert in_test == max(expected, sum(before == "test" for _, before, _ in mine.values()))
        went = sorted(u for u, before, after in mine.values() if before != after)
        assert all(after == "test" for _, before, after in mine.values() if before != after)
        stayed = [u for u, before, after in mine.values() if before == after == "train"]
        assert not went or max(went) < min(stayed)  # the smallest split numbers went
    assert sum(b != a for b, a in zip(plain[:40], new[:40])) > 0  # the case is not vacuous
    assert new[0] == new[1]
    assert [b for b, s in zip(plain, styles) if s is None] == [a for a, s in zip(new, styles) if s is None]
    assert set(moved.values()) <= {"test"} and all(plain[i] != new[i] for i in moved)


def test_segments_keep_every_note():
    path = max(corpus_files(), key=lambda p: symusic.Score(str(p)).note_num())
    piece = mozart.quantize(symusic.Score(str(path)))
    parts, dropped = segments(piece, 200)
    assert len(parts) > 1
    for text in parts:
        assert len(text.split()) <= 200
        mozart.check(text)
    if dropped == 0:
        assert sum(mozart.decode_piece(t).n_notes for t in parts) == piece.n_notes


def test_transpose_skips_shifts_out_of_range():
    piece = mozart.quantize(symusic.Score(str(DATA / "muspy_pitches.mid")))  # pitches 0..127
    assert transpose(piece, 1) is None and transpose(piece, -1) is None
    assert transpose(piece, 0) is not None


def _build_cmd(midi: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mozart", "dataset", str(midi), "-o", str(out), "--workers", "2", "-q", *extra]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_kill_9_then_rerun_is_byte_identical(tmp_path):
    midi = link_all(corpus_files(), tmp_path / "midi")
    clean = tmp_path / "clean"
    assert subprocess.run(_build_cmd(midi, clean, "--max-tokens", "256"), capture_output=True).returncode == 0

    out = tmp_path / "data"
    hang = corpus_files()[len(corpus_files()) // 2].name
    env = {**os.environ, "MOZART_TEST_HANG_ON": hang}
    proc = subprocess.Popen(_build_cmd(midi, out, "--max-tokens", "256", "--timeout", "600"), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".data.partial-*")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # let it write part of the shards
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed build must not leave a dataset that looks complete"

    assert subprocess.run(_build_cmd(midi, out, "--max-tokens", "256"), capture_output=True).returncode == 0
    assert _tree(out) == _tree(clean)
    assert not list(tmp_path.glob(".data.partial-*"))


@pytest.mark.parametrize("delay", [None, 0.0, 1.0])
def test_ctrl_c_leaves_nothing_and_keeps_the_old_dataset(tmp_path, delay):
    """Ctrl-C at start-up (None: 0.3 s after launch, while workers spawn), as the staging folder
    appears, and mid-build: exit 130 within 5 s, no traceback, the old dataset intact."""
    midi = link_all(corpus_files(), tmp_path / "midi")
    out = tmp_path / "data"
    assert subprocess.run(_build_cmd(midi, out), capture_output=True).returncode == 0
    before = _tree(out)
    env = {**os.environ, "MOZART_TEST_HANG_ON": corpus_files()[0].name}
    proc = subprocess.Popen(_build_cmd(midi, out, "--seed", "7", "--timeout", "600"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if delay is None:
        time.sleep(0.3)
    else:
        deadline = time.time() + 60
        while not list(tmp_path.glob(".data.partial-*")) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)  # stderr closes only when every child holding it has exited
    assert time.monotonic() - sent < 5, f"took {time.monotonic() - sent:.1f} s to stop"
    # 130, or death by SIGINT itself (which a shell also reports as 130) when the signal lands before the
    # interpreter has installed its handler; never anything else
    assert proc.returncode == 130 or (delay is None and proc.returncode == -signal.SIGINT), err
    assert "Traceback" not in err, err
    assert _tree(out) == before
    assert not list(tmp_path.glob(".data.partial-*")) and not list(tmp_path.glob(".data.lock"))


def test_a_second_build_into_the_same_folder_is_refused(tmp_path):
    """Two builds into one -o at once: the second fails at once and clearly; the first finishes intact."""
    midi = link_all(corpus_files()[:6], tmp_path / "midi")
    out = tmp_path / "data"
    env = {**os.environ, "MOZART_TEST_HANG_ON": sorted(p.name for p in midi.iterdir())[0]}
    first = subprocess.Popen(_build_cmd(midi, out, "--timeout", "8"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".data.partial-*")) and time.time() < deadline:
        time.sleep(0.1)
    second = subprocess.run(_build_cmd(midi, out), capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert second.stderr.startswith("mozart: error: ") and "another build is writing" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert (out / "stats.json").is_file() and not list(tmp_path.glob(".data.*"))
    again = subprocess.run(_build_cmd(midi, out), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the lock is released


def test_crash_and_hang_are_reported_and_the_build_goes_on(tmp_path):
    midi = link_all(corpus_files()[:6], tmp_path / "midi")
    names = sorted(p.name for p in midi.iterdir())
    env = {**os.environ, "MOZART_TEST_CRASH_ON": names[0], "MOZART_TEST_HANG_ON": names[1]}
    result = subprocess.run(_build_cmd(midi, tmp_path / "data", "--timeout", "5"), env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = dict(line.split("\t") for line in (tmp_path / "data" / "errors.tsv").read_text().splitlines()[1:])
    assert listed[names[0]].startswith("worker process crashed")
    assert listed[names[1]] == "timed out after 5 s"
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert stats["pieces"] >= 1


def test_workers_that_cannot_start_are_one_clear_error(tmp_path):
    """A worker process that dies before it is ready (it could not start: no file is to blame) stops the
    build with one line, instead of every file listed as crashed or a silent exit 1."""
    from mozart.workers import START_FAIL_HOOK

    midi = link_all(corpus_files()[:3], tmp_path / "midi")
    result = subprocess.run(_build_cmd(midi, tmp_path / "data"), env={**os.environ, START_FAIL_HOOK: "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == ("mozart: error: cannot start worker processes: one exited with code 3 "
                                     "before it was ready")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "not_a_dataset", "bad_split"])
def test_dataset_bad_input(tmp_path, case):
    midi, out = tmp_path / "midi", tmp_path / "out"
    midi.mkdir()
    args = []
    if case != "empty":
        (midi / "a.mid").write_bytes((DATA / "muspy_fur-elise.mid").read_bytes())
    if case == "missing":
        midi = tmp_path / "nope"
    if case == "not_a_dataset":
        out.mkdir()
        (out / "precious.txt").write_text("keep me")
    if case == "bad_split":
        args = ["--valid", "0.7", "--test", "0.5"]
    result = subprocess.run([sys.executable, "-m", "mozart", "dataset", str(midi), "-o", str(out), "-q", *args],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("mozart: error: ") and len(result.stderr.strip().splitlines()) == 1
    if case == "not_a_dataset":
        assert (out / "precious.txt").read_text() == "keep me"
    else:
        assert not out.exists()


def test_styles_from_corpus_tsv_reach_records_and_the_token_store(tmp_path):
    from mozart.dataset import STYLE_FREE_SHARE
    from mozart.tokenizer import control_id, style_token
    from mozart.tokenstore import TokenStore

    files = corpus_files()[:24]
    midi = link_all(files, tmp_path / "midi")
    styles = ["folk", "chorale", "baroque"]
    rows = "".join(f"{f.name}\t{styles[i % 3]}\n" for i, f in enumerate(files))
    (midi / "corpus.tsv").write_text("midi_file\tstyle\n" + rows)
    stats = build_dataset(midi, tmp_path / "data", DatasetConfig(workers=1, max_tokens=256), progress=False)
    assert sum(stats["styles"].values()) == stats["records"] and set(stats["styles"]) <= set(styles)
    labelled = styled = 0
    for split in ("train", "valid", "test"):
        store = TokenStore(tmp_path / "data", split)
        for i, r in enumerate(records(tmp_path / "data", split)):
            expected = styles[[f.name for f in files].index(r["source"]) % 3]
            assert r["style"] == expected
            ids = store.record(i)
            labelled += 1
            if ids[1] == control_id(style_token(expected), 24):  # <bos> <style_S> words <eos>
                styled += 1
                assert len(ids) == len(r["tokens"].split()) + 3
            else:
                assert len(ids) == len(r["tokens"].split()) + 2
    assert abs((labelled - styled) / labelled - STYLE_FREE_SHARE) < 0.12  # some left without: "any style"


def test_unknown_style_in_corpus_tsv_is_a_clean_error(tmp_path):
    midi = link_all(corpus_files()[:2], tmp_path / "midi")
    (midi / "corpus.tsv").write_text(f"midi_file\tstyle\n{corpus_files()[0].name}\tjazz\n")
    with pytest.raises(mozart.MozartError, match="corpus.tsv:2: style 'jazz': expected one of chorale"):
        build_dataset(midi, tmp_path / "data", DatasetConfig(workers=1), progress=False)
