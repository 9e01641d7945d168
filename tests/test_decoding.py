"""The step decoders reproduce transformers' logits; the grammar processor works inside generate()."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from mozart.controls import Controls, SamplingSettings
from mozart.decoding import Gpt2StepDecoder, HFStepDecoder, step_decoder
from mozart.masks import hf_logits_processors
from mozart.models import SpecialIds, build_model, default_model_dir, load_model
from mozart.tokens import check


def _random_ids(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(4, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_gpt2_step_decoder_matches_transformers(size):
    torch.manual_seed(0)
    model = build_model("gpt2", size, SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    assert isinstance(step_decoder(model), Gpt2StepDecoder)
    ids = _random_ids(100, 300, 1)
    fast, hf = Gpt2StepDecoder(model), HFStepDecoder(model)
    # a prompt of 20 tokens, then one token at a time, then a block of 5 on top of the cache
    steps = [ids[:20]] + [[t] for t in ids[20:90]] + [ids[90:95]]
    for chunk in steps:
        a, b = fast.step(chunk), hf.step(chunk)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids[:95]])).logits[0, -1]
    assert torch.allclose(a, full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        fast.step(ids[:40])  # 95 + 40 tokens exceed the context of 128


def test_other_models_use_transformers_forward():
    model = build_model("llama", "tiny", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    assert isinstance(step_decoder(model), HFStepDecoder)


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
def test_built_in_model_takes_the_fast_path_with_equal_logits():
    model = load_model(default_model_dir()).model
    assert Gpt2StepDecoder.supports(model)
    ids = _random_ids(60, model.config.vocab_size, 2)
    fast, hf = Gpt2StepDecoder(model), HFStepDecoder(model)
    for chunk in [ids[:10]] + [[t] for t in ids[10:]]:
        assert torch.allclose(fast.step(chunk), hf.step(chunk), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
@pytest.mark.parametrize("settings", [SamplingSettings(temperature=2.5), SamplingSettings(top_k=5, top_p=0.9)])
def test_grammar_processor_inside_transformers_generate(settings):
    """transformers' own generate() with the processor list: every row valid, exact bars."""
    loaded = load_model(default_model_dir())
    model, tokenizer = loaded.model, loaded.tokenizer
    controls = Controls(bars=4, programs=(0,), drums=False)
    processors = hf_logits_processors(model, tokenizer, [], controls, settings, grid=loaded.grid, batch=4)
    torch.manual_seed(0)
    bos = tokenizer.convert_tokens_to_ids("<bos>")
    out = model.generate(torch.tensor([[bos]] * 4), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                         max_new_tokens=64 * 4 + 64, logits_processor=processors,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for row in out.tolist():
        words = [w for w in tokenizer.convert_ids_to_tokens(row) if not w.startswith("<")]
        text = " ".join(words)
        check(text)
        assert words.count("Bar") == 4
        assert all(w == "Prog_0" for w in words if w.startswith("Prog_"))


def test_tokenizer_has_special_tokens_named():
    # generate() above relies on the saved tokenizer naming eos and pad
    folder = default_model_dir()
    if folder is None:
        pytest.skip("no built-in model")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.eos_token == "<eos>" and tokenizer.pad_token == "<pad>"
