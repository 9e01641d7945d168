"""Generation: valid by construction, controls honoured, prompts kept, seeds reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

import mozart
from mozart.controls import Controls, SamplingSettings
from mozart.dataset import DatasetConfig, build_dataset
from mozart.events import DRUM_OFFSET, bar_layout
from mozart.instruments import pitch_range
from mozart.masks import MAX_REST_BARS
from mozart.models import build_model, default_model_dir, load_model
from mozart.prompts import prompt_from_midi
from mozart.rewrite import note_table, piece_bars
from mozart.sampling import generate_pieces
from mozart.tokens import decode_piece
from mozart.train import load_config, special_ids, train

from conftest import DATA, corpus_files, link_all, styleless_model

BACH = DATA / "music21_bach_bwv66.6.mid"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny GPT-2 trained here for a few dozen steps, and random-weight GPT-2 and BART."""
    root = tmp_path_factory.mktemp("gen")
    midi = link_all(corpus_files()[:30], root / "midi")
    data = root / "data"
    build_dataset(midi, data, DatasetConfig(max_tokens=256, workers=1, valid=0.2, test=0.1), progress=False)
    out = {"trained_gpt2": root / "trained"}
    train(data, out["trained_gpt2"], load_config(None, arch="gpt2", max_steps=30, eval_every=30, context=256,
                                                 batch_size=4, lr=2e-3, validity_samples=0))
    tokenizer = AutoTokenizer.from_pretrained(str(data))
    for arch in ("gpt2", "bart"):
        folder = root / f"random_{arch}"
        model = build_model(arch, "tiny", special_ids(tokenizer), 512)
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        out[f"random_{arch}"] = folder
    return out


def bars_of(text: str) -> int:
    return text.split().count("Bar")


SETTINGS = [SamplingSettings(temperature=t) for t in (0.8, 1.0, 2.0, 3.0)] + [
    SamplingSettings(top_k=1), SamplingSettings(temperature=1.5, top_p=0.9), SamplingSettings(temperature=3.0,
                                                                                             top_k=20)]


@pytest.mark.parametrize("name", ["trained_gpt2", "random_gpt2", "random_bart"])
def test_every_sample_is_valid_with_exact_bars(models, name):
    loaded = load_model(models[name])
    n = 0
    for i, settings in enumerate(SETTINGS):
        bars = 1 + i % 3
        for text in generate_pieces(loaded, Controls(bars=bars), settings, n=10, seed=100 * i):
            mozart.check(text)
            assert bars_of(text) == bars, (settings, text[-200:])
            mozart.decode(text)
            piece = decode_piece(text)
            notes = note_table(piece)
            assert max(Counter(map(tuple, notes[:, :3])).values(), default=0) <= 2  # masks.MAX_UNISON
            assert_in_instrument_ranges(piece)
            assert (piece.note_onset + piece.note_duration).max(initial=0) <= piece_bars(piece)[0][-1]
            assert (piece.pedal_onset + piece.pedal_duration).max(initial=0) <= piece_bars(piece)[0][-1]
            assert longest_rest(piece) <= MAX_REST_BARS, text
            n += 1
    assert n == 70  # x 3 models (+ prompts and controls below): over 200 samples in all


@pytest.mark.parametrize("name", ["trained_gpt2", "random_bart"])
def test_controls_are_honoured(models, name):
    loaded = load_model(models[name])
    controls = Controls(bars=3, programs=(0, 40), drums=False, tempo=87.5, time_signature=(5, 8))
    for text in generate_pieces(loaded, controls, SamplingSettings(temperature=2.0), n=8, seed=7):
        words = text.split()
        mozart.check(text)
        assert words[:5] == ["Format_1", "Grid_24", "TS_5/8", "Tempo_87", "TempoFrac_50"]
        assert bars_of(text) == 3
        assert {w for w in words if w.startswith(("Prog_", "Drums_"))} <= {"Prog_0", "Prog_40"}
        assert not any(w.startswith(("TS_", "Tempo")) for w in words[5:])
        piece = mozart.decode_piece(text)
        assert piece.tempo_centi.tolist() == [8750] and piece.ts_numerator.tolist() == [5]


