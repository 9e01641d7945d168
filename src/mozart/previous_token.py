"""The previous-token embedding: a Llama decoder whose input at position i is ``E[t_i] + P[t_(i-1)]``.

Why: a plain decoder copies (a repeated bar, a verbatim repeat) through an induction circuit of two
attention layers composed, one that moves the previous token into each position and one that matches it;
the built-in model trained on 13M tokens never formed one (an exact repeat cost it 0.98 of the first
writing, ``bench/copying.py``).  With the previous token in each position's input, one attention layer can
match "the token before j" (in j's key) against "the token at i" (in i's query) and copy ``t_j``: induction
in one layer, as with smeared keys (Olsson et al., 2022).  It costs one more table of vocabulary x width.

The first position of every sequence (a training window, a scored window, a sampler's window after it
slides) takes the padding token as its previous token, so a position's input depends only on the sequence
it is in.  Step decoders with a cache carry each row's last token between steps (``npdecoding``,
``decoding``); a model saved with the embedding says so in its config (``weights.PREVIOUS_TOKEN_KEY``).
"""

from __future__ import annotations

import torch
from torch import nn

from .weights import PREVIOUS_TOKEN_KEY


class PreviousTokenEmbedding(nn.Embedding):
    """The token embedding (its weight shared with the output layer when tied) plus a second table for the
    token before each position; ``first`` stands in before a sequence's first token."""

    def __init__(self, tokens: nn.Embedding, first: int):
        super().__init__(tokens.num_embeddings, tokens.embedding_dim, _weight=tokens.weight)
        self.weight = tokens.weight  # the same parameter, so the output layer's tie holds
        self.previous = nn.Embedding(tokens.num_embeddings, tokens.embedding_dim)
        nn.init.normal_(self.previous.weight, std=0.02)  # transformers' initializer_range for the other tables
        self.first = first

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of whole sequences (rows, t): each row starts fresh."""
        return self.continued(ids, None)

    def continued(self, ids: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
        """Embeddings of ``ids`` (rows, t) read after each row's ``last`` token (rows,), or fresh when None."""
        before = torch.full_like(ids[:, :1], self.first) if last is None else last.view(-1, 1).to(ids)
        previous = torch.cat([before, ids[:, :-1]], dim=1)
        return nn.functional.embedding(ids, self.weight) + self.previous(previous)


def has_previous_token(config) -> bool:
    """Whether a model of this config (a transformers config) reads the previous-token embedding."""
    return bool(getattr(config, PREVIOUS_TOKEN_KEY, False))


def add_previous_token(model) -> None:
    """Give a Llama model the previous-token embedding (fresh) and record it in its config."""
    inner = model.get_decoder()
    inner.embed_tokens = PreviousTokenEmbedding(inner.embed_tokens, model.config.pad_token_id)
    setattr(model.config, PREVIOUS_TOKEN_KEY, True)
