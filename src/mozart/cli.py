"""The ``mozart`` command line: thin commands over the library.

Exit status: 0 on success, 1 on a user error (one line ``mozart: error: ...`` on
stderr, no traceback), 2 on a usage error (typer/click's own message).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from . import decode, encode, generate, plot, render, write_sample, write_samples
from .corpus import DEFAULT_TIMEOUT, export_music21
from .dataset import DatasetConfig, build_dataset
from .defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from .errors import MozartError, check_range
from .events import validate_grid
from .files import check_dataset_dir, check_output_dir, check_regular_file, read_text, write_atomic
from .interrupts import exit_interrupted, interrupt_requested
from .models import check_same_grid, default_model_dir, model_format
from .plotprocess import PlotProcess
from .register import DEFAULT_FILL, DEFAULT_HARMONY, DEFAULT_REGISTER
from .tokens import BAR, count_notes, decode_piece

app = typer.Typer(
    name="mozart",
    help="Mozart: symbolic music generation. MIDI <-> text tokens, datasets, training, generation.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

GridOption = Annotated[int, typer.Option("--grid", help="Steps per quarter note (multiple of 4, 4..96).")]
# Options generate, infill and accompany share (same names, same help).
ModelOption = Annotated[Path | None, typer.Option("-m", "--model", help="Model folder (default: built-in).")]
AdapterOption = Annotated[Path | None, typer.Option(help="LoRA adapter folder (mozart finetune).")]
TemperatureOption = Annotated[float, typer.Option(help="Sampling temperature.")]
TopPOption = Annotated[float, typer.Option(help="Nucleus sampling mass (1 = off).")]
TopKOption = Annotated[int, typer.Option(help="Keep the k likeliest tokens (0 = off).")]
SeedOption = Annotated[int, typer.Option(help="Seed of the first sample (sample i uses seed + i).")]
SamplesOption = Annotated[int, typer.Option("-n", help="Number of samples.")]
StyleOption = Annotated[str | None, typer.Option(help="Style control token: chorale, renaissance, baroque, classical, "
                                                      "romantic or folk (models trained with styles).")]


def _in_file(path: Path, error: MozartError) -> MozartError:
    """Prefix a token error with the file it came from."""
    return MozartError(f"{path}: {error}")


@app.command("encode")
def encode_cmd(
    midi: Annotated[Path, typer.Argument(help="MIDI file to encode.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Token file to write (stdout if omitted).")
    ] = None,
    grid: GridOption = 24,
) -> None:
    """Encode a MIDI file as Mozart text tokens.

    Example: mozart encode song.mid -o song.txt --grid 24
    """
    validate_grid(grid)
    text = encode(midi, grid=grid) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text)


@app.command("decode")
def decode_cmd(
    tokens: Annotated[Path, typer.Argument(help="Token file to decode.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="MIDI file to write.", show_default=False)],
) -> None:
    """Decode Mozart text tokens into a MIDI file.

    Example: mozart decode song.txt -o song.mid
    """
    from .midi import write_midi

    text = read_text(tokens)
    try:
        score = decode(text)
    except MozartError as e:
        raise _in_file(tokens, e) from None
    write_midi(score, output)


@app.command("check")
def check_cmd(
    tokens: Annotated[Path, typer.Argument(help="Token file to validate.", show_default=False)],
) -> None:
    """Validate a token file; on error, name the line and token.

    Example: mozart check song.txt
    """
    text = read_text(tokens)
    try:
        piece = decode_piece(text)
    except MozartError as e:
        raise _in_file(tokens, e) from None
    n_tokens = len(text.split())
    typer.echo(f"{tokens}: ok: {n_tokens} tokens, {piece.n_notes} notes, grid {piece.grid}")


def _parse_range(text: str | None) -> tuple[int, int] | None:
    """'-5..6' -> (-5, 6)."""
    if text is None:
        return None
    lo, sep, hi = text.partition("..")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise MozartError(f"--transpose {text!r}: expected LOW..HIGH, e.g. -5..6") from None


@app.command("render")
def render_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI or token (.txt) file.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Audio file, .wav or .flac.", show_default=False)],
    soundfont: Annotated[Path | None, typer.Option(help="SoundFont (.sf2/.sf3); default: discovered.")] = None,
    sample_rate: Annotated[int, typer.Option(help="Samples per second.")] = 44100,
    gain: Annotated[float, typer.Option(help="FluidSynth master gain, before normalisation.")] = 0.2,
    loudness: Annotated[float, typer.Option(help="Target loudness, LUFS.")] = -16.0,
    normalize: Annotated[bool, typer.Option(help="Normalise loudness (peak limited to -1 dBFS).")] = True,
) -> None:
    """Render a piece to audio with FluidSynth and a General MIDI SoundFont.

    Example: mozart render song.mid -o song.wav --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2
    """
    check_range("--sample-rate", sample_rate, 8000, 192000, integer=True)
    check_range("--gain", gain, 0, 10)
    check_range("--loudness", loudness, -70, 0)
    render(source, output, soundfont=soundfont, sample_rate=sample_rate, gain=gain,
           loudness=loudness if normalize else None)


@app.command("plot")
def plot_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI or token (.txt) file.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.", show_default=False)],
) -> None:
    """Draw a piano roll: one colour per instrument, bar lines, time in bars.

    Example: mozart plot song.mid -o song.png
    """
    plot(source, output)


@app.command("dataset")
def dataset_cmd(
    midi_dir: Annotated[Path, typer.Argument(help="Folder of MIDI files (searched recursively).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder to write.", show_default=False)],
    workers: Annotated[int, typer.Option(help="Worker processes.")] = DatasetConfig.workers,
    valid: Annotated[float, typer.Option(help="Share of pieces for validation.")] = DatasetConfig.valid,
    test: Annotated[float, typer.Option(help="Share of pieces for test.")] = DatasetConfig.test,
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = DatasetConfig.seed,
    min_test_works: Annotated[int, typer.Option(
        help="Works each style keeps in test at least (up to a quarter of its works; 0: off).")] = 0,
    max_tokens: Annotated[
        int | None, typer.Option(help="Cut pieces at bar lines into segments of at most this many tokens.")
    ] = None,
    transpose: Annotated[
        str | None, typer.Option(help="Extra transposed train copies, semitone range LOW..HIGH, e.g. -5..6.")
    ] = None,
    grid: GridOption = 24,
    timeout: Annotated[float, typer.Option(help="Seconds a single file may take.")] = DatasetConfig.timeout,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Build train/valid/test token shards, vocab.json and tokenizer.json from a MIDI folder.

    Example: mozart dataset midi/ -o data/ --workers 2 --max-tokens 1024 --transpose -5..6
    """
    config = DatasetConfig(valid=valid, test=test, seed=seed, max_tokens=max_tokens,
                           transpose=_parse_range(transpose), grid=grid, workers=workers, timeout=timeout,
                           min_test_works=min_test_works)
    stats = build_dataset(midi_dir, output, config, progress=not quiet)
    s = stats["splits"]
    typer.echo(
        f"{output}: {stats['pieces']} pieces from {stats['files']} files "
        f"(train {s['train']['pieces']}, valid {s['valid']['pieces']}, test {s['test']['pieces']}); "
        f"{stats['records']} records, {stats['tokens']:,} tokens; "
        f"{stats['failed_files']} failed, {stats['duplicate_files']} duplicates (see errors.tsv, stats.json)"
    )


