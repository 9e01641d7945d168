"""Training and LoRA fine-tuning with transformers' Trainer.

``train`` builds a model from a size recipe for a dataset's tokenizer and trains it with
gradient accumulation, warmup + cosine schedule, bf16/fp16 where the hardware has it,
evaluation on the valid split (nats/token, bits/token, bits/note), best-checkpoint
keeping and early stopping.  The run folder is a standard ``save_pretrained`` folder
(config, safetensors, tokenizer) plus ``metrics.csv``, ``metrics.json`` and
``loss.png``.  Under ``torchrun`` the Trainer runs DDP; only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from .errors import MozartError, check_range
from .files import check_dataset_dir
from .fim import FIM_ORDERS, fim_ids
from .hardware import PRECISIONS, cpu_has_bf16
from .interrupts import raise_if_interrupted
from .likelihood import likelihood
from .lmdata import (
    Examples,
    FimWindows,
    PackedWindows,
    causal_examples,
    collate,
    continuation_examples,
    load_tokenizer,
    piece_windows,
    read_split,
    store_texts,
)
from .models import ARCHS, SIZES, SpecialIds, build_model, check_same_grid, is_seq2seq, load_base, model_format
from .previous_tokens import previous_tokens
from .tokenizer import BOS, EOS, PAD, music_token_count, without_chosen_style
from .tokenstore import TokenStore
from .weights import MAX_PREVIOUS_TOKENS

COMPLETE_MARK = "checkpoint-complete"  # written into a checkpoint folder once it is whole


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe.  TOML files in configs/ override these defaults by field name."""

    arch: str = "llama"  # llama (the default family: ~1.6x GPT-2's tokens/s at equal width on CPU) | gpt2 | bart
    size: str = "tiny"  # tiny | small | medium | base (models.SIZES)
    context: int | None = None  # tokens per example; default: the size's context
    max_steps: int = 200  # optimizer steps
    batch_size: int = 8  # examples per device per micro-batch; with auto_batch, the effective batch to make up
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate
    warmup_ratio: float = 0.05  # share of steps spent warming up, then cosine decay
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int = 50  # steps between evaluations (and checkpoints)
    patience: int = 5  # evaluations without improvement before stopping early
    bars_in: int = 4  # bart: bars the encoder reads
    bars_out: int = 4  # bart: bars the decoder writes
    max_eval_examples: int = 512  # cap on valid examples per evaluation, to keep CPU runs quick
    validity_samples: int = 4  # unconstrained samples drawn after training to log the share passing `check`
    packing: bool = True  # decoders: train on full windows cut from the token store, no padding
    fim_rate: float = 0.5  # decoders: share of training windows rearranged for fill-in-the-middle (lmdata.FimWindows)
    fim_order: str = "spm"  # spm (suffix first: the middle follows the prefix; measured better) | psm
    previous_tokens: int = 0  # llama: embed this many tokens before each position into its input (previous_tokens.py)
    precision: str = "auto"  # auto (bf16 where the CPU or GPU has it) | bf16 | fp32
    auto_batch: bool = False  # GPU: the largest micro-batch that fits (halving on OOM), the rest by accumulation
    grad_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% more time
    max_minutes: float = 0  # wall-clock guard on the optimizer steps (0: none): stop early, keep the best checkpoint


#: The range of every numeric setting: (low, high, integer).  Seeds fit numpy's 32 bits.
_LIMITS = {"context": (16, 65536, True), "max_steps": (1, 10**9, True), "batch_size": (1, 65536, True),
           "grad_accum": (1, 65536, True), "lr": (1e-9, 10.0, False), "warmup_ratio": (0, 1, False),
           "weight_decay": (0, 10, False), "seed": (0, 2**32 - 1, True), "eval_every": (1, 10**9, True),
           "patience": (1, 10**6, True), "bars_in": (1, 256, True), "bars_out": (1, 256, True),
           "max_eval_examples": (1, 10**9, True), "validity_samples": (0, 1000, True),
           "fim_rate": (0, 1, False), "max_minutes": (0, 10**6, False),
           "previous_tokens": (0, MAX_PREVIOUS_TOKENS, True)}