@pytest.mark.parametrize("name", ["trained_gpt2", "random_bart"])
def test_prompt_is_kept_note_for_note(models, name):
    loaded = load_model(models[name])
    prompt_words, prompt_bars = prompt_from_midi(BACH, 2, 24)
    prompt_text = " ".join(prompt_words)
    original = mozart.decode_piece(prompt_text)
    for text in generate_pieces(loaded, Controls(bars=2), SamplingSettings(), n=6, seed=3,
                                prompt=(prompt_words, prompt_bars)):
        assert text.startswith(prompt_text + " ")
        mozart.check(text)
        assert bars_of(text) == 4
        piece = mozart.decode_piece(text)
        prompt_end = int(bar_layout(piece)[0][prompt_bars])
        cols = ("note_onset", "note_duration", "note_pitch", "note_velocity", "note_stream")
        kept = piece.note_onset < prompt_end
        assert sorted(zip(*(getattr(piece, c)[kept].tolist() for c in cols))) == \
            sorted(zip(*(getattr(original, c).tolist() for c in cols)))


def test_same_seed_same_tokens(models):
    loaded = load_model(models["trained_gpt2"])
    a = generate_pieces(loaded, Controls(bars=2), SamplingSettings(temperature=1.2), n=3, seed=11)
    b = generate_pieces(loaded, Controls(bars=2), SamplingSettings(temperature=1.2), n=3, seed=11)
    c = generate_pieces(loaded, Controls(bars=2), SamplingSettings(temperature=1.2), n=3, seed=12)
    assert a == b
    assert a != c


