"""What a generation request may ask for, and the one validator every entry point shares.

``mozart generate`` (CLI), ``mozart.generate`` (Python API) and the studio's JSON API all
turn their inputs into :class:`Controls` and :class:`SamplingSettings` through
:func:`check_options` and :func:`parse_time_signature`, so a value refused by one is
refused by all three with the same one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass

from .defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from .errors import MozartError, check_range
from .events import DENOMINATORS, MAX_NUMERATOR
from .tokens import MAX_PLAIN_TEMPO_QPM, MIN_TEMPO_CENTI

#: Most bars one request may ask for (the studio asks for fewer: serve.MAX_BARS).
MAX_BARS = 1024
#: Most samples one request may ask for.
MAX_SAMPLES = 1000
#: Highest sampling temperature (beyond it every allowed word is about equally likely).
MAX_TEMPERATURE = 100.0
#: Seeds are non-negative and fit 63 bits (torch generators take 64; sample i uses seed + i).
MAX_SEED = 2**63 - 1 - MAX_SAMPLES


@dataclass(frozen=True)
class Controls:
    """What the piece must be (each field is an option of ``mozart generate``)."""

    bars: int = 16  # new bars after the prompt
    programs: tuple[int, ...] | None = None  # allowed General MIDI programs (None: any)
    drums: bool = True  # whether drum kits may play
    tempo: float | None = None  # fixed tempo in qpm (header only, no changes)
    time_signature: tuple[int, int] | None = None  # fixed time signature (no changes)
    style: str | None = None  # a style the model was trained on (tokenizer.STYLES); None: any
    # (stream, lowest, highest) pitch of new notes where not free: a stand-in keeps to the range of the
    # program it stands in for (standins.py); not an option, generate() sets it
    ranges: tuple[tuple[int, int, int], ...] = ()


#: Tokens a piece may spend per new bar by default (plus 64): the budget bounds a model caught in a loop, and
#: must not cut real music short.  Real bars take up to 147 tokens (test segments of the built-in model's
#: dataset: chorales median 67, 90th percentile 100; romantic 48 / 79); at 64 per bar, 8 of 56 built-in
#: samples of 16 bars ran out and ended in silent bars (the sampler's closing mode), one romantic quartet
#: with 8 of them.
TOKENS_PER_BAR = 128


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = 0  # 0: off
    top_p: float = DEFAULT_TOP_P  # 1.0: off
    constrained: bool = True  # False: the raw model (for evaluation)
    max_new_tokens: int | None = None  # default: TOKENS_PER_BAR per bar + 64 (token_budget)

    def token_budget(self, bars: int) -> int:
        """The most tokens a piece of ``bars`` new bars may spend."""
        return self.max_new_tokens or TOKENS_PER_BAR * bars + 64


def check_options(bars: int = 1, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                  tempo: float | None = None, seed: int = 0, prompt_bars: int = 1, programs=None,
                  max_bars: int = MAX_BARS) -> None:
    """Raise MozartError naming the first generation option that is not a finite value in range."""
    check_range("--bars", bars, 1, max_bars, integer=True)
    check_range("-n", n, 1, MAX_SAMPLES, integer=True)
    check_range("--temperature", temperature, 0, MAX_TEMPERATURE, low_open=True)
    check_range("--top-p", top_p, 0, 1, low_open=True)
    check_range("--top-k", top_k, 0, 2**31 - 1, integer=True)
    if tempo is not None:
        check_range("--tempo", tempo, MIN_TEMPO_CENTI / 100, MAX_PLAIN_TEMPO_QPM)
    check_range("--seed", seed, 0, MAX_SEED, integer=True)
    check_range("--prompt-bars", prompt_bars, 1, MAX_BARS, integer=True)
    for program in programs or ():
        check_range("--program", program, 0, 127, integer=True)


def check_style(style: str | None, vocab: dict[str, int] | None = None, model_size: int | None = None) -> None:
    """Raise MozartError unless ``style`` is None or a known style that the model (its tokenizer
    ``vocab`` and number of outputs ``model_size``, when given) was trained with."""
    from .tokenizer import STYLES

    if style is None:
        return
    if style not in STYLES:
        raise MozartError(f"--style {style!r}: expected one of {', '.join(STYLES)}")
    if vocab is not None and not knows_style(style, vocab, model_size or 0):
        raise MozartError(f"--style {style}: this model was trained without style tokens")


def check_model_style(style: str | None, model, vocab: dict[str, int]) -> None:
    """``check_style`` against a loaded model and its tokenizer's ``vocab``; a BART model takes no
    style (it learns continuation without the control token)."""
    check_style(style, vocab, model.config.vocab_size)
    if style and model.config.is_encoder_decoder:
        raise MozartError("--style: BART models learn continuation without styles; use a decoder")


def knows_style(style: str, vocab: dict[str, int], model_size: int) -> bool:
    """Whether a model (its tokenizer ``vocab``, ``model_size`` outputs) has the style's control token."""
    from .tokenizer import style_token

    return vocab.get(style_token(style), model_size) < model_size


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