def load_config(path: Path | None, **overrides) -> TrainConfig:
    """Defaults, then the TOML file's values, then explicit overrides (None = not given)."""
    values: dict = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            reason = "not a UTF-8 text file" if isinstance(e, UnicodeDecodeError) else getattr(e, "strerror", None) or e
            raise MozartError(f"{path}: cannot read config: {reason}") from None
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(values) - known
        if unknown:
            raise MozartError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = replace(TrainConfig(), **values)
    if config.arch not in ARCHS:
        raise MozartError(f"unknown --arch {config.arch!r}: choose one of {', '.join(ARCHS)}")
    if config.precision not in PRECISIONS:
        raise MozartError(f"unknown precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
    for flag in ("packing", "auto_batch", "grad_checkpointing"):
        if not isinstance(getattr(config, flag), bool):
            raise MozartError(f"{flag} {getattr(config, flag)!r}: expected true or false")
    if config.fim_order not in FIM_ORDERS:
        raise MozartError(f"unknown fim_order {config.fim_order!r}: choose one of {', '.join(FIM_ORDERS)}")
    if config.size not in SIZES:
        raise MozartError(f"unknown --size {config.size!r}: choose one of {', '.join(SIZES)}")
    if config.previous_tokens and config.arch != "llama":
        raise MozartError(f"previous_tokens is for llama models, not {config.arch}")
    for name, (low, high, integer) in _LIMITS.items():
        value = getattr(config, name)
        if value is not None or name != "context":
            check_range(f"--{name.replace('_', '-')}", value, low, high, integer)
    return config


def special_ids(tokenizer) -> SpecialIds:
    vocab = tokenizer.get_vocab()
    return SpecialIds(pad=vocab[PAD], bos=vocab[BOS], eos=vocab[EOS], vocab_size=len(vocab))


def build_examples(data_dir: Path, split: str, config: TrainConfig, context: int) -> Examples | PackedWindows:
    """The examples of one split: decoders read the token store (packed windows for training
    with ``packing``, one piece at a time otherwise); BART makes continuation pairs from the
    store's records; a dataset made before the token store existed is read from the JSONL."""
    data_dir = Path(data_dir)
    has_store = (data_dir / f"{split}.bin").is_file()
    tokenizer = load_tokenizer(data_dir)
    if is_seq2seq(config.arch):
        texts = store_texts(TokenStore(data_dir, split)) if has_store else read_split(data_dir, split)
        return continuation_examples(texts, tokenizer, context, config.bars_in, config.bars_out)
    if has_store:
        store = TokenStore(data_dir, split)
        packed = split == "train" and config.packing
        examples = PackedWindows(store, context, config.seed) if packed else piece_windows(store, context)
    else:
        examples = causal_examples(read_split(data_dir, split), tokenizer, context)
    markers = fim_ids(tokenizer.get_vocab())
    if split == "train" and config.fim_rate > 0 and markers is not None:
        return FimWindows(examples, markers, config.fim_rate, config.seed, config.fim_order)
    return examples


def precision_used(config: TrainConfig) -> str:
    """What ``config.precision`` means on this machine: bf16 or fp32 (fp16 on GPUs without bf16)."""
    if config.precision == "fp32":
        return "fp32"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else ("fp16" if config.precision == "auto" else "bf16")
    return "bf16" if config.precision == "bf16" or cpu_has_bf16() else "fp32"


class MetricsLog(TrainerCallback):
    """Appends every logged step to metrics.csv (rank 0 only) with bits/token and bits/note."""

    COLUMNS = ("step", "epoch", "train_loss", "eval_loss", "eval_bits_per_token", "eval_bits_per_note",
               "learning_rate")

    def __init__(self, path: Path, tokens_per_note: float):
        self.path, self.tokens_per_note = path, tokens_per_note

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
               "train_loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"),
               "learning_rate": logs.get("learning_rate")}
        if row["eval_loss"] is not None:
            bits = row["eval_loss"] / math.log(2)
            row["eval_bits_per_token"] = bits
            row["eval_bits_per_note"] = bits * self.tokens_per_note
        if row["train_loss"] is None and row["eval_loss"] is None:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)