class CorpusSource(StrEnum):
    music21 = "music21"


class CorpusSubset(StrEnum):
    chorales = "chorales"
    folk = "folk"
    all = "all"


@app.command("corpus")
def corpus_cmd(
    source: Annotated[CorpusSource, typer.Argument(help="Where the corpus comes from.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the MIDI files.", show_default=False)],
    subset: Annotated[CorpusSubset, typer.Option(help="Which public-domain works.")] = CorpusSubset.chorales,
    limit: Annotated[int | None, typer.Option(help="Export only the first N pieces.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds one piece may take to convert.")] = DEFAULT_TIMEOUT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Export the public-domain corpus shipped with music21 to MIDI files.

    Example: mozart corpus music21 -o midi/ --subset chorales --workers 2
    """
    check_output_dir(output, "corpus.tsv")
    summary = export_music21(output, subset.value, limit, workers, timeout, progress=not quiet)
    typer.echo(
        f"{output}: {summary['midi_files']} MIDI files of {summary['pieces']} pieces ({summary['subset']}); "
        f"{summary['failed']} failed (errors.tsv), {summary['skipped_existing']} already exported"
    )


def _train_config(config: Path | None, batch_size: str | None = None, grad_checkpointing: bool = False,
                  **overrides):
    """The recipe: defaults, then --config, then the options given ('auto' batch size included)."""
    from .train import load_config

    if batch_size == "auto":
        overrides["auto_batch"] = True
    elif batch_size is not None:
        try:
            overrides["batch_size"] = int(batch_size)
        except ValueError:
            raise MozartError(f"--batch-size {batch_size!r}: expected a whole number or 'auto'") from None
    if grad_checkpointing:
        overrides["grad_checkpointing"] = True
    return load_config(config, **overrides)


ArchOption = Annotated[str | None, typer.Option("--arch", help="llama | gpt2 | bart (default llama).")]
SizeOption = Annotated[str | None, typer.Option("--size", help="tiny | small | medium | base (default tiny).")]
StepsOption = Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps (default 200).")]
BatchOption = Annotated[str | None, typer.Option(
    "--batch-size", help="Examples per micro-batch (default 8), or 'auto': on a GPU the largest that fits, the "
                         "rest of 8 x --grad-accum by accumulation.")]
CheckpointOption = Annotated[bool, typer.Option("--grad-checkpointing", help="Recompute activations: less memory.")]
AccumOption = Annotated[int | None, typer.Option("--grad-accum", help="Micro-batches per step (default 1).")]
LrOption = Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 1e-3).")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Random seed (default 0).")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue from the newest complete checkpoint.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML recipe (see configs/).")]


def _check_inputs(models: tuple[Path | None, ...] = (), datasets: tuple[Path, ...] = (),
                  sources: tuple[Path | None, ...] = (), same_grid: tuple[Path | None, Path] | None = None) -> None:
    """A command's cheap checks of the folders and files it reads, run before it imports torch and
    transformers (4-10 s on 2 cores): a mistyped path, or a dataset at another grid than the model
    (``same_grid``: the model, None for the built-in one, and the dataset), is a one-line error at
    once, not after the imports.  The library checks them again where it reads them."""
    for source in sources:
        if source is not None:
            check_regular_file(source, "a MIDI or token file")
    for folder in models:
        if folder is not None:
            model_format(folder)
    for folder in datasets:
        check_dataset_dir(folder)
    if same_grid is not None:
        model, data = same_grid
        model = model if model is not None else default_model_dir()
        if model is not None:
            check_same_grid(model, data)


@app.command("train")
def train_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder (mozart dataset).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder.", show_default=False)],
    arch: ArchOption = None, size: SizeOption = None, max_steps: StepsOption = None,
    batch_size: BatchOption = None, grad_accum: AccumOption = None, lr: LrOption = None,
    seed: SeedOption = None, resume: ResumeOption = False, config: ConfigOption = None,
    grad_checkpointing: CheckpointOption = False,
) -> None:
    """Train a Llama, GPT-2 or BART model from scratch on a dataset.

    Example: mozart train data/ -o runs/small --arch llama --size small --max-steps 500 --batch-size auto
    """
    _check_inputs(datasets=(data_dir,))
    from .train import train

    cfg = _train_config(config, batch_size, grad_checkpointing, arch=arch, size=size, max_steps=max_steps,
                        grad_accum=grad_accum, lr=lr, seed=seed)
    metrics = train(data_dir, output, cfg, resume=resume)
    v = metrics["valid"]
    typer.echo(f"{output}: {metrics['steps']} steps; valid {v['nats_per_token']:.3f} nats/token, "
               f"{v['bits_per_token']:.3f} bits/token, {v['bits_per_note']:.2f} bits/note")


@app.command("finetune")
def finetune_cmd(
    base_dir: Annotated[Path, typer.Argument(help="Trained model folder.", show_default=False)],
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Adapter folder.", show_default=False)],
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.")] = 16,
    merge: Annotated[bool, typer.Option("--merge", help="Also write a merged full model to OUT/merged.")] = False,
    max_steps: StepsOption = None, batch_size: BatchOption = None, grad_accum: AccumOption = None,
    lr: LrOption = None, seed: SeedOption = None, resume: ResumeOption = False, config: ConfigOption = None,
) -> None:
    """LoRA-finetune a trained model on a dataset (the base folder is never written).

    Example: mozart finetune runs/base data/jazz -o adapters/jazz --lora-r 8 --lora-alpha 16 --merge
    """
    _check_inputs(models=(base_dir,), datasets=(data_dir,), same_grid=(base_dir, data_dir))
    from .train import finetune

    check_range("--lora-r", lora_r, 1, 4096, integer=True)
    check_range("--lora-alpha", lora_alpha, 1, 65536, integer=True)
    cfg = _train_config(config, batch_size, max_steps=max_steps, grad_accum=grad_accum, lr=lr, seed=seed)
    metrics = finetune(base_dir, data_dir, output, cfg, lora_r, lora_alpha, merge, resume)
    share = metrics["trainable_parameters"] / metrics["total_parameters"]
    typer.echo(f"{output}: adapter with {metrics['trainable_parameters']:,} parameters ({share:.1%} of the "
               f"model); valid {metrics['valid']['bits_per_note']:.2f} bits/note")


@app.command("generate")
def generate_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the samples.", show_default=False)],
    model_dir: Annotated[Path | None, typer.Option("-m", "--model", help="Model folder (mozart train).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder (mozart finetune).")] = None,
    prompt: Annotated[Path | None, typer.Option(help="MIDI file to continue.")] = None,
    prompt_bars: Annotated[int, typer.Option(help="Bars of the prompt to keep.")] = 4,
    bars: Annotated[int, typer.Option(help="New bars to write.")] = 16,
    program: Annotated[list[int] | None, typer.Option(help="Allowed GM program (repeat the option).")] = None,
    drums: Annotated[bool, typer.Option(help="Allow drums.")] = True,
    tempo: Annotated[float | None, typer.Option(help="Fixed tempo, qpm.")] = None,
    time_signature: Annotated[str | None, typer.Option(help="Fixed time signature, e.g. 3/4.")] = None,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    top_p: TopPOption = DEFAULT_TOP_P,
    top_k: TopKOption = 0,
    seed: SeedOption = 0,
    n: SamplesOption = 1,
    no_constraints: Annotated[bool, typer.Option("--no-constraints", help="Sample the raw model.")] = False,
    style: StyleOption = None,
    form: Annotated[str | None, typer.Option(help="Sections of equal length, e.g. AABA: a letter seen before "
                                                  "repeats, a new one is written by infilling.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder not made by generate.")]
    = False,
) -> None:
    """Generate new pieces (.txt, .mid, .wav, .png each, plus samples.json).

    Example: mozart generate -m runs/small --bars 16 --program 0 --tempo 96 --time-signature 3/4 -n 4 -o out
    """
    import json

    from .controls import parse_time_signature

    check_output_dir(output, "samples.json", force)
    _check_inputs(models=(model_dir, adapter), sources=(prompt,))
    used: dict[int, int] = {}
    with PlotProcess() as plotter:  # started now: matplotlib loads in it while torch loads here
        texts = generate(model=model_dir, bars=bars, programs=tuple(program) if program else None, drums=drums,
                         tempo=tempo, time_signature=parse_time_signature(time_signature), temperature=temperature,
                         top_k=top_k, top_p=top_p, n=n, seed=seed, prompt=prompt, prompt_bars=prompt_bars,
                         adapter=adapter, constrained=not no_constraints, style=style, form=form,
                         on_stand_ins=used.update)
        output.mkdir(parents=True, exist_ok=True)
        stems = [output / f"sample_{i:03d}" for i in range(len(texts))]
        written = write_samples(texts, stems, plotter=plotter)
    records = [{"file": stem.name, "seed": seed + i, "tokens": len(text.split()), **done}
               for i, (text, stem, done) in enumerate(zip(texts, stems, written))]
    settings_json = {"model": str(model_dir) if model_dir else "built-in", "adapter": str(adapter) if adapter else None,
                     "prompt": str(prompt) if prompt else None, "prompt_bars": prompt_bars if prompt else 0,
                     "bars": bars, "programs": program, "drums": drums, "tempo": tempo,
                     "time_signature": time_signature, "temperature": temperature, "top_p": top_p,
                     "top_k": top_k, "seed": seed, "n": n, "constrained": not no_constraints, "style": style,
                     "form": form, "stand_ins": _note_stand_ins(used),
                     "samples": records}
    write_atomic(output / "samples.json", json.dumps(settings_json, indent=1) + "\n")
    valid = sum(r["valid"] for r in records)
    typer.echo(f"{output}: {n} samples ({valid} valid), .txt .mid .wav .png each; settings in samples.json")


def _note_stand_ins(used: dict[int, int]) -> dict[str, int]:
    """Say on stderr which programs were read and written through stand-ins (standins.py); return them as
    samples.json records them."""
    from .instruments import stream_name

    for program, stand_in in sorted(used.items()):
        typer.echo(f"mozart: note: the model was not trained on {stream_name(program)}: it reads and writes it as "
                   f"{stream_name(stand_in)} (docs/generation.md, Stand-ins)", err=True)
    return {str(k): v for k, v in sorted(used.items())}


def _write_rewrites(texts: list[str], output: Path, source: Path, command: str, plotter: PlotProcess,
                    **options) -> None:
    """Write rewrites as generate writes samples (plus the source's piano roll, for before/after);
    ``options`` (the command's settings, and ``stand_ins``: {program: stand-in}) go to samples.json, and
    each stand-in gets a note on stderr."""
    import json

    settings = {"command": command, "source": str(source), **options,
                "stand_ins": _note_stand_ins(options["stand_ins"]),
                "adapter": str(options["adapter"]) if options.get("adapter") else None}
    output.mkdir(parents=True, exist_ok=True)
    source_roll = plotter.plot(source, output / "source.png")
    stems = [output / f"sample_{i:03d}" for i in range(len(texts))]
    written = write_samples(texts, stems, plotter=plotter)
    source_roll.result()
    records = [{"file": stem.name, "seed": settings["seed"] + i, "tokens": len(text.split()), **done}
               for i, (text, stem, done) in enumerate(zip(texts, stems, written))]
    write_atomic(output / "samples.json", json.dumps({**settings, "samples": records}, indent=1) + "\n")
    valid = sum(r["valid"] for r in records)
    typer.echo(f"{output}: {len(texts)} {command} samples ({valid} valid), .txt .mid .wav .png each, source.png; "
               "settings in samples.json")


@app.command("infill")
def infill_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI or token file to rewrite.", show_default=False)],
    bars: Annotated[str, typer.Option(help="Bars to rewrite, A-B (1-based, inclusive).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the samples.", show_default=False)],
    model_dir: ModelOption = None,
    adapter: AdapterOption = None,
    program: Annotated[list[int] | None, typer.Option(help="GM program the new bars may use (repeat; default: "
                                                           "the source's instruments).")] = None,
    drums: Annotated[bool | None, typer.Option("--drums/--no-drums", help="Add / leave out drums (default: as "
                                                                         "the source).", show_default=False)] = None,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    top_p: TopPOption = DEFAULT_TOP_P,
    top_k: TopKOption = 0,
    seed: SeedOption = 0,
    n: SamplesOption = 1,
    style: StyleOption = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder not made by infill.")]
    = False,
) -> None:
    """Rewrite some bars of a piece, keeping every other note (.txt, .mid, .wav, .png each).

    Example: mozart infill song.mid --bars 5-8 -n 4 -o out
    """
    from . import infill

    check_output_dir(output, "samples.json", force)
    _check_inputs(models=(model_dir, adapter), sources=(source,))
    with PlotProcess() as plotter:  # started now: matplotlib loads in it while torch loads here
        used: dict[int, int] = {}
        texts = infill(source, bars, model=model_dir, programs=tuple(program) if program else None, drums=drums,
                       temperature=temperature, top_k=top_k, top_p=top_p, n=n, seed=seed, adapter=adapter,
                       style=style, on_stand_ins=used.update)
        _write_rewrites(texts, output, source, "infill", plotter, model=str(model_dir or "built-in"), adapter=adapter,
                        bars=bars, programs=program, drums=drums, temperature=temperature, top_p=top_p, top_k=top_k,
                        seed=seed, n=n, style=style, stand_ins=used)


@app.command("accompany")
def accompany_cmd(
    source: Annotated[Path, typer.Argument(help="MIDI or token file to accompany.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the samples.", show_default=False)],
    program: Annotated[list[int] | None, typer.Option(help="GM program of a new part (repeat the option).")] = None,
    drums: Annotated[bool, typer.Option("--drums", help="Add a drum part.")] = False,
    bars: Annotated[str | None, typer.Option(help="Only these bars, A-B (default: every bar).")] = None,
    register: Annotated[str, typer.Option(
        help="Where new notes start: below the existing music's top line (its melody), above its bottom line "
             "(its bass), or any (anywhere in the instrument's range).")] = DEFAULT_REGISTER,
    harmony: Annotated[str, typer.Option(
        help="consonant: no new note starts a second, tritone or seventh from a note sounding then; "
             "free: the model's own harmony.")] = DEFAULT_HARMONY,
    fill: Annotated[str, typer.Option(
        help="beat: each new part sounds on every beat (a note starting there or held through it); "
             "bar: it plays in every bar and may rest.")] = DEFAULT_FILL,
    model_dir: ModelOption = None,
    adapter: AdapterOption = None,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    top_p: TopPOption = DEFAULT_TOP_P,
    top_k: TopKOption = 0,
    seed: SeedOption = 0,
    n: SamplesOption = 1,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder not made by accompany.")]
    = False,
) -> None:
    """Add new parts to a piece, keeping every existing note (.txt, .mid, .wav, .png each).

    Example: mozart accompany melody.mid --program 33 --program 0 -o out
    """
    from . import accompany

    check_output_dir(output, "samples.json", force)
    _check_inputs(models=(model_dir, adapter), sources=(source,))
    with PlotProcess() as plotter:  # started now: matplotlib loads in it while torch loads here
        used: dict[int, int] = {}
        texts = accompany(source, programs=tuple(program or ()), drums=drums, bars=bars, model=model_dir,
                          temperature=temperature, top_k=top_k, top_p=top_p, n=n, seed=seed, adapter=adapter,
                          on_stand_ins=used.update, register=register, harmony=harmony, fill=fill)
        _write_rewrites(texts, output, source, "accompany", plotter, model=str(model_dir or "built-in"),
                        adapter=adapter, bars=bars, programs=program, drums=drums, register=register, harmony=harmony,
                        fill=fill,
                        temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, n=n, stand_ins=used)


@app.command("evaluate")
def evaluate_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder (mozart dataset).", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Report folder.", show_default=False)],
    model_dir: Annotated[Path | None, typer.Option("-m", "--model", help="Model folder (default: built-in).")] = None,
    samples: Annotated[int, typer.Option(help="Samples per mode (constrained, unconstrained).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the first sample.")] = 0,
    bars: Annotated[int | None, typer.Option(help="Bars per sample (default: the test pieces' median).")] = None,
    stride: Annotated[int | None, typer.Option(help="Sliding-window stride, tokens (default: 3/4 of the context).")]
    = None,
    max_test_pieces: Annotated[int | None, typer.Option(help="Score only the first N test pieces.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the samples.")] = DEFAULT_TEMPERATURE,
    top_p: Annotated[float, typer.Option(help="Top-p (nucleus) share of the samples; 1.0: off.")] = DEFAULT_TOP_P,
    per_style: Annotated[bool, typer.Option(help="Also compare samples of each style with its test pieces.")]
    = True,
    train_reference: Annotated[int, typer.Option(help="... and with N random train segments of the style (0: not).")]
    = 300,
    precision: Annotated[str, typer.Option(help="Scoring: auto (bf16 on a CPU that has it), bf16 or fp32.")]
    = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder not made by evaluate.")]
    = False,
) -> None:
    """Likelihood (bits/note vs unigram and Kneser-Ney 4-gram), validity and musical statistics.

    Example: mozart evaluate -m runs/small data -o report --samples 32
    """
    from .controls import MAX_BARS, MAX_SAMPLES, MAX_SEED, check_options

    check_range("--samples", samples, 1, MAX_SAMPLES, integer=True)
    check_range("--seed", seed, 0, MAX_SEED, integer=True)
    check_range("--train-reference", train_reference, 0, 2**31 - 1, integer=True)
    for name, value in (("--bars", bars), ("--stride", stride), ("--max-test-pieces", max_test_pieces)):
        if value is not None:
            check_range(name, value, 1, MAX_BARS if name == "--bars" else 2**31 - 1, integer=True)
    check_options(temperature=temperature, top_p=top_p)
    check_output_dir(output, "report.json", force)
    _check_inputs(models=(model_dir,), datasets=(data_dir,), same_grid=(model_dir, data_dir))
    from .evaluate import EvaluateConfig, evaluate

    config = EvaluateConfig(samples=samples, seed=seed, bars=bars, stride=stride, max_test_pieces=max_test_pieces,
                            temperature=temperature, top_p=top_p, per_style=per_style,
                            train_reference=train_reference, precision=precision)
    report = evaluate(model_dir, data_dir, output, config, progress=not quiet)
    for name, r in report["likelihood"].items():
        typer.echo(f"{name:>22}: {r['bits_per_note']:7.2f} bits/note  {r['bits_per_token']:.3f} bits/token")
    for mode, v in report["validity"].items():
        typer.echo(f"{mode:>22}: {v['valid']}/{v['samples']} samples valid")
    for style, r in report.get("styles", {}).items():
        lowest = min(f["overlapping_area"] for f in r["features"].values())
        typer.echo(f"{'style ' + style:>22}: lowest OA {lowest:.2f} ({r['generated_pieces']} samples)")
    typer.echo(f"wrote {output / 'report.md'}, report.json and {len(report['plots'])} plots")


@app.command("stats")
def stats_cmd(
    midi_dir: Annotated[Path, typer.Argument(help="Folder of MIDI files (searched recursively).", show_default=False)],
    grid: GridOption = 24,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the statistics as JSON.")] = None,
) -> None:
    """Musical statistics of a corpus: mean and spread of every feature over its files.

    Example: mozart stats midi/ --json stats.json
    """
    import json

    from .dataset import find_midi_files
    from .evaluate import corpus_statistics
    from .midi import quantize, read_midi

    validate_grid(grid)
    if not midi_dir.is_dir():
        raise MozartError(f"{midi_dir}: no such folder")
    files = find_midi_files(midi_dir)
    if not files:
        raise MozartError(f"{midi_dir}: no MIDI files")
    pieces, failed, silent = [], 0, 0
    for path in files:
        try:
            piece = quantize(read_midi(path), grid)
        except MozartError as e:
            typer.echo(f"mozart: skipped {e}", err=True)
            failed += 1
            continue
        if piece.n_notes:
            pieces.append(piece)
        else:
            silent += 1
    if not pieces:
        raise MozartError(f"{midi_dir}: no readable MIDI file with notes")
    stats = corpus_statistics(pieces)
    typer.echo(f"{len(pieces)} pieces with notes ({len(files)} files, {failed} unreadable, {silent} without notes)")
    for name, r in stats.items():
        if "labels" in r:
            shares = " ".join(f"{label}={share:.2f}" for label, share in zip(r["labels"], r["mean"]))
            typer.echo(f"{name:>22}: {shares}")
        else:
            typer.echo(f"{name:>22}: {r['mean']:.3f} ± {r['std']:.3f}")
    if json_out is not None:
        write_atomic(json_out, json.dumps({"pieces": len(pieces), "files": len(files), "unreadable": failed,
                                           "without_notes": silent,
                                           "features": stats}, indent=1) + "\n")


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the studio to the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    model_dir: Annotated[Path | None, typer.Option("-m", "--model", help="Model folder (default: built-in).")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a --host other than this machine.")]
    = False,
    max_audio_minutes: Annotated[float, typer.Option(help="Longest audio a result may have, minutes.")] = 10.0,
    request_timeout: Annotated[float, typer.Option(help="Seconds a request body may take to arrive.")] = 30.0,
) -> None:
    """Mozart studio: a local web page to generate, listen, look and download.

    Example: mozart serve --port 7860   (then open http://127.0.0.1:7860/)
    """
    from .serve import serve

    check_range("--port", port, 1, 65535, integer=True)
    check_range("--max-audio-minutes", max_audio_minutes, 0, 240, low_open=True)
    check_range("--request-timeout", request_timeout, 0, 3600, low_open=True)
    _check_inputs(models=(model_dir,))
    serve(host, port, model_dir, allow_remote, max_audio_minutes * 60, request_timeout)


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the demo's files.")] = Path("out/demo"),
) -> None:
    """Round-trip the bundled public-domain chorale through tokens, then render and draw it.

    Example: mozart demo -o out/demo
    """
    from .midi import quantize, read_midi, write_midi

    source = resources.files("mozart") / "examples" / "bach_bwv66.6.mid"
    with resources.as_file(source) as path:
        score = read_midi(path)
    text = encode(score)
    decoded = decode(text)
    again = encode(decoded)
    output.mkdir(parents=True, exist_ok=True)
    files = {kind: output / f"bach_bwv66.6.{kind}" for kind in ("txt", "mid", "wav", "png")}
    write_atomic(files["txt"], text + "\n")
    write_midi(decoded, files["mid"])
    original, roundtrip = quantize(score), quantize(decoded)
    same_notes = sorted(zip(*_note_columns(original))) == sorted(zip(*_note_columns(roundtrip)))
    n_tokens = len(text.split())
    typer.echo(f"piece:        J. S. Bach, chorale BWV 66.6 (public domain), {score.note_num()} notes")
    typer.echo(f"tokens:       {n_tokens} ({n_tokens / max(1, score.note_num()):.2f} per note), grid 24")
    typer.echo(f"first tokens: {' '.join(text.split()[:16])} ...")
    typer.echo(f"round trip:   notes identical at the grid: {same_notes}; text identical: {again == text}")
    if not (same_notes and again == text):
        raise MozartError("demo round trip was not exact")
    plot(decoded, files["png"])
    try:
        audio = render(decoded, files["wav"])
        seconds = audio.shape[0] / 44100
        typer.echo(f"audio:        {seconds:.1f} s, 44.1 kHz stereo, normalised to -16 LUFS (peak <= -1 dBFS)")
    except MozartError as e:  # no FluidSynth or SoundFont here: say so, keep the rest
        del files["wav"]
        typer.echo(f"audio:        skipped ({e})")
    typer.echo("wrote:        " + ", ".join(str(f) for f in files.values()))
    from .models import default_model_dir

    if default_model_dir() is None:
        typer.echo("generation:   skipped (no built-in model in this installation; `make default-model`)")
        return
    for name, text in _demo_pieces():
        stem = output / name
        result = write_sample(text, stem)
        words = text.split()
        bars, notes = words.count(BAR), count_notes(words)
        typer.echo(f"{name + ':':<13} {bars} bars, {notes} notes with the built-in model (seed 0): "
                   + _written(stem, result))
    tune = output / "generated-folk.txt"
    if tune.exists():  # what musicians ask for first: parts added under a melody
        _demo_accompaniment(tune, output / "accompanied-folk")


#: The styles `mozart demo` generates a piece in.
DEMO_STYLES = ("folk", "chorale")
#: The parts `mozart demo` adds under its folk tune: a bass and strings (not a piano: the built-in model
#: writes its tunes on the piano, and a piano added to a piano is one part in the piano roll and the audio).
DEMO_ACCOMPANIMENT = (33, 48)


def _demo_accompaniment(tune: Path, stem: Path) -> None:
    """Add DEMO_ACCOMPANIMENT under the demo's folk tune (seed 0) and write it as ``stem``.*."""
    from . import accompany

    text = accompany(tune, programs=DEMO_ACCOMPANIMENT, seed=0)[0]
    result = write_sample(text, stem)
    typer.echo(f"{'accompanied:':<13} the folk tune with a bass and strings added under it (seed 0): "
               + _written(stem, result))


def _written(stem: Path, result: dict) -> str:
    """The files ``write_sample`` wrote for ``stem`` (and why the audio was skipped, if it was)."""
    return ", ".join(str(stem.with_suffix(f".{k}")) for k in ("txt", "mid", "wav", "png")
                     if stem.with_suffix(f".{k}").exists()) + (f" ({result['audio']})" if "audio" in result else "")


def _demo_pieces() -> list[tuple[str, str]]:
    """(file stem, text): 16 bars in each DEMO_STYLES from a model trained with style tokens; one
    piece in any style from a model without them.  The built-in model is loaded once for all."""
    from .controls import Controls, SamplingSettings, knows_style
    from .models import default_model_dir, load_sampler
    from .sampling import generate_pieces

    loaded = load_sampler(default_model_dir())
    vocab, outputs = loaded.tokenizer.get_vocab(), loaded.model.config.vocab_size
    if not all(knows_style(style, vocab, outputs) for style in DEMO_STYLES):
        return [("generated", generate_pieces(loaded, Controls(bars=16), SamplingSettings(), n=1, seed=0)[0])]
    return [(f"generated-{style}", generate_pieces(loaded, Controls(bars=16, style=style), SamplingSettings(),
                                                   n=1, seed=0)[0]) for style in DEMO_STYLES]


def _note_columns(piece):
    return (piece.note_stream.tolist(), piece.note_onset.tolist(), piece.note_duration.tolist(),
            piece.note_pitch.tolist(), piece.note_velocity.tolist())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning MozartError into a one-line error."""
    try:
        app(args=argv, prog_name="mozart")
    except KeyboardInterrupt:
        exit_interrupted()
    except SystemExit as e:
        if e.code == 130:  # typer turns a Ctrl-C inside a command into a silent exit 130: say why
            exit_interrupted()
        raise
    except Exception as e:
        if interrupt_requested():  # an error the Ctrl-C caused (an import it cut short): still an interrupt
            exit_interrupted()
        if isinstance(e, MozartError):
            print(f"mozart: error: {' '.join(str(e).split())}", file=sys.stderr)
            sys.exit(1)
        if not isinstance(e, OSError):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"mozart: error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(1)
