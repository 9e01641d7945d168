"""The sampling loop: a batch of pieces, one row each, the grammar mask first, then temperature,
top-k, top-p.

The loop is our own so that the order of masking and warping is guaranteed; it works on numpy arrays
whatever runs the model: a plain GPT-2 or Llama read by ``models.load_sampler`` steps through
``npdecoding``'s numpy decoders (torch is never imported), anything else through ``decoding``'s torch
step decoders.  The mask is ``masks.GrammarLogitsProcessor``.  What may be asked is in controls.py,
prompts in prompts.py; the model (and the grid it speaks) comes from ``models.load_model`` or
``models.load_sampler``.

Each row draws from its own ``numpy.random.Generator``, so a seed gives the same piece whatever the batch
(the decoders are row-exact, tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .controls import Controls, SamplingSettings, check_model_style
from .errors import MozartError
from .interrupts import raise_if_interrupted
from .masks import GrammarLogitsProcessor, new_constraint
from .models import LoadedModel
from .npdecoding import numpy_decoder_for, softmax
from .tokenizer import BOS, EOS, PAD, style_token, without_chosen_style
from .tokens import BAR, bar_indices, format_of_words, header_words
from .weights import DecoderWeights

#: Rows sampled in one batch at most: each row holds a KV cache (layers x 2 x context x width floats).
MAX_BATCH = 16

NEG_INF = np.float32(-np.inf)


def _warp(logits: np.ndarray, settings: SamplingSettings) -> np.ndarray:
    """Temperature, then top-k, then top-p, on already-masked logits (one row per sample)."""
    logits = logits / np.float32(max(settings.temperature, 1e-6))
    if settings.top_k and settings.top_k > 0:
        k = min(settings.top_k, logits.shape[-1])
        threshold = -np.partition(-logits, k - 1, axis=-1)[:, k - 1:k]  # each row's k-th largest
        logits = np.where(logits < threshold, NEG_INF, logits)
    if settings.top_p < 1.0:
        logits = np.where(_nucleus(logits, settings.top_p), logits, NEG_INF)
    return logits


def _nucleus(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Per row, the smallest set of likeliest words whose probabilities reach ``top_p`` (a word is kept
    when the words likelier than it hold at most ``top_p``); ties in the order of the vocabulary."""
    probs = softmax(logits)
    order = np.argsort(-probs, axis=-1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=-1)
    kept = np.cumsum(ranked, axis=-1) - ranked <= top_p
    keep = np.empty_like(kept)
    np.put_along_axis(keep, order, kept, axis=-1)
    return keep