class CommitCheckpoint(TrainerCallback):
    """Marks a checkpoint folder complete after the Trainer has written all of it; resume
    only trusts marked folders, so a kill mid-save never resumes from half a checkpoint."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE_MARK).write_text(str(state.global_step))


class StopOnCtrlC(TrainerCallback):
    """Raise a Ctrl-C that was lost in a library (see ``mozart.interrupts``) at the next step."""

    def on_step_end(self, args, state, control, **kwargs):
        raise_if_interrupted()


class StopAtDeadline(TrainerCallback):
    """``max_minutes``: ends training at the first step past the deadline (counted from the first
    step, so loading and set-up are not charged), with an evaluation and a checkpoint there, so a
    run on a lent machine cannot outlast its lease.  The learning-rate schedule still assumes
    ``max_steps``: size the steps to the budget and keep this as the guard."""

    def __init__(self, minutes: float):
        self.seconds, self.started = minutes * 60, None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.started is None:
            self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and self.started is not None and time.perf_counter() - self.started > self.seconds:
            control.should_training_stop = control.should_evaluate = control.should_save = True
        return control


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep only the rows of metrics.csv up to ``last_step`` (none for a fresh run)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= last_step]
    if not rows:
        path.unlink()
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MetricsLog.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def latest_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint with the completion mark; incomplete ones are removed."""
    found = []
    for folder in checkpoints.glob("checkpoint-*") if checkpoints.is_dir() else []:
        if (folder / COMPLETE_MARK).exists():
            found.append((int(folder.name.split("-")[1]), folder))
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return max(found)[1] if found else None


def _hardware(config: TrainConfig) -> dict:
    """Mixed precision (``precision_used``).  On CPU, use_cpu is what makes accelerate run DDP
    (with gloo) under torchrun instead of silently training each process alone."""
    precision = precision_used(config)
    mixed = {"bf16": True} if precision == "bf16" else {"fp16": True} if precision == "fp16" else {}
    return mixed if torch.cuda.is_available() else {"use_cpu": True, **mixed}


def _checkpointing(on: bool) -> dict:
    """The TrainingArguments switch for activation (gradient) checkpointing, by the name this
    transformers knows (``activation_checkpointing`` since 5.x, ``gradient_checkpointing`` before)."""
    from dataclasses import fields as dataclass_fields

    names = {f.name for f in dataclass_fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def training_arguments(run_dir: Path, config: TrainConfig) -> TrainingArguments:
    eval_every = max(1, min(config.eval_every, config.max_steps))
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(0, int(config.warmup_ratio * config.max_steps)),
        weight_decay=config.weight_decay,
        eval_strategy="steps",
        eval_steps=eval_every,
        save_strategy="steps",
        save_steps=eval_every,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, min(10, eval_every)),
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        **_checkpointing(config.grad_checkpointing),
        **_hardware(config),
    )


