"""Sampling that is valid by construction: grammar-masked logits, controls, a token budget.

At every step the logits of words the grammar (``grammar.GrammarState``) or the controls
forbid are set to -inf *before* temperature, top-k and top-p, so every sample passes
``check``.  Controls: exactly N new bars, only the requested programs (drums only when
allowed), a fixed tempo and time signature.  When the token budget runs short, the
sampler switches to a closing mode that takes the shortest way to a complete piece.
The mask is a transformers ``LogitsProcessor`` (``GrammarLogitsProcessor``); the loop is our
own (``decoding.step_decoder``: the model's KV cache, a faster exact path for GPT-2) so that
the order of masking and warping is guaranteed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .decoding import step_decoder
from .errors import MozartError
from .events import DENOMINATORS, MAX_NUMERATOR
from .grammar import GrammarState, new_state
from .tokenizer import BOS, EOS, PAD
from .tokens import TYPES

#: Tokens kept in reserve per missing bar (and for finishing the current note) before the
#: sampler starts closing the piece.
CLOSING_MARGIN = 12


@dataclass(frozen=True)
class Controls:
    """What the piece must be (each field is an option of ``mozart generate``)."""

    bars: int = 16  # new bars after the prompt
    programs: tuple[int, ...] | None = None  # allowed General MIDI programs (None: any)
    drums: bool = True  # whether drum kits may play
    tempo: float | None = None  # fixed tempo in qpm (header only, no changes)
    time_signature: tuple[int, int] | None = None  # fixed time signature (no changes)


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    constrained: bool = True  # False: the raw model (for evaluation)
    max_new_tokens: int | None = None  # default: 64 per bar + 64


def check_options(bars: int = 1, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                  tempo: float | None = None, max_bars: int | None = None) -> None:
    """Raise MozartError naming the first generation option out of range."""
    if tempo is not None and not 1 <= tempo <= 774:
        raise MozartError(f"--tempo {tempo}: expected 1..774 qpm")
    if bars < 1 or (max_bars is not None and bars > max_bars):
        raise MozartError(f"--bars {bars}: expected " + (f"1..{max_bars}" if max_bars else "at least 1"))
    if n < 1:
        raise MozartError(f"-n {n}: expected at least 1")
    if not temperature > 0:
        raise MozartError(f"--temperature {temperature}: expected > 0")
    if not 0 < top_p <= 1:
        raise MozartError(f"--top-p {top_p}: expected 0 < p <= 1")
    if top_k < 0:
        raise MozartError(f"--top-k {top_k}: expected >= 0")


def parse_time_signature(text: str | None) -> tuple[int, int] | None:
    """``"3/4"`` -> (3, 4); None stays None."""
    if text is None:
        return None
    num, sep, den = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        parsed = int(num), int(den)
    except ValueError:
        raise MozartError(f"--time-signature {text!r}: expected N/D, e.g. 3/4") from None
    check_time_signature(*parsed)
    return parsed


def check_time_signature(numerator: int, denominator: int) -> None:
    """Raise MozartError unless the token format can spell the time signature."""
    if not (1 <= numerator <= MAX_NUMERATOR and denominator in DENOMINATORS):
        raise MozartError(f"--time-signature {numerator}/{denominator}: the token format holds numerators "
                          f"1..{MAX_NUMERATOR} over {', '.join(map(str, DENOMINATORS))}")


@dataclass
class Constraint:
    """The grammar plus the controls, for one sample."""

    state: GrammarState
    controls: Controls
    target_bars: int  # Bar tokens the finished piece has
    prompt_bars: int = 0  # bars the prompt owns: nothing new may be written into them
    type_ids: dict[str, np.ndarray] = field(init=False)  # vocabulary ids of each token type
    never: np.ndarray = field(init=False)  # words the controls forbid everywhere
    after_header: np.ndarray = field(init=False)  # words the controls forbid once the header is written
    only_bar: np.ndarray = field(init=False)  # the Bar word alone

    def __post_init__(self) -> None:
        v, c = self.state.vocab, self.controls
        self.type_ids = {t: np.flatnonzero(v.type_of == i) for i, t in enumerate(TYPES)}
        # what the controls forbid, computed once: sampling asks every token
        self.never = np.zeros(len(v), dtype=bool)
        if c.programs is not None:
            progs = self.type_ids["Prog"]
            self.never[progs[~np.isin(v.value_of[progs], np.asarray(c.programs))]] = True
        if not c.drums:
            self.never[self.type_ids["Drums"]] = True
        self.after_header = np.zeros(len(v), dtype=bool)
        if c.tempo is not None:  # the given header tempo holds: no hundredths added, no changes
            for t in ("Tempo", "TempoHi", "TempoFrac"):
                self.after_header[self.type_ids[t]] = True
        if c.time_signature is not None:  # no changes, and so no bar cut short for one
            self.after_header[self.type_ids["TS"]] = True
        self.only_bar = np.zeros(len(v), dtype=bool)
        self.only_bar[self.type_ids["Bar"]] = True

    def allowed(self, budget_left: int) -> tuple[np.ndarray, bool]:
        """(mask over the vocabulary, whether the piece may end now)."""
        s, c = self.state, self.controls
        mask = s.allowed()
        bar_now = mask[self.type_ids["Bar"]].any()
        if s.header_done and s.bars <= self.prompt_bars and bar_now:  # close the prompt's bars first
            return mask & self.only_bar, False
        if s.bars >= self.target_bars:
            mask[self.type_ids["Bar"]] = False  # exactly the requested bars
        mask &= ~self.never
        if s.prev == "DurHi" and mask[self.type_ids["Dur"]].any():
            # one high digit when the grammar allows it (a new note then lasts under 32 whole notes); more
            # only where canonical order demands it (a longer note of the same pitch at the same step)
            mask[self.type_ids["DurHi"]] = False
        if s.header_done:
            mask &= ~self.after_header
            if c.time_signature is not None and s.prev == "Pos":
                mask[self.type_ids["Bar"]] = False
        can_end = s.can_end() and s.bars == self.target_bars
        if budget_left <= self._tokens_to_close() + CLOSING_MARGIN:
            return self._closing_mask(mask, can_end), can_end
        if not mask.any() and not can_end:  # controls left nothing: fall back to closing
            return self._closing_mask(s.allowed(), can_end), can_end
        return mask, can_end

    def _tokens_to_close(self) -> int:
        return (self.target_bars - self.state.bars) + 6

    def _closing_mask(self, mask: np.ndarray, can_end: bool) -> np.ndarray:
        """One word: the shortest way to a complete piece."""
        out = np.zeros_like(mask)
        if can_end:
            return out  # only the end may come
        s, v = self.state, self.state.vocab
        order = ["Dur", "DurHi", "Vel", "TempoFrac", "Tempo", "TempoHi", "TS"]
        if s.bars < self.target_bars and s.prev != "Pos":
            order.append("Bar")
        order += ["Pos", "PosHi", "Prog", "Drums", "Pitch", "Bar"]
        for t in order:
            ids = self.type_ids[t][mask[self.type_ids[t]]]
            if ids.size:
                if t == "Vel":
                    pick = ids[np.argmin(np.abs(v.value_of[ids] - 64))]
                elif t == "Pitch":
                    pick = ids[np.argmin(np.abs(v.value_of[ids] - 60))]
                else:
                    pick = ids[0]
                out[pick] = True
                return out
        return mask  # nothing in the list: any allowed word

    def advance(self, vocab_id: int) -> None:
        self.state.advance(vocab_id)


class GrammarLogitsProcessor(LogitsProcessor):
    """A transformers ``LogitsProcessor`` that sets to -inf, row by row, the logits of every
    token the grammar or the controls forbid (``Constraint.allowed``), ``<eos>`` included
    until the piece may end.

    Each row's constraint is advanced with the tokens that appeared in ``input_ids`` since
    the last call, so the processor works inside ``model.generate`` as well as in
    ``sample_piece``.  Put it *before* temperature, top-k and top-p: transformers appends
    custom processors after its own warpers, so with ``generate`` pass the warpers in the
    same list after this one and turn generate's own off (``hf_logits_processors``).
    """

    def __init__(self, constraints: list[Constraint], tokenizer, budget: int, start: int):
        vocab_words = tokenizer.get_vocab()
        words = constraints[0].state.vocab.words
        self.to_model = np.array([vocab_words[w] for w in words])
        self.from_model = np.full(max(vocab_words.values()) + 1, -1)
        self.from_model[self.to_model] = np.arange(len(words))
        self.eos, self.pad = vocab_words[EOS], vocab_words[PAD]
        self.constraints, self.budget, self.start = constraints, budget, start
        self.seen = [start] * len(constraints)  # input_ids columns already fed to each constraint
        self.ended = [False] * len(constraints)

    def row_mask(self, row: int, new_tokens: list[int], used: int, size: int) -> torch.Tensor:
        """Feed ``row``'s new tokens to its constraint; the mask of tokens allowed next."""
        constraint = self.constraints[row]
        for token in new_tokens:
            if token == self.eos or token == self.pad:
                self.ended[row] = True
            if not self.ended[row]:
                constraint.advance(int(self.from_model[token]))
        allowed = torch.zeros(size, dtype=torch.bool)
        if self.ended[row]:  # generate pads finished rows; anything is fine there
            allowed[self.pad] = True
            return allowed
        mask, can_end = constraint.allowed(self.budget - used)
        allowed[torch.from_numpy(self.to_model[mask])] = True
        allowed[self.eos] = can_end
        if not allowed.any():  # nothing left (cannot happen with a satisfiable control): end the piece
            allowed[self.eos] = True
        return allowed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        used = input_ids.shape[1] - self.start
        for row in range(scores.shape[0]):
            new = input_ids[row, self.seen[row]:].tolist()
            self.seen[row] = input_ids.shape[1]
            allowed = self.row_mask(row, new, used, scores.shape[1]).to(scores.device)
            scores[row] = scores[row].masked_fill(~allowed, float("-inf"))
        return scores