def test_cli_writes_every_file(models, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mozart", "generate", "-m", str(models["trained_gpt2"]), "--bars", "2",
           "--program", "0", "--tempo", "100", "-n", "2", "--seed", "5", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for i in range(2):
        for suffix in (".txt", ".mid", ".wav", ".png"):
            assert (out / f"sample_{i:03d}{suffix}").stat().st_size > 0
    meta = json.loads((out / "samples.json").read_text())
    assert [s["seed"] for s in meta["samples"]] == [5, 6] and all(s["valid"] for s in meta["samples"])
    again = tmp_path / "again"
    subprocess.run(cmd[:-1] + [str(again)], capture_output=True, check=True)
    assert (again / "sample_000.txt").read_text() == (out / "sample_000.txt").read_text()


def test_cli_with_a_missing_model_fails_cleanly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mozart", "generate", "-m", str(tmp_path / "none"), "-o",
                             str(tmp_path / "x")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("mozart: error: ")
    assert "not a model folder" in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--time-signature", "3/5", "numerators 1..32 over 1, 2, 4, 8, 16"),
    ("--time-signature", "three", "expected N/D"),
    ("--tempo", "0", "expected 3.58..774"),
    ("--bars", "0", "--bars 0"),
    ("--top-p", "1.5", "--top-p"),
])
def test_cli_rejects_options_the_format_cannot_hold(tmp_path, option, value, message):
    result = subprocess.run([sys.executable, "-m", "mozart", "generate", option, value, "-o", str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("mozart: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_unconstrained_sampling_is_raw(models):
    loaded = load_model(models["random_gpt2"])
    texts = generate_pieces(loaded, Controls(bars=1), SamplingSettings(constrained=False,
                                                                                 max_new_tokens=40), n=5, seed=1)
    invalid = 0
    for text in texts:
        try:
            mozart.check(text)
        except mozart.TokenError:
            invalid += 1
    assert invalid >= 4  # random weights without the grammar: (almost) never valid
    assert np.mean([len(t.split()) for t in texts]) > 20


def test_built_in_model_generates_valid_controlled_music():
    """The committed default model: used without -m, valid, exact bars, controls honoured."""
    from mozart.models import default_model_dir

    folder = default_model_dir()
    assert folder is not None, "src/mozart/default_model/ is committed (make default-model)"
    assert (folder / "README.md").is_file() and (folder / "model.safetensors").stat().st_size < 25 * 2**20
    texts = mozart.generate(bars=4, n=6, seed=0, temperature=1.0)
    texts += mozart.generate(bars=2, n=4, seed=10, temperature=2.5, programs=(0,), drums=False, tempo=80,
                             time_signature=(3, 4))
    for i, text in enumerate(texts):
        mozart.check(text)
        words = text.split()
        assert bars_of(text) == (4 if i < 6 else 2)
        if i >= 6:
            assert words[2:4] == ["TS_3/4", "Tempo_80"]
            assert {w for w in words if w.startswith(("Prog_", "Drums_"))} <= {"Prog_0"}
        assert mozart.decode_piece(text).n_notes > 0
    assert mozart.generate(bars=2, seed=3) == mozart.generate(bars=2, seed=3)


@pytest.mark.parametrize("option, value", [("temperature", float("nan")), ("temperature", float("inf")),
                                           ("top_p", float("nan")), ("tempo", float("inf")), ("seed", 2**64),
                                           ("seed", -1), ("bars", 0), ("n", 0), ("prompt_bars", 0),
                                           ("programs", (0, 128)), ("time_signature", (3, 5))])
def test_python_api_shares_the_validator(option, value):
    with pytest.raises(mozart.MozartError, match=option.split("_")[0].replace("programs", "program")[:4]):
        mozart.generate(**{option: value})


def test_style_token_follows_bos_and_unknown_styles_are_refused(models):
    from mozart.errors import MozartError

    loaded = load_model(models["random_gpt2"])
    texts = generate_pieces(loaded, Controls(bars=2, style="folk"), SamplingSettings(), n=2, seed=0)
    for text in texts:
        mozart.check(text)
        assert bars_of(text) == 2
    with pytest.raises(MozartError, match="--style 'jazz': expected one of"):
        generate_pieces(loaded, Controls(bars=2, style="jazz"), SamplingSettings())
    with pytest.raises(MozartError, match="BART models learn continuation without styles"):
        generate_pieces(load_model(models["random_bart"]), Controls(bars=2, style="folk"), SamplingSettings())


def test_the_model_reads_bos_then_the_style_token(models, monkeypatch):
    import mozart.sampling
    from mozart.tokenizer import style_token

    loaded = load_model(models["random_gpt2"])
    first_steps = []
    real = mozart.sampling._step_decoder

    def recording(model, *args, **kwargs):
        decoder = real(model, *args, **kwargs)
        step = decoder.step
        decoder.step = lambda ids: (first_steps.append(ids[0].tolist()) if not first_steps else None) or step(ids)
        return decoder

    monkeypatch.setattr(mozart.sampling, "_step_decoder", recording)
    generate_pieces(loaded, Controls(bars=2, style="folk"), SamplingSettings(), n=1, seed=3)
    vocab = loaded.tokenizer.get_vocab()
    assert first_steps[0][:2] == [vocab["<bos>"], vocab[style_token("folk")]]


def test_a_model_trained_without_styles_refuses_one(tmp_path):
    from mozart.errors import MozartError

    with pytest.raises(MozartError, match="trained without style tokens"):
        mozart.generate(model=styleless_model(tmp_path / "plain"), bars=1, style="folk")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart"])
def test_more_bars_than_the_context_holds_stay_valid(models, tmp_path, arch):
    """A 64-token context cannot hold 40 bars: the window slides and the piece is still exact."""
    tokenizer = AutoTokenizer.from_pretrained(str(models["random_gpt2"]))
    folder = tmp_path / arch
    build_model(arch, "tiny", special_ids(tokenizer), 64).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    loaded = load_model(folder)
    for seed, settings in enumerate([SamplingSettings(temperature=1.0), SamplingSettings(temperature=3.0)]):
        # a batch of 3: the rows slide together, and rows that end leave the batch
        texts = generate_pieces(loaded, Controls(bars=40, programs=(0,), drums=False), settings, n=3, seed=seed)
        for text in texts:
            mozart.check(text)
            assert bars_of(text) == 40


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart"])
def test_a_seed_gives_the_same_piece_whatever_the_batch(models, tmp_path, arch):
    """-n 5 samples its rows as one batch, each row with its own generator: row i is the piece that
    seed + i gives alone, although rows end at different steps and leave the batch."""
    tokenizer = AutoTokenizer.from_pretrained(str(models["random_gpt2"]))
    folder = tmp_path / arch
    build_model(arch, "tiny", special_ids(tokenizer), 256).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    loaded = load_model(folder)
    controls, settings = Controls(bars=3), SamplingSettings(temperature=1.5, top_k=50, top_p=0.95)
    batch = generate_pieces(loaded, controls, settings, n=5, seed=10)
    assert len({len(t.split()) for t in batch}) > 1  # rows of different lengths: some ended early
    for i in (0, 3, 4):
        assert generate_pieces(loaded, controls, settings, n=1, seed=10 + i) == [batch[i]]


def test_instruments_settle_after_the_first_bars(models):
    """With programs left free, a piece brings in instruments in its first SETTLE_BARS bars only; a random
    model at temperature 3 would otherwise switch programs all the time.  Asked-for programs are untouched."""
    from mozart.masks import SETTLE_BARS

    loaded = load_model(models["random_gpt2"])
    texts = generate_pieces(loaded, Controls(bars=10), SamplingSettings(temperature=3.0), n=20, seed=0)
    late_switches = 0
    for text in texts:
        mozart.check(text)
        bar, early, late = 0, set(), set()
        for word in text.split():
            bar += word == "Bar"
            if word.startswith(("Prog_", "Drums_")):
                (early if bar <= SETTLE_BARS else late).add(word)
        assert late <= early, (early, late)
        late_switches += bool(late)
    assert late_switches > 0  # the rule keeps instruments, it does not stop them switching among themselves


def longest_rest(piece) -> int:
    """The most bars in a row in which a part (a stream) sounds no note, after it first sounds."""
    starts = piece_bars(piece)[0]
    longest = 0
    for stream in np.unique(piece.note_stream).tolist():
        sel = piece.note_stream == stream
        first = np.searchsorted(starts, piece.note_onset[sel], side="right") - 1
        last = np.searchsorted(starts, piece.note_onset[sel] + piece.note_duration[sel] - 1, side="right") - 1
        sounding = np.zeros(starts.size - 1, dtype=bool)
        for a, b in zip(first.tolist(), last.tolist()):
            sounding[a:b + 1] = True
        rests = np.diff(np.flatnonzero(np.append(sounding[first.min():], True))) - 1
        longest = max(longest, int(rests.max(initial=0)))
    return longest


def assert_in_instrument_ranges(piece) -> None:
    """Every melodic note of ``piece`` lies in its instrument's usual range (instruments.pitch_range)."""
    melodic = piece.note_stream < DRUM_OFFSET
    for stream in np.unique(piece.note_stream[melodic]).tolist():
        low, high = pitch_range(stream)
        pitches = piece.note_pitch[piece.note_stream == stream]
        assert low <= pitches.min() and pitches.max() <= high, (stream, pitches.min(), pitches.max())


def test_new_notes_keep_to_their_instruments_range_or_the_prompts():
    """A violin writes nothing under its G string (55) or over 103; a part that the prompt plays lower goes
    on as low as the prompt went; drum kits are free; a stand-in keeps to its program's range."""
    from mozart.masks import new_constraint

    def pitches(words: str, controls: Controls | None = None) -> list[int]:
        constraint = new_constraint(words.split(), controls or Controls(bars=2), 0, 24)
        vocab = constraint.state.vocab
        return sorted(int(vocab.value_of[i]) for i in np.flatnonzero(constraint.allowed(1000)[0])
                      if vocab.words[i].startswith("Pitch_"))

    head = "Format_1 Grid_24 TS_4/4 Tempo_90 Bar Pos_0"
    assert pitches(f"{head} Prog_40") == list(range(55, 104))
    assert pitches(f"{head} Prog_0") == list(range(21, 109))
    assert pitches(f"{head} Drums_0") == list(range(128))
    prompt = f"{head} Prog_40 Pitch_43 Vel_80 Dur_24 Prog_42 Pitch_50 Vel_80 Dur_24"
    assert pitches(f"{prompt} Bar Pos_0 Prog_40") == list(range(43, 104))  # the prompt's violin went to 43
    assert pitches(f"{prompt} Bar Pos_0 Prog_41") == list(range(48, 92))  # the viola did not play
    stand_in = Controls(bars=2, ranges=((0, 28, 67),))  # piano standing in for a bass
    assert pitches(f"{head} Prog_0", stand_in) == list(range(28, 68))


def test_new_notes_never_need_a_second_duration_digit():
    """After a note of 32 whole notes less a step, the same pitch at the same step may not drop its
    velocity: canonical order would then demand a longer note, past one high digit."""
    from mozart.masks import new_constraint

    words = "Format_1 Grid_24 TS_4/4 Tempo_90 Bar Pos_0 Prog_0 Pitch_60 Vel_80 DurHi_15 Dur_191 Pitch_60".split()
    constraint = new_constraint(words, Controls(bars=2), 0, 24)
    mask, _ = constraint.allowed(1000)
    vocab = constraint.state.vocab
    velocities = sorted(int(vocab.value_of[i]) for i in np.flatnonzero(mask))
    assert velocities == list(range(80, 128))
    # a shorter note before: any velocity, as before
    shorter = new_constraint(words[:9] + ["DurHi_3", "Dur_0", "Pitch_60"], Controls(bars=2), 0, 24)
    assert int(np.flatnonzero(shorter.allowed(1000)[0]).size) == 127


def test_a_third_new_note_on_one_key_at_one_step_is_refused():
    """Two notes of one pitch at one step in one instrument (a unison of two voices) may be written, not a
    third; another pitch, another instrument or a later step may have it."""
    from mozart.grammar import new_state
    from mozart.masks import MAX_UNISON, Constraint

    head = "Format_1 Grid_24 TS_4/4 Tempo_90 Bar Pos_0 Prog_0".split()
    note = "Pitch_60 Vel_80 Dur_12".split()

    def allowed(words: list[str]) -> set[str]:
        state = new_state(24)
        for w in words:  # sampled words, not a prompt: the sampler is writing bar 1
            state.advance(state.vocab.index[w])
        constraint = Constraint(state, Controls(bars=2), target_bars=2)
        return {state.vocab.words[i] for i in np.flatnonzero(constraint.allowed(1000)[0])}

    assert MAX_UNISON == 2
    assert "Pitch_60" in allowed(head + note)
    full = allowed(head + note * 2)
    assert "Pitch_60" not in full and {"Pitch_61", "Prog_1", "Pos_12"} <= full
    assert "Pitch_60" in allowed(head + note * 2 + ["Prog_1"])
    assert "Pitch_60" in allowed(head + note * 2 + ["Pos_12"])


def test_the_first_duration_digit_is_one_a_dur_can_complete():
    """A quieter same-pitch note after one of 2,080 steps must last at least 2,081: only DurHi_10..15
    reach that with one digit (DurHi_3 would need a second, a note of tens of minutes)."""
    from mozart.masks import new_constraint

    words = ("Format_1 Grid_24 TS_4/4 Tempo_90 Bar Pos_0 Prog_0 Pitch_60 Vel_56 DurHi_10 Dur_160 Pitch_60 "
             "Vel_12").split()
    constraint = new_constraint(words, Controls(bars=2), 0, 24)
    mask, _ = constraint.allowed(1000)
    vocab = constraint.state.vocab
    assert sorted(vocab.words[i] for i in np.flatnonzero(mask)) == sorted(f"DurHi_{d}" for d in range(10, 16))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_sampling_reads_a_decoder_without_torch_and_a_seed_gives_one_piece_at_any_batch(models, tmp_path, arch):
    """load_sampler reads a GPT-2 or Llama folder's weights and vocabulary directly (numpy step decoders):
    the pieces are valid, and a seed writes the same piece alone or in a batch of three."""
    from mozart.models import load_sampler
    from mozart.weights import DecoderWeights

    tokenizer = AutoTokenizer.from_pretrained(str(models["random_gpt2"]))
    folder = tmp_path / arch
    build_model(arch, "tiny", special_ids(tokenizer), 256).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    light, full = load_sampler(folder), load_model(folder)
    assert isinstance(light.model, DecoderWeights) and (light.arch, light.grid) == (full.arch, full.grid)
    controls, settings = Controls(bars=3), SamplingSettings(temperature=1.5)
    batch = generate_pieces(light, controls, settings, n=3, seed=4)
    assert batch == [generate_pieces(light, controls, settings, seeds=[s])[0] for s in (4, 5, 6)]
    assert len(set(batch)) == 3
    for text in batch:
        mozart.check(text)


def test_sampling_loads_the_full_model_where_the_light_path_cannot(models, tmp_path):
    """BART, a config without a key the step decoders read, or an architecture they do not reproduce:
    load_sampler gives load_model's transformers model."""
    from mozart.models import load_sampler
    from mozart.weights import DecoderWeights, read_decoder

    assert read_decoder(models["random_bart"]) is None
    assert not isinstance(load_sampler(models["random_bart"]).model, DecoderWeights)
    folder = tmp_path / "odd"
    folder.mkdir()
    for f in models["random_gpt2"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    assert read_decoder(folder) is not None  # readable, but its activation is not the one reproduced
    assert not isinstance(load_sampler(folder).model, DecoderWeights)
    del config["n_positions"]
    (folder / "config.json").write_text(json.dumps(config))
    assert read_decoder(folder) is None


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
@pytest.mark.parametrize("command", ["generate", "infill", "accompany"])
def test_sampling_with_the_built_in_model_never_imports_torch(tmp_path, command):
    """`mozart generate`, `infill` and `accompany` with the built-in model run on numpy alone: torch and
    transformers (seconds of imports) are never loaded, and the samples are written."""
    from conftest import cli_reporting_imports

    source = ["tests/data/music21_bach_bwv66.6.mid"] if command != "generate" else []
    options = {"generate": ["--bars", "2"], "infill": ["--bars", "2-3"],
               "accompany": ["--bars", "1-2", "--program", "33"]}
    out = cli_reporting_imports(command, *source, *options[command], "-o", tmp_path / "out",
                                cwd=Path(__file__).parents[1])
    assert out.stdout.splitlines()[-1].split() == ["0", "False", "False"], (out.stdout, out.stderr)
    assert (tmp_path / "out" / "sample_000.wav").stat().st_size > 0


def test_draws_follow_the_probabilities_and_never_pick_an_impossible_word():
    """Inverse-CDF draws: frequencies follow each row's probabilities; a uniform number of 0 or one
    rounding u * total up to the total still lands on a word with probability."""
    from mozart.sampling import _draw

    probs = np.array([[0.0, 0.5, 0.5, 0.0], [0.2, 0.0, 0.0, 0.8]], dtype=np.float32)
    generators = [np.random.default_rng(i) for i in range(2)]
    counts = np.zeros((2, 4))
    for _ in range(4000):
        for row, token in enumerate(_draw(probs, generators)):
            counts[row, token] += 1
    assert np.allclose(counts / 4000, probs, atol=0.03)
    class Fixed:  # a generator whose every uniform number is u
        def __init__(self, u: float):
            self.u = u

        def random(self) -> float:
            return self.u

    for u, expected in ((0.0, [1, 0]), (1.0, [2, 3])):  # 1.0: as if u * total rounded up to the total
        assert _draw(probs, [Fixed(u), Fixed(u)]) == expected


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_lora_adapter_merges_without_torch_as_peft_merges_it(models, tmp_path, arch):
    """load_sampler merges a plain LoRA adapter (mozart finetune's targets, random A and B) into the numpy
    weights: the logits equal peft's merge_and_unload's to 1e-4, and differ from the base's; an adapter
    with a feature the merge does not reproduce (DoRA) loads through peft instead."""
    from peft import LoraConfig, TaskType, get_peft_model

    from mozart.decoding import HFStepDecoder
    from mozart.models import load_sampler
    from mozart.npdecoding import numpy_decoder_for
    from mozart.train import LORA_TARGETS
    from mozart.weights import DecoderWeights

    tokenizer = AutoTokenizer.from_pretrained(str(models["random_gpt2"]))
    folder = tmp_path / arch
    build_model(arch, "tiny", special_ids(tokenizer), 256).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    for dora in (False, True):
        lora = LoraConfig(r=4, lora_alpha=16, target_modules=LORA_TARGETS[arch], fan_in_fan_out=arch == "gpt2",
                          task_type=TaskType.CAUSAL_LM, init_lora_weights=False, use_dora=dora)
        adapter = tmp_path / f"adapter-{dora}"
        get_peft_model(load_model(folder).model, lora).save_pretrained(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        light = load_sampler(folder, adapter)
        assert isinstance(light.model, DecoderWeights) != dora
    light, full = load_sampler(folder, tmp_path / "adapter-False"), load_model(folder, tmp_path / "adapter-False")
    ids = np.random.default_rng(0).integers(4, 300, (2, 40))
    import torch

    merged, peft_merged = numpy_decoder_for(light.model, 2), HFStepDecoder(full.model)
    base = numpy_decoder_for(load_sampler(folder).model, 2)
    for chunk in [ids[:, :20]] + [ids[:, i:i + 1] for i in range(20, 40)]:
        ours, theirs = merged.step(chunk), peft_merged.step(torch.from_numpy(chunk)).numpy()
        assert np.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float(np.abs(ours - theirs).max())
        assert not np.allclose(base.step(chunk), theirs, atol=1e-2)


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
@pytest.mark.parametrize("config", ["{not json", "[1, 2]"])
def test_an_unreadable_adapter_config_is_a_one_line_error(tmp_path, config):
    """An adapter folder whose adapter_config.json is not a JSON object: one line naming the file, whichever
    loader reads it (peft raised a JSONDecodeError traceback), and nothing written."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "tokenizer.json").write_bytes((Path(str(default_model_dir())) / "tokenizer.json").read_bytes())
    (adapter / "adapter_config.json").write_text(config)
    cmd = [sys.executable, "-m", "mozart", "generate", "--adapter", str(adapter), "--bars", "1",
           "-o", str(tmp_path / "out")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith(f"mozart: error: {adapter / 'adapter_config.json'}: unreadable") \
        and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arch, key", [("gpt2", "n_layer"), ("gpt2", "n_inner"), ("llama", "intermediate_size"),
                                       ("llama", "num_key_value_heads")])
def test_weights_that_do_not_match_their_config_are_a_clear_error(models, tmp_path, arch, key):
    """A config.json that does not describe its weights (a layer more, another width): load_sampler names the
    first weight that does not fit, instead of a broadcast error or KeyError in the middle of sampling."""
    from mozart.errors import MozartError
    from mozart.models import load_sampler

    tokenizer = AutoTokenizer.from_pretrained(str(models["random_gpt2"]))
    folder = tmp_path / arch
    build_model(arch, "tiny", special_ids(tokenizer), 256).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config[key] = (config.get(key) or 4 * config["n_embd"]) + (1 if key in ("n_layer",) else 8)
    if key == "num_key_value_heads":
        config[key] = 1  # grouped: k_proj and v_proj narrower than the weights saved
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MozartError, match=r"model\.safetensors: does not match config\.json \(.*the config says"):
        load_sampler(folder)


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
@pytest.mark.parametrize("adapter", [False, True])
def test_a_truncated_weight_file_is_a_one_line_error(tmp_path, adapter):
    """Read without torch (with or without an adapter folder beside it): one line, exit 1."""
    folder = tmp_path / "model"
    folder.mkdir()
    for f in Path(str(default_model_dir())).iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes()[:1000] if f.name == "model.safetensors" else f.read_bytes())
    cmd = [sys.executable, "-m", "mozart", "generate", "-m", str(folder), "--bars", "1", "-o", str(tmp_path / "x")]
    if adapter:  # a folder that passes the CLI's input checks (it has a tokenizer), so the weights are read
        (tmp_path / "adapter").mkdir()
        (tmp_path / "adapter" / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
        cmd += ["--adapter", str(tmp_path / "adapter")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mozart: error: {folder / 'model.safetensors'}: unreadable weights (")
    assert not (tmp_path / "x").exists()


def test_every_entry_point_samples_at_the_shared_defaults():
    """The measured decoding defaults (defaults.py) are what the CLI, the Python API, the studio and
    evaluate use when nothing is asked, so a sample means the same everywhere."""
    import inspect

    import mozart
    from mozart import cli
    from mozart.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
    from mozart.evaluate import EvaluateConfig
    from mozart.serve import _form_settings

    assert DEFAULT_TOP_P < 1.0  # chosen by measurement: nucleus sampling is on by default
    functions = [mozart.generate, mozart.infill, mozart.accompany, cli.generate_cmd, cli.infill_cmd,
                 cli.accompany_cmd, cli.evaluate_cmd]
    for function in functions:
        parameters = inspect.signature(function).parameters
        assert parameters["temperature"].default == DEFAULT_TEMPERATURE, function.__name__
        assert parameters["top_p"].default == DEFAULT_TOP_P, function.__name__
    for settings in (SamplingSettings(), EvaluateConfig(), _form_settings({}, None)):
        values = settings if isinstance(settings, dict) else vars(settings)
        assert (values["temperature"], values["top_p"]) == (DEFAULT_TEMPERATURE, DEFAULT_TOP_P)


def test_top_p_keeps_the_smallest_likeliest_set_reaching_p():
    """The nucleus (sampling._nucleus): per row, the kept words are the likeliest ones, they hold at least p,
    and without the least likely of them they would hold less; a flat row keeps a share p of its words."""
    from mozart.npdecoding import softmax
    from mozart.sampling import _nucleus

    generator = np.random.default_rng(0)
    logits = np.concatenate([generator.standard_normal((6, 1475), dtype=np.float32) * scale
                             for scale in (0.3, 3.0, 12.0)] + [np.zeros((1, 1475), dtype=np.float32)])
    for p in (0.5, 0.9, 0.95):
        keep = _nucleus(logits, p)
        probs = softmax(logits)
        for row in range(logits.shape[0]):
            kept, dropped = probs[row][keep[row]], probs[row][~keep[row]]
            assert dropped.size == 0 or kept.min() >= dropped.max()  # the likeliest words
            assert kept.sum() >= p - 1e-5 and kept.sum() - kept.min() <= p + 1e-5  # the smallest set reaching p
        assert keep[-1].sum() == pytest.approx(p * 1475, abs=2)  # flat


def test_new_notes_end_by_the_last_bar_line():
    """A 2-bar piece in 4/4 ends at step 192: a note at step 72 of bar 2 lasts at most 24 steps, one at bar
    1's start at most 192 (DurHi_1 then Dur_0); a same-pitch note after one that ends there keeps its
    velocity (a lower one would have to be longer); and a change of meter may not end the piece before
    a note written in the bar before."""
    from mozart.masks import new_constraint

    def allowed(words: str, bars: int = 2) -> list[str]:
        constraint = new_constraint(words.split()[:4], Controls(bars=bars), 0, 24)  # the header
        for w in words.split()[4:]:  # sampled words: the constraint follows what it wrote
            constraint.advance(constraint.state.vocab.index[w])
        vocab = constraint.state.vocab
        return [vocab.words[i] for i in np.flatnonzero(constraint.allowed(1000)[0])]

    head = "Format_1 Grid_24 TS_4/4 Tempo_90 Bar"
    assert allowed(f"{head} Pos_0 Prog_0 Pitch_60 Vel_80") == ["DurHi_1"] + [f"Dur_{d}" for d in range(1, 192)]
    assert allowed(f"{head} Pos_0 Prog_0 Pitch_60 Vel_80 DurHi_1") == ["Dur_0"]
    late = f"{head} Bar Pos_72 Prog_0 Pitch_60 Vel_80"
    assert allowed(late) == [f"Dur_{d}" for d in range(1, 25)]
    velocities = allowed(f"{head} Bar Pos_72 Prog_0 Pitch_60 Vel_80 Dur_24 Pitch_60")
    assert velocities == [f"Vel_{v}" for v in range(80, 128)]
    # bar 1 of 3 holds a note into bar 3 (ends at 240): bar 2 may not turn 1/4, whose bars would end at 144
    meters = allowed(f"{head} Pos_0 Prog_0 Pitch_60 Vel_80 DurHi_1 Dur_48 Bar", bars=3)
    assert "TS_3/4" in meters and "TS_1/4" not in meters and "TS_2/4" not in meters


def test_a_part_rests_at_most_max_rest_bars_then_comes_back_on_the_downbeat():
    """A violin silent for two bars must sound in the third: the bar starts on its downbeat, and there the
    violin comes before anything above it and before the music moves on; the bar and the piece may not end
    without it.  A part that played in the bar before is free."""
    from mozart.masks import new_constraint

    note = "Pitch_60 Vel_80 Dur_24"
    both = f"Bar Pos_0 Prog_0 {note} Prog_40 Pitch_67 Vel_80 Dur_24"
    piano = f"Bar Pos_0 Prog_0 {note}"

    def allowed(words: str, bars: int = 6) -> tuple[set[str], bool]:
        constraint = new_constraint("Format_1 Grid_24 TS_4/4 Tempo_90".split(), Controls(bars=bars), 0, 24)
        for w in words.split():  # sampled words
            constraint.advance(constraint.state.vocab.index[w])
        mask, can_end = constraint.allowed(1000)
        return {constraint.state.vocab.words[i] for i in np.flatnonzero(mask)}, can_end

    assert MAX_REST_BARS == 2
    free, _ = allowed(f"{both} {piano} Bar")  # the violin rested one bar
    assert {"Pos_0", "Pos_24", "Bar"} <= free
    due, _ = allowed(f"{both} {piano} {piano} Bar")  # two bars: back on the downbeat
    assert "Pos_0" in due and not any(w.startswith(("Pos_", "PosHi_")) and w != "Pos_0" for w in due)
    assert "Bar" not in due
    on_it, _ = allowed(f"{both} {piano} {piano} Bar Pos_0")
    assert {"Prog_40", "Pitch_60"} <= on_it  # the piano (stream 0, below the violin) may go first
    assert not {"Prog_41", "Drums_0", "Pos_24", "Bar"} & on_it
    back, _ = allowed(f"{both} {piano} {piano} Bar Pos_0 Prog_40 Pitch_67 Vel_80 Dur_6")
    assert {"Pos_24", "Bar", "Prog_41"} <= back
    _, can_end = allowed(f"{both} {piano} {piano} Bar Pos_0 Prog_0 {note}", bars=4)
    assert not can_end  # the last bar: the piece may not end without the violin
    _, can_end = allowed(f"{both} {piano} {piano} Bar Pos_0 Prog_0 {note} Prog_40 Pitch_67 Vel_80 Dur_6", bars=4)
    assert can_end


def test_unconstrained_sampling_leaves_out_the_style_the_model_chose():
    """From <bos> alone the built-in model often begins with a style token, as its training pieces do:
    that is its choice of style, not music, so the text starts with the music (a style token later
    would stay, raw)."""
    import torch

    from mozart.models import default_model_dir, load_base
    from mozart.tokenizer import BOS, STYLE_TOKENS

    folder = default_model_dir()
    loaded = load_model(folder)
    texts = generate_pieces(loaded, Controls(bars=1), SamplingSettings(constrained=False, max_new_tokens=12),
                            n=16, seed=0)
    assert all(t and t.split()[0] not in STYLE_TOKENS for t in texts)
    # the model does choose a style first, often (so the line above can fail)
    vocab = loaded.tokenizer.get_vocab()
    with torch.no_grad():
        probs = torch.softmax(load_base(folder)[0].eval()(torch.tensor([[vocab[BOS]]])).logits[0, -1].float(), -1)
    assert probs[[vocab[w] for w in STYLE_TOKENS]].sum() > 0.3