def _prepare(data_dir: Path, run_dir: Path, config: TrainConfig, resume: bool):
    """Check the folders; load the tokenizer and the train/valid examples."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    check_dataset_dir(data_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise MozartError(f"{run_dir}: exists and is not empty; use --resume to continue it, or another -o")
    set_seed(config.seed)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(data_dir))
    context = config.context or SIZES[config.size].context
    train_set = build_examples(data_dir, "train", config, context)
    valid_set = build_examples(data_dir, "valid", config, context)
    if not len(train_set) or not len(valid_set):
        raise MozartError(f"{data_dir}: the train and valid splits must both hold examples")
    if len(valid_set) > config.max_eval_examples:
        valid_set = Examples(valid_set.examples[: config.max_eval_examples])
    return hf_tokenizer, special_ids(hf_tokenizer), train_set, valid_set, context


def _fit(model, run_dir: Path, config: TrainConfig, resume: bool, hf_tokenizer, ids: SpecialIds,
         train_set: Examples | PackedWindows, valid_set: Examples) -> Trainer:
    """Run the Trainer (resuming from the newest complete checkpoint when asked)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tokens_per_note = sum(len(e.labels) for e in valid_set.examples) / max(1, valid_set.notes)
    trainer = Trainer(
        model=model,
        args=training_arguments(run_dir, config),
        train_dataset=train_set,
        eval_dataset=valid_set,
        data_collator=lambda batch: collate(batch, ids.pad),
        processing_class=hf_tokenizer,
        callbacks=[EarlyStoppingCallback(config.patience), MetricsLog(run_dir / "metrics.csv", tokens_per_note),
                   CommitCheckpoint(), StopAtDeadline(config.max_minutes), StopOnCtrlC()],
    )
    checkpoint = latest_complete_checkpoint(run_dir / "checkpoints") if resume else None
    if trainer.is_world_process_zero():
        # the log restarts where the checkpoint was taken: rows logged after it are redone
        _truncate_log(run_dir / "metrics.csv", int(checkpoint.name.split("-")[1]) if checkpoint else 0)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return trainer


def _finish(trainer: Trainer, run_dir: Path, config: TrainConfig, hf_tokenizer, ids: SpecialIds,
            valid_set: Examples, extra: dict | None = None) -> dict:
    metrics = {"config": asdict(config), "steps": trainer.state.global_step,
               "valid": likelihood(trainer.model, valid_set, ids.pad), **(extra or {})}
    if trainer.is_world_process_zero():
        metrics["validity"] = sample_validity(trainer.model, hf_tokenizer, ids, config.validity_samples, config.seed)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        plot_loss(run_dir / "metrics.csv", run_dir / "loss.png")
    return metrics


def train(data_dir: Path, run_dir: Path, config: TrainConfig, resume: bool = False) -> dict:
    """Train a model from scratch on a dataset folder into ``run_dir``; return final metrics."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    hf_tokenizer, ids, train_set, valid_set, context = _prepare(data_dir, run_dir, config, resume)
    model = build_model(config.arch, config.size, ids, context, previous_tokens=config.previous_tokens)
    model.config.fim_order = config.fim_order  # saved in config.json: infilling arranges its input the same way
    if config.auto_batch:
        config = fit_batch(model, config, context, ids)
    print_memory_estimate(model, config, context)
    trainer = _fit(model, run_dir, config, resume, hf_tokenizer, ids, train_set, valid_set)
    if trainer.is_world_process_zero():
        trainer.save_model(str(run_dir))
        hf_tokenizer.save_pretrained(str(run_dir))
    return _finish(trainer, run_dir, config, hf_tokenizer, ids, valid_set,
                   {"parameters": sum(p.numel() for p in model.parameters()), "data": str(data_dir),
                    "grid": model_format(data_dir), "context": context, "device": device_description(),
                    "precision": precision_used(config), "train_windows": len(train_set),
                    "seconds": round(time.perf_counter() - started, 1), "packages": package_versions()})


#: The packages whose versions a run records (metrics.json, then the model card), so a rebuild can
#: be compared like for like.
RECORDED_PACKAGES = ("mozart", "torch", "transformers", "accelerate", "tokenizers", "symusic", "numpy")


def package_versions() -> dict[str, str]:
    """Python's and each RECORDED_PACKAGES' installed version ("missing" when not installed)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def memory_estimate(model, config: TrainConfig, context: int) -> dict[str, float]:
    """Bytes training will hold, estimated before step one: parameters and gradients (fp32),
    AdamW's two moments, and the activations one micro-batch keeps for the backward pass (per
    layer about 34 x width + 5 x heads x context bytes per token, halved under bf16 autocast;
    with gradient checkpointing, one layer's worth plus each layer's input)."""
    params = sum(p.numel() for p in model.parameters())
    cfg = model.config  # transformers maps these standard names onto every family's own
    layers, width, heads = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    tokens = config.batch_size * context
    half = 0.5 if precision_used(config) in ("bf16", "fp16") else 1.0
    per_layer = tokens * (34 * width + 5 * heads * context) * half
    activations = (per_layer + layers * tokens * width * 2) if config.grad_checkpointing else per_layer * layers
    logits = tokens * cfg.vocab_size * 4 * 2  # fp32 logits and their gradient
    return {"parameters": params * 4.0, "gradients": params * 4.0, "optimizer": params * 8.0,
            "activations": activations + logits}


