"""Previous-token embeddings: a Llama decoder whose input at position i is
``E[t_i] + P_1[t_(i-1)] + ... + P_k[t_(i-k)]``, one more table per token looked back.

Why: a plain decoder copies (a repeated bar, a verbatim repeat) through an induction circuit of two
attention layers composed, one that moves earlier tokens into each position and one that matches them; the
built-in model trained on 13M tokens never formed one (an exact repeat cost it 0.98 of the first writing,
``bench/copying.py``).  With the tokens before it in each position's input, one attention layer can match
"the tokens before j" (in j's key) against "the tokens ending at i" (in i's query) and carry on with
``t_j``: induction in one layer, as with smeared keys (Olsson et al., 2022), over k tokens of context rather
than one, since a single music token (a position, a duration) recurs too often to say where a copy is.
Each table costs vocabulary x width parameters.

The positions before a sequence's start (a training window, a scored window, a sampler's window after it
slides) read the padding token, so a position's input depends only on the sequence it is in.  Step decoders
with a cache carry each row's last k tokens between steps (``npdecoding``, ``decoding``); a model saved with
the tables says how many in its config (``PREVIOUS_TOKENS_KEY``).

This file imports nothing from Mozart: ``save_pretrained`` copies it into the model folder (transformers'
``register_for_auto_class``), so that ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``
loads such a model without Mozart.  Mozart itself loads it with this class, never the folder's copy.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaForCausalLM

#: config.json's count of previous tokens (weights.PREVIOUS_TOKENS_KEY, the same string: tested).
PREVIOUS_TOKENS_KEY = "mozart_previous_tokens"


def previous_embedded(ids: torch.Tensor, last: torch.Tensor | None, tables: list[torch.Tensor],
                      first: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous-token embeddings of ``ids`` (rows, t) read after each row's ``last`` k tokens (rows, k;
    None: a sequence's start, read as ``first``): the sum over ``tables`` (k of them, the token just before
    first); and each row's last k tokens after ``ids`` (the next call's ``last``)."""
    k, t = len(tables), ids.shape[1]
    before = torch.full_like(ids[:, :1], first).expand(-1, k) if last is None else last.to(ids)
    history = torch.cat([before, ids], dim=1)
    embedded = sum(nn.functional.embedding(history[:, k - back:k - back + t], table)
                   for back, table in enumerate(tables, start=1))
    return embedded, history[:, -k:]


class PreviousTokensEmbedding(nn.Embedding):
    """The token embedding (its weight shared with the output layer when tied) plus one table for each of
    the ``k`` tokens before a position; ``first`` stands in before a sequence's first token."""

    def __init__(self, tokens: nn.Embedding, k: int, first: int):
        super().__init__(tokens.num_embeddings, tokens.embedding_dim, _weight=tokens.weight)
        self.weight = tokens.weight  # the same parameter, so the output layer's tie holds
        self.previous = nn.ModuleList(nn.Embedding(tokens.num_embeddings, tokens.embedding_dim) for _ in range(k))
        for table in self.previous:
            nn.init.normal_(table.weight, std=0.02)  # transformers' initializer_range for the other tables
        self.first = first

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of whole sequences (rows, t): each row starts fresh."""
        return self.continued(ids, None)[0]

    def continued(self, ids: torch.Tensor, last: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of ``ids`` (rows, t) read after each row's ``last`` k tokens (rows, k), or fresh when None;
        and each row's last k tokens after them (the next call's ``last``)."""
        embedded, last = previous_embedded(ids, last, [table.weight for table in self.previous], self.first)
        return nn.functional.embedding(ids, self.weight) + embedded, last


def previous_tokens(config) -> int:
    """How many previous tokens a model of this config (a transformers config) embeds (0: a plain model)."""
    return int(getattr(config, PREVIOUS_TOKENS_KEY, 0) or 0)


class PreviousTokensLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` whose token embedding is :class:`PreviousTokensEmbedding` over as many previous
    tokens as its config's ``mozart_previous_tokens``."""

    def __init__(self, config):
        super().__init__(config)
        if previous_tokens(config) > 0:  # none: a plain Llama
            inner = self.get_decoder()
            inner.embed_tokens = PreviousTokensEmbedding(inner.embed_tokens, previous_tokens(config),
                                                         config.pad_token_id)


PreviousTokensLlamaForCausalLM.register_for_auto_class("AutoModelForCausalLM")