def _draw(probs: np.ndarray, generators: list[np.random.Generator]) -> list[int]:
    """One token per row, each row from its own generator: a sample does not depend on the rows beside
    it, so a seed gives the same piece whatever the batch.  Inverse-CDF sampling: one uniform number
    per row, then the first word whose cumulative share passes it."""
    uniform = np.array([g.random() for g in generators])
    cumulative = np.cumsum(probs, axis=-1, dtype=np.float64)
    # the count of words whose cumulative share is at most u * total: a word of zero probability never is
    picked = (cumulative <= (uniform * cumulative[:, -1])[:, None]).sum(axis=-1)
    # u * total can round up to the total itself: then the last word that has any probability
    last = probs.shape[-1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(picked, last).tolist()


def sample_pieces(model, tokenizer, prompt_words: list[str], controls: Controls, settings: SamplingSettings,
                  prompt_bars: int = 0, *, grid: int, generators: list[np.random.Generator],
                  progress: Callable[[float], None] | None = None) -> list[list[str]]:
    """Sample one piece per generator, as one batch: one forward per step for all rows that
    are still writing, a grammar state and a mask per row; a row that ends leaves the batch.
    Returns each piece's words (the prompt's words first, unchanged); sampled without constraints from
    ``<bos>`` alone, less a style token the model begins with (``tokenizer.without_chosen_style``).

    ``prompt_words`` is a canonical prefix (at least a header); ``prompt_bars`` the number
    of bars the prompt stands for (its trailing empty bars are not in its text).
    ``progress``, when given, is called after every step with the share done (new bars
    begun / bars asked for, or tokens / budget without constraints; the mean over rows).
    """
    vocab_words = tokenizer.get_vocab()
    word_of = {i: w for w, i in vocab_words.items()}
    rows = len(generators)
    constraints = [new_constraint(prompt_words, controls, prompt_bars, grid) for _ in range(rows)]
    n_model = model.config.vocab_size
    eos, bos, pad = vocab_words[EOS], vocab_words[BOS], vocab_words[PAD]
    budget = settings.token_budget(controls.bars)
    check_model_style(controls.style, model, vocab_words)
    style = [vocab_words[style_token(controls.style)]] if controls.style else []
    prefix = [bos] + style + [vocab_words[w] for w in prompt_words]
    words = [list(prompt_words) for _ in range(rows)]
    encoder_ids = _encoder_context(prompt_words, vocab_words, bos) if model.config.is_encoder_decoder else None
    window = _Window(model, prefix, encoder_ids, rows=rows)
    processor = GrammarLogitsProcessor(constraints, tokenizer, budget, start=window.length)
    live = list(range(rows))  # the rows still writing, in the window's row order
    new_tokens: list[list[int]] = [[] for _ in range(rows)]
    shares = [0.0] * rows
    logits = window.logits[:, :n_model]
    for used in range(budget + 1):
        raise_if_interrupted()
        if settings.constrained:
            allowed = np.stack([processor.row_mask(r, new_tokens[r], used, n_model) for r in live])
            logits = np.where(allowed, logits, NEG_INF)
        else:
            logits = logits.copy()
            logits[:, pad] = NEG_INF
        tokens = _draw(softmax(_warp(logits, settings)), [generators[r] for r in live])
        going = [i for i, t in enumerate(tokens) if t != eos and used < budget]
        for i in going:
            r = live[i]
            words[r].append(word_of[tokens[i]])
            new_tokens[r] = [tokens[i]]
            shares[r] = (constraints[r].state.bars - constraints[r].prompt_bars) / controls.bars \
                if settings.constrained else (used + 1) / budget
        for i in set(range(len(live))) - set(going):
            shares[live[i]] = 1.0
        if progress is not None:
            progress(min(1.0, max(0.0, sum(shares) / rows)))
        if not going:
            break
        if len(going) < len(live):
            window.keep(going)
            live = [live[i] for i in going]
        logits = window.feed([tokens[i] for i in going])[:, :n_model]
    if not settings.constrained and prefix == [bos]:
        return [without_chosen_style(w) for w in words]
    return words


class _Window:
    """The model reading a growing batch of sequences (rows in lockstep) through its KV cache; when
    the context is full the window slides: a fresh cache reads the last half again (training
    windows start anywhere too, so the model knows such windows), and sampling goes on, so any
    number of bars fits.  ``logits``: the next token's, one row per sequence (numpy, float32)."""

    def __init__(self, model, prompt_ids: list[int], encoder_ids: list[int] | None = None, rows: int = 1):
        self.context = model.config.max_position_embeddings
        if encoder_ids is not None:  # BART: the decoder starts empty, reading the encoder's outputs
            self.start = [model.config.decoder_start_token_id]
            first = list(self.start)
        else:
            self.start = []
            first = list(prompt_ids)
            if len(first) >= self.context:  # a prompt longer than the context: its end
                first = first[-(self.context // 2):]
        self.history = np.array([first] * rows, dtype=np.int64)
        self.decoder = _step_decoder(model, encoder_ids, rows)
        self.logits = self.decoder.step(self.history)

    @property
    def length(self) -> int:
        """Tokens each row has read so far (since the last slide)."""
        return self.history.shape[1]

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows only (indices into the current rows)."""
        index = np.array(rows, dtype=np.int64)
        self.history = self.history[index]
        self.decoder.keep(index)

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Read one more token per row; the logits of the next, one row each."""
        column = np.array(tokens, dtype=np.int64)[:, None]
        self.history = np.concatenate([self.history, column], axis=1)
        if self.length < self.context:
            self.logits = self.decoder.step(column)
        else:
            keep = self.history[:, -(self.context // 2):]
            start = np.array([self.start] * keep.shape[0], dtype=np.int64).reshape(keep.shape[0], -1)
            self.history = np.concatenate([start, keep], axis=1)
            self.decoder = self.decoder.fresh()  # the same weights, an empty cache for the rows kept
            self.logits = self.decoder.step(self.history)
        return self.logits


def _step_decoder(model, encoder_ids: list[int] | None, rows: int):
    """A step decoder for ``rows`` rows that takes and returns numpy arrays: numpy's for a light-loaded
    model, else torch's behind :class:`_TorchSteps` (BART's reading ``encoder_ids``, encoded once)."""
    if isinstance(model, DecoderWeights):
        return numpy_decoder_for(model, rows)
    import torch

    from .decoding import step_decoder

    encoded = None
    if encoder_ids is not None:  # every row reads the same input: encoded once, so each row reads it as alone
        with torch.no_grad():
            device = next(model.parameters()).device
            encoded = model.get_encoder()(input_ids=torch.tensor([encoder_ids], device=device))
        encoded.last_hidden_state = encoded.last_hidden_state.expand(rows, -1, -1)
    return _TorchSteps(step_decoder(model, encoded, batch=rows))


class _TorchSteps:
    """A torch step decoder (decoding.py) behind numpy arrays, as the sampler works on them."""

    def __init__(self, decoder):
        self.decoder = decoder

    def step(self, ids: np.ndarray) -> np.ndarray:
        import torch

        return self.decoder.step(torch.from_numpy(ids)).cpu().numpy()

    def keep(self, rows: np.ndarray) -> None:
        import torch

        self.decoder.keep(torch.from_numpy(rows))

    def fresh(self) -> _TorchSteps:
        return _TorchSteps(self.decoder.fresh())


def sample_span(model, tokenizer, prompt_ids: list[int], constraint, settings: SamplingSettings, *, budget: int,
                encoder_ids: list[int] | None = None, generator: np.random.Generator | None = None) -> None:
    """Sample the span a ``templates.SpanConstraint`` describes after ``prompt_ids`` (the model's
    input: ``<bos>`` and the prompt, or a fill-in-the-middle arrangement ending ``<fim_middle>``;
    for BART, ``encoder_ids`` and the decoder starts empty).  The notes written are left in
    ``constraint.notes``.  Stops on ``<eos>`` or on the ``Bar`` that would begin the bar after
    the span, once the span is complete.  ``budget`` caps the tokens written; when the model's
    context fills up, the window slides (the model reads the last half of what it read)."""
    vocab_words = tokenizer.get_vocab()
    n_model = model.config.vocab_size
    eos, bar = vocab_words[EOS], vocab_words[BAR]
    generator = generator if generator is not None else np.random.default_rng()
    window = _Window(model, prompt_ids, encoder_ids if model.config.is_encoder_decoder else None)
    processor = GrammarLogitsProcessor([constraint], tokenizer, budget, start=window.length)
    logits = window.logits[:, :n_model]
    new_tokens: list[int] = []
    for used in range(budget + 1):
        raise_if_interrupted()
        allowed = processor.row_mask(0, new_tokens, used, n_model)
        token = _draw(softmax(_warp(np.where(allowed, logits, NEG_INF), settings)), [generator])[0]
        if token == eos or used == budget or (token == bar and constraint.state.bars == constraint.target_bars):
            break
        new_tokens = [token]
        logits = window.feed([token])[:, :n_model]
    if not constraint.complete():
        raise MozartError("the span ran out of tokens before its last bar")


def _encoder_context(prompt_words: list[str], vocab_words: dict, bos: int,
                     bars_in: int = 4) -> list[int]:
    """BART's encoder input: <bos>, the header and the prompt's last ``bars_in`` bars."""
    bar_at = bar_indices(prompt_words)
    header = prompt_words[: bar_at[0]] if bar_at else prompt_words
    tail = prompt_words[bar_at[-bars_in]:] if len(bar_at) >= bars_in else prompt_words[len(header):]
    return [bos] + [vocab_words[w] for w in header + tail]


def controls_header(controls: Controls, grid: int) -> list[str] | None:
    """The header the controls fix, or None when the model should choose it."""
    if controls.tempo is None and controls.time_signature is None:
        return None
    return header_words(grid, controls.time_signature or (4, 4), int(round((controls.tempo or 120.0) * 100)))


def generate_pieces(loaded: LoadedModel, controls: Controls, settings: SamplingSettings, n: int = 1, seed: int = 0,
                    prompt: tuple[list[str], int] | None = None,
                    progress: Callable[[float], None] | None = None, seeds: list[int] | None = None) -> list[str]:
    """``n`` pieces as token texts at the model's grid; sample i uses seed ``seed + i`` (same
    settings -> same texts), or ``seeds[i]`` when ``seeds`` is given (then one piece per seed).
    ``prompt`` is ``prompts.prompt_from_midi``'s (words, bars), made at the same grid.
    ``progress`` is called with the share of all the pieces done.  The pieces are sampled in
    batches of up to MAX_BATCH rows, each row with its own generator, so a seed gives the same
    piece whatever ``n`` (or whichever other seeds share its batch)."""
    grid = loaded.grid
    prompt_words, prompt_bars = prompt if prompt else (controls_header(controls, grid) or [], 0)
    prompt_grid = format_of_words(prompt_words[:2])[1]
    if prompt_words and prompt_grid != grid:
        raise MozartError(f"the prompt is at grid {prompt_grid}, the model at grid {grid}")
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(n)]
    n = len(seeds)
    texts = []
    for first in range(0, n, MAX_BATCH):
        rows = min(MAX_BATCH, n - first)
        generators = [np.random.default_rng(s) for s in seeds[first:first + rows]]
        report = None if progress is None else \
            (lambda share, first=first, rows=rows: progress((first + share * rows) / n))
        for words in sample_pieces(loaded.model, loaded.tokenizer, prompt_words, controls, settings, prompt_bars,
                                   grid=grid, generators=generators, progress=report):
            texts.append(" ".join(words))
    return texts