def print_memory_estimate(model, config: TrainConfig, context: int) -> None:
    est = memory_estimate(model, config, context)
    mib = {k: v / 2**20 for k, v in est.items()}
    print(f"mozart: memory estimate {sum(mib.values()):,.0f} MiB: parameters {mib['parameters']:,.0f}, gradients "
          f"{mib['gradients']:,.0f}, AdamW {mib['optimizer']:,.0f}, activations {mib['activations']:,.0f} "
          f"(micro-batch {config.batch_size} x {context} tokens, {precision_used(config)}"
          f"{', gradient checkpointing' if config.grad_checkpointing else ''})", flush=True)


def fit_batch(model, config: TrainConfig, context: int, ids: SpecialIds) -> TrainConfig:
    """``auto_batch``: on a GPU, the largest micro-batch (from ``batch_size`` down, halving) whose
    forward + backward at full context fits, and the gradient accumulation that makes up the
    effective batch ``batch_size x grad_accum``.  On a CPU memory is not probed (an allocation
    there does not fail, it swaps): the configured batch stays."""
    if not torch.cuda.is_available():
        return config
    effective = config.batch_size * config.grad_accum
    model.to("cuda")
    micro = config.batch_size
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision_used(config))
    while micro >= 1:
        try:
            batch = torch.full((micro, context), ids.bos, dtype=torch.long, device="cuda")
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                model(input_ids=batch, labels=batch).loss.backward()
            model.zero_grad(set_to_none=True)
            break
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            micro //= 2
    model.to("cpu")
    torch.cuda.empty_cache()
    if micro < 1:
        raise MozartError(f"one sequence of {context} tokens does not fit this GPU; try --grad-checkpointing "
                          "or a shorter context")
    accum = -(-effective // micro)
    print(f"mozart: micro-batch {micro} fits; {accum} accumulation steps make up the effective batch of "
          f"{micro * accum} (asked: {effective})", flush=True)
    return replace(config, batch_size=micro, grad_accum=accum)


def device_description() -> str:
    """What trained the model, in words: the GPUs, or the CPU and its threads."""
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
    return f"CPU, {torch.get_num_threads()} threads"


#: Modules LoRA adapts, per family (attention projections).
LORA_TARGETS = {"gpt2": ["c_attn", "c_proj"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "bart": ["q_proj", "k_proj", "v_proj", "out_proj"]}


def finetune(base_dir: Path, data_dir: Path, out_dir: Path, config: TrainConfig, lora_r: int = 8,
             lora_alpha: int = 16, merge: bool = False, resume: bool = False) -> dict:
    """LoRA-finetune the model in ``base_dir`` on a dataset; write the adapter (and, with
    ``merge``, a merged full model in ``out_dir/merged``).  The base folder is only read."""
    from peft import LoraConfig, TaskType, get_peft_model

    out_dir = Path(out_dir)
    data_grid = check_same_grid(base_dir, data_dir)
    base, arch = load_base(base_dir)
    config = replace(config, arch=arch)
    if base.config.vocab_size < load_tokenizer(data_dir).get_vocab_size():
        # a model from before the control specials: fine-tune left to right only
        if base.config.vocab_size < music_token_count(data_grid):
            raise MozartError(f"{base_dir}: vocabulary of {base.config.vocab_size} tokens is smaller than the "
                              f"dataset's {music_token_count(data_grid)} music tokens")
        stats = Path(data_dir) / "stats.json"
        styles = json.loads(stats.read_text()).get("styles", {}) if stats.is_file() else {}
        if set(styles) - {"none"}:
            raise MozartError(f"{data_dir}: its pieces carry style tokens the model {base_dir} was trained without; "
                              "rebuild the dataset without a style column in corpus.tsv to fine-tune it")
        config = replace(config, fim_rate=0.0)
    if config.fim_rate > 0:
        base.config.fim_order = config.fim_order  # the order this fine-tune trains (and infilling then uses)
    hf_tokenizer, ids, train_set, valid_set, _ = _prepare(data_dir, out_dir, config, resume)
    lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.05, target_modules=LORA_TARGETS[arch],
                      fan_in_fan_out=arch == "gpt2",
                      task_type=TaskType.SEQ_2_SEQ_LM if is_seq2seq(arch) else TaskType.CAUSAL_LM)
    model = get_peft_model(base, lora)
    if config.auto_batch:
        config = fit_batch(model, config, base.config.max_position_embeddings, ids)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    trainer = _fit(model, out_dir, config, resume, hf_tokenizer, ids, train_set, valid_set)
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(out_dir))
        hf_tokenizer.save_pretrained(str(out_dir))
        if merge:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(out_dir / "merged"))
            hf_tokenizer.save_pretrained(str(out_dir / "merged"))
    return _finish(trainer, out_dir, config, hf_tokenizer, ids, valid_set,
                   {"base": str(base_dir), "lora_r": lora_r, "lora_alpha": lora_alpha,
                    "trainable_parameters": trainable, "total_parameters": total})