def _warp(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then top-p, on already-masked logits."""
    logits = logits / max(settings.temperature, 1e-6)
    if settings.top_k and settings.top_k > 0:
        k = min(settings.top_k, int(torch.isfinite(logits).sum()))
        threshold = torch.topk(logits, k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cumulative = torch.cumsum(probs, dim=-1)
        drop = cumulative - probs > settings.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


def _new_constraint(prompt_words: list[str], controls: Controls, prompt_bars: int, grid: int) -> Constraint:
    state = new_state(grid)
    for w in prompt_words:
        state.advance(state.vocab.index[w])
    return Constraint(state, controls, target_bars=max(prompt_bars, state.bars) + controls.bars,
                      prompt_bars=max(prompt_bars, state.bars))


def hf_logits_processors(model, tokenizer, prompt_words: list[str], controls: Controls, settings: SamplingSettings,
                         prompt_bars: int = 0, grid: int = 24, batch: int = 1) -> LogitsProcessorList:
    """The grammar mask then temperature, top-k, top-p, for ``model.generate(..., do_sample=True,
    temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=budget)`` with input ``<bos> + prompt``."""
    budget = settings.max_new_tokens or 64 * controls.bars + 64
    start = 1 if model.config.is_encoder_decoder else len(prompt_words) + 1
    constraints = [_new_constraint(prompt_words, controls, prompt_bars, grid) for _ in range(batch)]
    out = LogitsProcessorList([GrammarLogitsProcessor(constraints, tokenizer, budget, start),
                               TemperatureLogitsWarper(settings.temperature)])
    if settings.top_k:
        out.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        out.append(TopPLogitsWarper(settings.top_p))
    return out


@torch.no_grad()
def sample_piece(model, tokenizer, prompt_words: list[str], controls: Controls, settings: SamplingSettings,
                 prompt_bars: int = 0, grid: int = 24, generator: torch.Generator | None = None,
                 progress: Callable[[float], None] | None = None) -> list[str]:
    """Sample one piece; returns its words (the prompt's words first, unchanged).

    ``prompt_words`` is a canonical prefix (at least a header); ``prompt_bars`` the number
    of bars the prompt stands for (its trailing empty bars are not in its text).
    ``progress``, when given, is called after every token with the share done (new bars
    begun / bars asked for; tokens / budget without constraints).
    """
    vocab_words = tokenizer.get_vocab()
    constraint = _new_constraint(prompt_words, controls, prompt_bars, grid)
    n_model = model.config.vocab_size
    eos, bos, pad = vocab_words[EOS], vocab_words[BOS], vocab_words[PAD]
    budget = settings.max_new_tokens or 64 * controls.bars + 64
    device = next(model.parameters()).device
    prefix = [bos] + [vocab_words[w] for w in prompt_words]
    words = list(prompt_words)
    if model.config.is_encoder_decoder:
        encoder_ids = torch.tensor([_encoder_context(prefix, prompt_words, vocab_words, bos)], device=device)
        decoder = step_decoder(model, model.get_encoder()(input_ids=encoder_ids))
        first = [model.config.decoder_start_token_id]
    else:
        context = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        budget = min(budget, context - len(prefix))
        if budget <= 0:
            raise MozartError(f"the prompt ({len(prefix)} tokens) fills the model's context of {context}")
        decoder = step_decoder(model)
        first = prefix
    processor = GrammarLogitsProcessor([constraint], tokenizer, budget, start=len(first))
    logits = decoder.step(first)[:n_model]
    new_tokens: list[int] = []
    for used in range(budget + 1):
        if settings.constrained:
            allowed = processor.row_mask(0, new_tokens, used, n_model).to(device)
            logits = logits.masked_fill(~allowed, float("-inf"))
        else:
            logits[pad] = float("-inf")
        probs = torch.softmax(_warp(logits, settings), dim=-1)
        token = int(torch.multinomial(probs, 1, generator=generator))
        if token == eos or used == budget:
            break
        words.append(tokenizer.convert_ids_to_tokens(token))
        new_tokens = [token]
        if progress is not None:
            done = (constraint.state.bars - constraint.prompt_bars) / controls.bars if settings.constrained \
                else (used + 1) / budget
            progress(min(1.0, max(0.0, done)))
        logits = decoder.step(new_tokens)[:n_model]
    return words


def _encoder_context(prefix_ids: list[int], prompt_words: list[str], vocab_words: dict, bos: int,
                     bars_in: int = 4) -> list[int]:
    """BART's encoder input: <bos>, the header and the prompt's last ``bars_in`` bars."""
    bar_at = [i for i, w in enumerate(prompt_words) if w == "Bar"]
    header = prompt_words[: bar_at[0]] if bar_at else prompt_words
    tail = prompt_words[bar_at[-bars_in]:] if len(bar_at) >= bars_in else prompt_words[len(header):]
    return [bos] + [vocab_words[w] for w in header + tail]


def header_words(controls: Controls, grid: int = 24) -> list[str] | None:
    """The header the controls fix, or None when the model should choose it."""
    if controls.tempo is None and controls.time_signature is None:
        return None
    num, den = controls.time_signature or (4, 4)
    centi = int(round((controls.tempo or 120.0) * 100))
    words = ["Format_1", f"Grid_{grid}", f"TS_{num}/{den}"]
    whole, frac = divmod(centi, 100)
    high, low = divmod(whole, 256)
    digits = []
    while high:
        high, d = divmod(high, 16)
        digits.insert(0, f"TempoHi_{d}")
    words += digits + [f"Tempo_{low}"] + ([f"TempoFrac_{frac}"] if frac else [])
    check_time_signature(num, den)
    return words



def prompt_from_midi(path, bars: int, grid: int = 24) -> tuple[list[str], int]:
    """The canonical words of the first ``bars`` bars of a MIDI file (and that bar count)."""
    from .events import bar_layout, slice_steps
    from .midi import quantize, read_midi
    from .tokens import encode_piece

    piece = quantize(read_midi(path), grid)
    starts, _ = bar_layout(piece)
    if bars < 1 or starts.size == 0:
        raise MozartError(f"{path}: the prompt needs at least one bar with notes")
    bars = min(bars, int(starts.size))
    stop = int(starts[bars]) if bars < starts.size else None
    return encode_piece(slice_steps(piece, 0, stop)).split(), bars


def load_generator(model_dir, adapter=None):
    """A trained model folder (optionally with a LoRA adapter) and its tokenizer."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from .train import load_base

    model, _ = load_base(Path(model_dir))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(model_dir))


def generate_pieces(model, tokenizer, controls: Controls, settings: SamplingSettings, n: int = 1, seed: int = 0,
                    prompt: tuple[list[str], int] | None = None, grid: int = 24,
                    progress: Callable[[float], None] | None = None) -> list[str]:
    """``n`` pieces as token texts; sample i uses seed ``seed + i`` (same settings -> same texts).
    ``progress`` is called with the share of all ``n`` pieces done."""
    prompt_words, prompt_bars = prompt if prompt else (header_words(controls, grid) or [], 0)
    texts = []
    for i in range(n):
        generator = torch.Generator().manual_seed(seed + i)
        report = None if progress is None else (lambda share, i=i: progress((i + share) / n))
        words = sample_piece(model, tokenizer, prompt_words, controls, settings, prompt_bars, grid, generator,
                             report)
        texts.append(" ".join(words))
    return texts


def default_model_dir():
    """The built-in model's folder inside the package, or None when it is not there."""
    from importlib import resources

    folder = resources.files("mozart") / "default_model"
    return folder if (folder / "config.json").is_file() else None
