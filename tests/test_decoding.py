"""The step decoders reproduce transformers' logits; the grammar processor works inside generate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from mozart.controls import Controls, SamplingSettings
from mozart.decoding import BartStepDecoder, Gpt2StepDecoder, HFStepDecoder, LlamaStepDecoder, step_decoder
from mozart.masks import hf_logits_processors
from mozart.models import SpecialIds, build_model, default_model_dir, load_model
from mozart.tokens import check

#: "llama+previous": a Llama that embeds the 3 tokens before each position (previous_tokens.py); "llama+previous1"
#: the one before
PREVIOUS, PREVIOUS_1 = "llama+previous", "llama+previous1"


def _model(arch: str, size: str, context: int):
    """A fresh model of ``arch`` (or ``PREVIOUS``) over a vocabulary of 300."""
    family = arch.split("+")[0]
    return build_model(family, size, SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), context,
                       previous_tokens={PREVIOUS: 3, PREVIOUS_1: 1}.get(arch, 0))


def _random_ids(n: int, vocab: int, seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randint(4, vocab, (rows, n), generator=torch.Generator().manual_seed(seed))


class _Sources:
    """BART's encoder outputs for up to five rows of random source tokens, computed once, so a decoder of
    some of the rows reads exactly the rows it would read in the whole batch."""

    def __init__(self, model):
        self.encoded = None
        if model.config.is_encoder_decoder:
            with torch.no_grad():
                self.encoded = model.get_encoder()(input_ids=_random_ids(30, model.config.vocab_size, 11, rows=5))

    def decoder(self, model, rows: int | list[int], **kwargs):
        """``step_decoder`` for these rows (a count: the first ones)."""
        rows = list(range(rows)) if isinstance(rows, int) else rows
        if self.encoded is None:
            return step_decoder(model, batch=len(rows), **kwargs)
        return step_decoder(model, self.rows(rows), batch=len(rows), **kwargs)

    def rows(self, rows: list[int]):
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=self.encoded.last_hidden_state[rows])


def _assert_steps_match(fast, hf, ids: torch.Tensor, model) -> None:
    """A prompt of 20 tokens, then one token at a time, then a block of 5 on top of the cache:
    the fast decoder's logits equal transformers' (incremental and whole-sequence)."""
    steps = [ids[:, :20]] + [ids[:, i:i + 1] for i in range(20, 90)] + [ids[:, 90:95]]
    for chunk in steps:
        a, b = fast.step(chunk), hf.step(chunk)
        assert a.shape == (ids.shape[0], model.config.vocab_size)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    with torch.no_grad():
        if hf.encoder_outputs is None:
            full = model(input_ids=ids[:, :95]).logits[:, -1]
        else:
            full = model(encoder_outputs=hf.encoder_outputs, decoder_input_ids=ids[:, :95]).logits[:, -1]
    assert torch.allclose(a, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch, size, rows", [("gpt2", "tiny", 1), ("gpt2", "small", 3), ("llama", "tiny", 1),
                                              ("llama", "small", 3), ("bart", "tiny", 1), ("bart", "small", 3),
                                              (PREVIOUS, "tiny", 1), (PREVIOUS, "small", 3), (PREVIOUS_1, "tiny", 2)])
def test_step_decoders_match_transformers(arch, size, rows):
    torch.manual_seed(0)
    model = _model(arch, size, 128).eval()
    sources = _Sources(model)
    fast_type = {"gpt2": Gpt2StepDecoder, "llama": LlamaStepDecoder, "bart": BartStepDecoder,
                 PREVIOUS: LlamaStepDecoder, PREVIOUS_1: LlamaStepDecoder}[arch]
    assert isinstance(sources.decoder(model, rows), fast_type)
    ids = _random_ids(100, 300, 1, rows)
    fast = sources.decoder(model, rows, matmul_dtype=torch.float32, weights="dense")
    hf = HFStepDecoder(model) if sources.encoded is None else HFStepDecoder(model, sources.rows(list(range(rows))))
    _assert_steps_match(fast, hf, ids, model)
    with pytest.raises(ValueError):
        fast.step(ids[:, :40])  # 95 + 40 tokens exceed the context of 128


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart", PREVIOUS])
def test_a_fresh_decoder_reads_like_a_new_one(arch):
    """When the sampling window slides, ``fresh()`` reuses the prepared weights with an empty cache for the
    rows kept: its logits equal a newly built decoder's."""
    torch.manual_seed(4)
    model = _model(arch, "tiny", 128).eval()
    sources = _Sources(model)
    ids = _random_ids(40, 300, 5, rows=3)
    used = sources.decoder(model, 3)
    used.step(ids[:, :30])
    used.keep(torch.tensor([0, 2]))
    fresh, new = used.fresh(), sources.decoder(model, [0, 2])
    assert fresh.position == 0
    assert torch.equal(fresh.step(ids[[0, 2], 10:30]), new.step(ids[[0, 2], 10:30]))
    assert torch.equal(fresh.step(ids[[0, 2], 30:31]), new.step(ids[[0, 2], 30:31]))


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart", PREVIOUS])
def test_dropping_rows_keeps_the_others_exact(arch):
    """keep(rows): the rows kept go on exactly as they would alone (a finished row stops costing compute)."""
    torch.manual_seed(1)
    model = _model(arch, "tiny", 128).eval()
    sources = _Sources(model)
    ids = _random_ids(40, 300, 2, rows=4)
    exact = torch.float32
    batch, alone = sources.decoder(model, 4, matmul_dtype=exact), sources.decoder(model, [2], matmul_dtype=exact)
    batch.step(ids[:, :30])
    alone.step(ids[2:3, :30])
    batch.keep(torch.tensor([0, 2]))
    for i in range(30, 40):
        both = batch.step(ids[[0, 2], i:i + 1])
        assert both.shape[0] == 2
        assert torch.allclose(both[1], alone.step(ids[2:3, i:i + 1])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart", PREVIOUS])
def test_long_one_token_steps_are_row_exact_at_the_sampling_precision(arch):
    """The sampler's own decoder (default products and weights): a row's logits are the same alone and in
    a batch of five at every one-token step up to 200 positions (SDPA's CPU kernel was not, past ~120 keys,
    and bf16 activations turned that into a different piece for the same seed)."""
    torch.manual_seed(7)
    model = _model(arch, "tiny", 256).eval()
    sources = _Sources(model)
    ids = _random_ids(200, 300, 8, rows=5)
    batch, alone = sources.decoder(model, 5), sources.decoder(model, [4])
    assert torch.equal(batch.step(ids[:, :1])[4], alone.step(ids[4:, :1])[0])
    for i in range(1, 200):
        assert torch.equal(batch.step(ids[:, i:i + 1])[4], alone.step(ids[4:, i:i + 1])[0]), i


def _light(model, folder):
    """``model`` saved to ``folder`` and read back as the sampler's light path reads it (numpy arrays)."""
    from mozart.weights import read_decoder, reproducible

    model.save_pretrained(str(folder))
    light = read_decoder(folder)
    assert light is not None and reproducible(light)
    return light


@pytest.mark.parametrize("arch, size, rows, kv_heads", [("gpt2", "tiny", 1, None), ("gpt2", "small", 3, None),
                                                        ("llama", "tiny", 1, None), ("llama", "small", 3, None),
                                                        ("llama", "tiny", 2, 1), (PREVIOUS, "small", 3, None)])
def test_numpy_decoders_match_transformers(tmp_path, arch, size, rows, kv_heads):
    """The numpy decoders (the light path, no torch): a 20-token prompt, 70 one-token steps, a block of 5
    on the cache; logits equal transformers' incremental and whole-sequence ones (grouped key/value heads
    too)."""
    from mozart.npdecoding import NumpyGpt2Decoder, NumpyLlamaDecoder, numpy_decoder_for

    torch.manual_seed(0)
    model = _model(arch, size, 128)
    if kv_heads:  # a grouped-query Llama: rebuilt with fewer key/value heads
        model = type(model)(model.config.__class__(**{**model.config.to_dict(), "num_key_value_heads": kv_heads}))
    model.eval()
    fast = numpy_decoder_for(_light(model, tmp_path / "m"), rows)
    assert isinstance(fast, {"gpt2": NumpyGpt2Decoder, "llama": NumpyLlamaDecoder, PREVIOUS: NumpyLlamaDecoder}[arch])
    ids = _random_ids(100, 300, 1, rows)
    hf = HFStepDecoder(model)
    for chunk in [ids[:, :20]] + [ids[:, i:i + 1] for i in range(20, 90)] + [ids[:, 90:95]]:
        a, b = fast.step(chunk.numpy()), hf.step(chunk).numpy()
        assert a.shape == (rows, 300) and a.dtype == np.float32
        assert np.allclose(a, b, atol=1e-4, rtol=1e-4), float(np.abs(a - b).max())
    with torch.no_grad():
        full = model(input_ids=ids[:, :95]).logits[:, -1].numpy()
    assert np.allclose(a, full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        fast.step(ids[:, :40].numpy())  # 95 + 40 tokens exceed the context of 128


@pytest.mark.parametrize("arch", ["gpt2", "llama", PREVIOUS])
def test_numpy_decoders_are_row_exact_and_keep_and_fresh_work(tmp_path, arch):
    """A row's logits are bit for bit the same alone and in a batch of five, at every step up to 200
    positions (so a seed writes one piece at any -n); keep() drops rows without changing the others;
    fresh() reads like a new decoder."""
    from mozart.npdecoding import numpy_decoder_for

    torch.manual_seed(7)
    light = _light(_model(arch, "tiny", 256).eval(), tmp_path / "m")
    ids = _random_ids(200, 300, 8, rows=5).numpy()
    batch, alone = numpy_decoder_for(light, 5), numpy_decoder_for(light, 1)
    assert np.array_equal(batch.step(ids[:, :3])[4], alone.step(ids[4:, :3])[0])
    for i in range(3, 100):
        assert np.array_equal(batch.step(ids[:, i:i + 1])[4], alone.step(ids[4:, i:i + 1])[0]), i
    batch.keep(np.array([1, 4]))
    for i in range(100, 200):
        assert np.array_equal(batch.step(ids[[1, 4], i:i + 1])[1], alone.step(ids[4:, i:i + 1])[0]), i
    fresh, new = batch.fresh(), numpy_decoder_for(light, 2)
    assert fresh.position == 0
    assert np.array_equal(fresh.step(ids[[1, 4], 10:30]), new.step(ids[[1, 4], 10:30]))


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
def test_built_in_model_reads_without_torch_with_transformers_logits():
    """The built-in model as the sampler reads it (float16 weights widened to float32, numpy): its logits
    equal transformers' to 1e-4."""
    from mozart.models import load_sampler
    from mozart.npdecoding import numpy_decoder_for

    light, full = load_sampler(default_model_dir()).model, load_model(default_model_dir()).model
    fast, hf = numpy_decoder_for(light), HFStepDecoder(full)
    ids = _random_ids(60, full.config.vocab_size, 2)
    for chunk in [ids[:, :10]] + [ids[:, i:i + 1] for i in range(10, 60)]:
        assert np.allclose(fast.step(chunk.numpy()), hf.step(chunk).numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2)])