@torch.no_grad()
def sample_validity(model, tokenizer, ids: SpecialIds, n: int, seed: int, max_new_tokens: int = 256) -> dict:
    """Draw ``n`` unconstrained samples with ``model.generate`` and report how many pass
    ``check`` (constrained sampling is generate.py's); a style token the model begins with is its
    choice of style, not music (``tokenizer.without_chosen_style``)."""
    from .tokens import TokenError, check

    if n <= 0:
        return {"samples": 0, "valid": 0}
    torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    start = torch.full((n, 1), ids.bos, dtype=torch.long, device=device)
    kwargs = {"decoder_input_ids": start} if model.config.is_encoder_decoder else {}
    # generate's cache feeds one token at a time, without the ones before it: a model that reads previous
    # tokens reads whole sequences instead (slower, right)
    out = model.generate(input_ids=start, do_sample=True, max_new_tokens=max_new_tokens, pad_token_id=ids.pad,
                         eos_token_id=ids.eos, use_cache=not previous_tokens(model.config), **kwargs)
    valid = 0
    for row in out.tolist():
        words = without_chosen_style([w for w in tokenizer.convert_ids_to_tokens(row) if w not in (PAD, BOS, EOS)])
        try:
            check(" ".join(words))
            valid += 1
        except TokenError:
            pass
    return {"samples": n, "valid": valid, "share": valid / n}


def loss_figure(metrics_csv: Path):
    """Train loss and valid bits/note over the steps of a run (None when the file has no rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    train = [(int(r["step"]), float(r["train_loss"])) for r in rows if r.get("train_loss")]
    valid = [(int(r["step"]), float(r["eval_bits_per_note"])) for r in rows if r.get("eval_bits_per_note")]
    if not train and not valid:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss (nats/token)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("nats/token")
    if valid:
        other = ax.twinx()
        other.plot(*zip(*valid), "o-", color="tab:red", label="valid bits/note")
        other.set_ylabel("valid bits/note")
        other.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title("training")
    fig.tight_layout()
    return fig


def plot_loss(csv_path: Path, png_path: Path) -> None:
    """Write ``loss_figure`` of a run's metrics.csv as a PNG (nothing when there are no rows)."""
    import matplotlib.pyplot as plt

    fig = loss_figure(csv_path) if csv_path.exists() else None
    if fig is not None:
        fig.savefig(png_path)
        plt.close(fig)
