"""Exact likelihood in nats/token, bits/token and bits/note: of a model and of n-gram baselines.

Sums over every predicted token, never batch means, so the figures do not depend on the
batch size.  Training reports the valid split with ``likelihood``; evaluation scores the
test split with ``model_likelihood`` (sliding windows for decoders, continuation for
BART) and ``baseline_likelihoods`` (unigram and Kneser-Ney, fitted on the train split).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .interrupts import raise_if_interrupted
from .lmdata import IGNORE, Examples, collate, continuation_examples, sliding_examples
from .ngram import KneserNey, Unigram
from .tokenizer import BOS, PAD, UNK
from .tokens import note_word_ids


@torch.no_grad()
def likelihood(model, examples: Examples, pad_id: int, batch_size: int = 8, bf16: bool = False) -> dict:
    """Exact nats/token, bits/token and bits/note over ``examples`` (sums, not batch means).
    ``bf16``: the forward under bf16 autocast (log-probabilities still summed in float32): 1.6x
    the scored tokens/s on a CPU with native bf16, figures within 0.03% of float32's (measured)."""
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    total_nll, total_tokens = 0.0, 0
    # longest first, so a batch holds examples of about one length: little compute goes to padding
    # (a dataset cut at --max-tokens has segments of every length up to the context)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]), reverse=True)
    for start in range(0, len(order), batch_size):
        raise_if_interrupted()
        batch = collate([examples[i] for i in order[start:start + batch_size]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")  # scored here, exactly; the model's own (mean) loss is not needed
        if model.config.is_encoder_decoder:
            batch["labels"] = labels  # BART derives its decoder inputs from the labels
        with autocast:
            logits = model(**batch).logits.float()
        if not model.config.is_encoder_decoder:
            logits, labels = logits[:, :-1], labels[:, 1:]
        mask = labels != IGNORE
        logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total_nll -= float((logp * mask).sum())
        total_tokens += int(mask.sum())
    return likelihood_summary(total_nll, total_tokens, examples.notes)


@torch.no_grad()
def token_losses(model, ids: list[int], bf16: bool = False) -> np.ndarray:
    """A decoder's loss in nats on each token of ``ids`` after the first, given the tokens before
    it (one forward; ``bf16`` as in :func:`likelihood`): entry j is the loss on ``ids[j + 1]``.
    For measurements that split a sequence's loss by kind of token (the benchmarks)."""
    model.eval()
    tensor = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.autocast(tensor.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=tensor).logits[0, :-1].float()
    return -torch.log_softmax(logits, -1).gather(-1, tensor[0, 1:, None])[:, 0].cpu().numpy()


def likelihood_summary(nats: float, tokens: int, notes: int) -> dict:
    """The likelihood figures from a total negative log-likelihood in nats over ``tokens`` and ``notes``."""
    per_token = nats / max(1, tokens)
    return {"nats_per_token": per_token, "bits_per_token": per_token / math.log(2),
            "bits_per_note": nats / math.log(2) / max(1, notes), "perplexity": math.exp(per_token),
            "tokens": tokens, "notes": notes}


def default_stride(context: int) -> int:
    """The sliding window's default stride: three quarters of the context, so a token is scored with at
    least a quarter of the context before it.  Measured on 15 long dev pieces with the built-in model
    (context 512; docs/evaluation.md): 1.33 positions per scored token instead of 2 at half the context,
    39 s instead of 54 s, for bits/note 0.34% higher (41.08 vs 40.94: less context, a pessimistic figure)."""
    return max(1, context * 3 // 4)


def comparable_stride(context: int) -> int:
    """Half the context: the stride of the figures that are compared across editions of a model (the
    card's check figure, the out-of-domain table), whatever :func:`default_stride` is."""
    return max(1, context // 2)


def model_likelihood(model, tokenizer, texts: list[str], stride: int | None, bf16: bool = False) -> dict:
    """The model's likelihood of ``texts`` (see the module docstring for what is scored); ``stride``
    None: :func:`default_stride`; ``bf16`` as in :func:`likelihood`."""
    context = model.config.max_position_embeddings  # transformers' name for every family's context
    if model.config.is_encoder_decoder:
        examples = continuation_examples(texts, tokenizer, context)
        stride_used = None
    else:
        stride_used = stride or default_stride(context)
        examples = sliding_examples(texts, tokenizer, context, stride_used)
    result = likelihood(model, examples, tokenizer.token_to_id(PAD), bf16=bf16)
    return {**result, "context": context, "stride": stride_used, "precision": "bf16" if bf16 else "fp32"}


def baseline_likelihoods(train_ids: list[list[int]], test_ids: list[list[int]], vocab: dict[str, int],
                         order: int) -> dict[str, dict]:
    """Unigram and Kneser-Ney ``order``-gram, fitted on ``train_ids``, scored on ``test_ids``.

    Sequences are ``[<bos>, ..., <eos>]``; every token but ``<pad>``, ``<bos>`` and ``<unk>``
    is predictable.
    """
    never = {vocab[PAD], vocab[BOS], vocab[UNK]}
    predictable = np.array(sorted(set(vocab.values()) - never))
    base = max(vocab.values()) + 1
    note_ids = np.array(note_word_ids(vocab))
    notes = int(sum(np.isin(seq[1:], note_ids).sum() for seq in test_ids))
    tokens = sum(len(seq) - 1 for seq in test_ids)
    unigram = Unigram.fit(train_ids, base, predictable)
    kn = KneserNey.fit(train_ids, order, base, vocab[BOS], predictable.size)
    return {"unigram": likelihood_summary(-float(unigram.log_probs(test_ids).sum()), tokens, notes),
            f"kneser_ney_{order}gram": likelihood_summary(-float(kn.log_probs(test_ids).sum()), tokens, notes)}