def test_one_query_attention_is_row_exact_and_equals_sdpa(heads, kv_heads):
    """attend_one, rows of (grouped) queries against 120-500 keys: each row's output the same alone as in a
    batch of five (SDPA's CPU kernel differs by ~1e-8 there on an AMD EPYC), and SDPA's values to 1e-6."""
    from mozart.decoding import attend_one

    torch.manual_seed(0)
    for length in (120, 127, 200, 500):
        q = torch.randn(5, heads, 1, 32)
        k, v = torch.randn(5, kv_heads, length, 32), torch.randn(5, kv_heads, length, 32)
        out = attend_one(q, k, v, 0.125)
        assert torch.equal(out[3], attend_one(q[3:4], k[3:4], v[3:4], 0.125)[0])
        sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.125, enable_gqa=True)
        assert torch.allclose(out, sdpa, atol=1e-6, rtol=1e-5)


INT8 = pytest.mark.skipif(not hasattr(torch, "_weight_int8pack_mm"), reason="this torch has no int8 weight kernel")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart"])
@pytest.mark.parametrize("int8, same_top_share", [(False, 0.9), pytest.param(True, 0.8, marks=INT8)])
def test_sampling_precisions_stay_close_to_float32_and_exact_per_row(arch, int8, same_top_share):
    """The sampling path on a bf16 CPU, bf16 products with float32 or int8 weights: logits within a few
    percent of float32's, the same most likely token almost everywhere (random weights: near-flat logits,
    many near ties; int8 86% measured), and each row's logits the same alone as in a batch (so a seed
    gives the same piece whatever -n), through the one-token path and the block path alike."""
    torch.manual_seed(2)
    model = build_model(arch, "small", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    sources = _Sources(model)
    ids = _random_ids(60, 300, 3, rows=3)
    exact = sources.decoder(model, 3, matmul_dtype=torch.float32, weights="dense")
    weights = "int8" if int8 else "dense"
    fast = sources.decoder(model, 3, matmul_dtype=torch.bfloat16, weights=weights)
    alone = sources.decoder(model, [1], matmul_dtype=torch.bfloat16, weights=weights)
    assert fast.weights == weights
    same_top = total = 0
    for chunk in [ids[:, :20]] + [ids[:, i:i + 1] for i in range(20, 55)] + [ids[:, 55:60]]:
        a, b, c = exact.step(chunk), fast.step(chunk), alone.step(chunk[1:2])
        assert float((a - b).abs().max()) < 0.05 * float(a.abs().max()) + 0.05
        assert torch.equal(b[1], c[0])  # row-exact: these products do not depend on the batch
        same_top += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
    assert same_top >= same_top_share * total


@INT8
def test_int8_weights_need_bf16_activations():
    model = build_model("llama", "tiny", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    with pytest.raises(ValueError, match="bf16"):
        step_decoder(model, matmul_dtype=torch.float32, weights="int8")


def test_sampling_uses_int8_weights_wherever_torch_has_the_kernel(monkeypatch):
    """int8 weights with bf16 activations on any CPU with torch's int8 kernel (fast without native bf16 too);
    bf16 products with dense weights on a bf16 CPU without it; float32 elsewhere."""
    import mozart.hardware

    model = build_model("llama", "tiny", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    kernel = hasattr(torch, "_weight_int8pack_mm")
    for has in (True, False):
        monkeypatch.setattr(mozart.hardware, "cpu_has_bf16", lambda has=has: has)
        decoder = step_decoder(model)
        assert decoder.matmul_dtype == (torch.bfloat16 if has or kernel else torch.float32)
        assert decoder.weights == ("int8" if kernel else "dense")


def test_weight_formats_are_checked():
    model = build_model("llama", "tiny", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    with pytest.raises(ValueError, match="unknown weight format"):
        step_decoder(model, weights="int4")


def test_other_models_use_transformers_forward():
    model = build_model("llama", "tiny", SpecialIds(pad=0, bos=1, eos=2, vocab_size=300), 128).eval()
    model.config.rope_parameters = {**model.config.rope_parameters, "rope_type": "linear", "factor": 2.0}
    assert isinstance(step_decoder(model), HFStepDecoder)  # a rotary scaling it does not reproduce


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
def test_built_in_model_takes_the_fast_path_with_equal_logits():
    model = load_model(default_model_dir()).model
    fast = step_decoder(model, matmul_dtype=torch.float32, weights="dense")
    assert isinstance(fast, (Gpt2StepDecoder, LlamaStepDecoder))
    ids = _random_ids(60, model.config.vocab_size, 2)
    hf = HFStepDecoder(model)
    for chunk in [ids[:, :10]] + [ids[:, i:i + 1] for i in range(10, 60)]:
        assert torch.allclose(fast.step(chunk), hf.step(chunk), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(default_model_dir() is None or not hasattr(torch, "_weight_int8pack_mm"),
                    reason="no built-in model or no int8 weight kernel")
def test_built_in_model_with_int8_weights_predicts_like_float32():
    """On the trained model's own pieces the int8 path's distribution stays close to float32's: the
    same most likely token at >= 95% of steps and a small divergence."""
    loaded = load_model(default_model_dir())
    model, tokenizer = loaded.model, loaded.tokenizer
    from mozart.controls import Controls
    from mozart.sampling import generate_pieces

    text = generate_pieces(loaded, Controls(bars=8), SamplingSettings(), seed=5)[0]
    ids = torch.tensor([[tokenizer.convert_tokens_to_ids("<bos>")] + tokenizer.convert_tokens_to_ids(text.split())])
    ids = ids[:, :300]
    exact = step_decoder(model, matmul_dtype=torch.float32, weights="dense")
    quantised = step_decoder(model, matmul_dtype=torch.bfloat16, weights="int8")
    a = torch.cat([exact.step(ids[:, :1])] + [exact.step(ids[:, i:i + 1]) for i in range(1, ids.shape[1])])
    b = torch.cat([quantised.step(ids[:, :1])] + [quantised.step(ids[:, i:i + 1]) for i in range(1, ids.shape[1])])
    assert float((a.argmax(-1) == b.argmax(-1)).float().mean()) >= 0.95
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="batchmean")
    assert float(kl) < 0.002  # measured 1e-4 nats (bf16 products alone: 5e-5)


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
                         max_new_tokens=settings.token_budget(controls.bars), logits_processor=processors,
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


def test_previous_tokens_model_saves_and_loads_whole(tmp_path):
    """A Llama with previous-token tables, saved and read back by ``load_base``, keeps them (transformers'
    own loader would drop them) and gives the same logits; a table of the wrong shape is a one-line error."""
    from safetensors.torch import load_file, save_file

    from mozart.errors import MozartError
    from mozart.models import load_base
    from mozart.weights import PREVIOUS_TOKENS_KEY, previous_token_weights, read_decoder

    torch.manual_seed(3)
    model = _model(PREVIOUS, "tiny", 128).eval()
    model.save_pretrained(str(tmp_path))
    assert f'"{PREVIOUS_TOKENS_KEY}": 3' in (tmp_path / "config.json").read_text()
    loaded, arch = load_base(tmp_path)
    assert arch == "llama"
    ids = _random_ids(50, 300, 4, rows=2)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(input_ids=ids).logits, model(input_ids=ids).logits)
        # the table matters: without it the logits differ
        assert not torch.allclose(model.model.embed_tokens(ids), torch.nn.functional.embedding(ids,
                                                                                               model.model.embed_tokens.weight))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    last = previous_token_weights(3)[-1]
    tensors[last] = tensors[last][:10].contiguous()
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MozartError, match="does not match config.json"):
        load_base(tmp_path)
    key = f'"{PREVIOUS_TOKENS_KEY}"'
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace(f"{key}: 3", f'{key}: "3"'))
    with pytest.raises(MozartError, match=f"{PREVIOUS_TOKENS_KEY} '3': previous-token embeddings are for llama"):
        load_base(tmp_path)
    assert read_decoder(tmp_path) is None  # the light path leaves it to load_base's error


def test_previous_tokens_model_loads_without_mozart(tmp_path):
    """``save_pretrained`` puts previous_tokens.py beside the weights (transformers' auto class), so plain
    transformers loads the model with ``trust_remote_code=True`` in a process that never imports Mozart, with
    the same logits; the module keeps the key's name in step with weights.py and imports nothing from Mozart."""
    import json
    import subprocess
    import sys

    from mozart import previous_tokens
    from mozart.weights import PREVIOUS_TOKENS_ARCHITECTURE, PREVIOUS_TOKENS_KEY

    assert previous_tokens.PREVIOUS_TOKENS_KEY == PREVIOUS_TOKENS_KEY
    with open(previous_tokens.__file__) as module:
        assert "from ." not in module.read()
    torch.manual_seed(6)
    model = _model(PREVIOUS, "tiny", 128).eval()
    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [PREVIOUS_TOKENS_ARCHITECTURE] and (tmp_path / "previous_tokens.py").is_file()
    ids = _random_ids(30, 300, 9)
    with torch.no_grad():
        expected = model(input_ids=ids).logits[0, -1]
    code = ("import sys, torch, transformers;"
            "m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval();"
            "ids = torch.tensor([[int(i) for i in sys.argv[2].split(',')]]);"
            "assert not any(name.startswith('mozart') for name in sys.modules), 'mozart imported';"
            "print(','.join(f'{x:.6f}' for x in m(input_ids=ids).logits[0, -1].tolist()))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), ",".join(map(str, ids[0].tolist()))],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    logits = torch.tensor([float(x) for x in result.stdout.strip().splitlines()[-1].split(",")])
    assert torch.allclose(logits, expected, atol=1e-4)


@pytest.mark.skipif(default_model_dir() is None, reason="no built-in model")
def test_built_in_model_carries_this_mozarts_previous_tokens_module():
    """The built-in model folder's previous_tokens.py (what transformers runs with trust_remote_code) is this
    Mozart's own: change the module and the package's copy must follow (modelcard.add_previous_tokens_code)."""
    import json
    from pathlib import Path

    from mozart import previous_tokens
    from mozart.weights import PREVIOUS_TOKENS_KEY

    folder = Path(str(default_model_dir()))
    if not json.loads((folder / "config.json").read_text()).get(PREVIOUS_TOKENS_KEY):
        pytest.skip("the built-in model has no previous-token tables")
    assert (folder / "previous_tokens.py").read_bytes() == Path(previous_tokens.__file__).read_bytes()
