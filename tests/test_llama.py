"""The pretrained-base path: GGUF reader, conversion, native Llama denoiser vs transformers,
LoRA delta round trip, base-hash refusal and a training step, all on a tiny GGUF the tests write."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llama_helpers import TINY_SHAPE, install_tiny_base, tiny_base_spec, write_tiny_gguf

from diffusion_core.model.base import BASES, MASK_TOKEN, NULL_TOKEN, BaseSpec, convert_gguf
from diffusion_core.model.gguf_file import GGUFError, GGUFFile


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("gguf")
    return d / "tiny.gguf", write_tiny_gguf(d / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny_spec(tiny_gguf) -> BaseSpec:
    return tiny_base_spec(tiny_gguf[0])


@pytest.fixture()
def tiny_base(tiny_gguf, tiny_spec, tmp_path, monkeypatch) -> Path:
    """The tiny GGUF converted into a base dir under a temporary DIFFILL_BASES_DIR, registered as a base."""
    return install_tiny_base(tiny_gguf[0], tiny_spec, tmp_path / "bases", monkeypatch)


@pytest.mark.parametrize("kind", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"])
def test_reader_dequantises_like_llama_cpp(tmp_path, kind):
    import gguf
    from gguf.quants import dequantize, quantize
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (6, 64)).astype(np.float32)
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    w.add_string("test.note", "round trip")
    w.add_array("test.numbers", [1, 2, 3])
    if kind == "F32":
        w.add_tensor("x", data)
        expected = data
    else:
        q = quantize(data, qtype)
        w.add_tensor("x", q, raw_shape=q.shape, raw_dtype=qtype)
        expected = dequantize(q, qtype).reshape(data.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = GGUFFile(tmp_path / "t.gguf")
    assert f.metadata["test.note"] == "round trip" and f.metadata["test.numbers"] == [1, 2, 3]
    got = f.array("x")
    assert got.shape == (6, 64)
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - data).max() < (0.3 if kind.startswith("Q4") else 0.05)


def test_truncated_or_foreign_file_gives_one_clear_error(tiny_gguf, tmp_path):
    data = tiny_gguf[0].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(GGUFError, match=r"cut\.gguf: truncated: tensor .* needs bytes up to"):
        GGUFFile(cut)
    head = tmp_path / "head.gguf"
    head.write_bytes(data[:40])
    with pytest.raises(GGUFError, match=r"head\.gguf: truncated header"):
        GGUFFile(head)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(GGUFError, match=r"other\.gguf: not a GGUF file"):
        GGUFFile(other)


def test_altered_gguf_is_refused_by_hash(tiny_gguf, tiny_spec, tmp_path):
    altered = tmp_path / "altered.gguf"
    data = bytearray(tiny_gguf[0].read_bytes())
    data[-1] ^= 0xFF
    altered.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match=rf"altered\.gguf: SHA-256 [0-9a-f]{{64}}, expected {tiny_spec.gguf_sha256}"):
        convert_gguf(altered, tmp_path / "out", tiny_spec)
    assert not (tmp_path / "out").exists()


def test_conversion_undoes_the_rotary_permutation(tiny_gguf, tiny_base):
    from safetensors.torch import load_file
    state = load_file(str(tiny_base / "model.safetensors"))
    expected = tiny_gguf[1]
    assert set(state) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(state[name].numpy(), value, rtol=0, atol=0, err_msg=name)
    config = json.loads((tiny_base / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_key_value_heads"]) == (TINY_SHAPE["layers"], TINY_SHAPE["kv_heads"])


def _native(base: Path):
    from safetensors.torch import load_file
    from diffusion_core.model.llama import NativeLlamaDenoiser
    model = NativeLlamaDenoiser(json.loads((base / "config.json").read_text()))
    model.load_weights(load_file(str(base / "model.safetensors")))
    return model.eval()


def _hf(base: Path):
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(str(base), local_files_only=True, dtype=torch.float32,
                                            attn_implementation="eager").eval()


@torch.no_grad()
def test_native_denoiser_matches_transformers_causal_and_bidirectional(tiny_base):
    native, hf = _native(tiny_base), _hf(tiny_base)
    ids = torch.randint(6, native.shape.vocab_size, (2, 11))
    attention = torch.ones(2, 11, dtype=torch.long)
    attention[1, 8:] = 0  # padding on the second row
    ref = hf(input_ids=ids, attention_mask=attention).logits
    got = native.causal_logits(ids, attention)
    keep = attention.bool()
    torch.testing.assert_close(got[keep], ref[keep], rtol=1e-4, atol=1e-4)
    # Bidirectional: transformers with a 4D mask that lets every query read every non-padding key.
    allowed = keep[:, None, None, :].expand(2, 1, 11, 11)
    additive = torch.zeros(2, 1, 11, 11).masked_fill(~allowed, torch.finfo(torch.float32).min)
    ref_bi = hf(input_ids=ids, attention_mask=additive).logits           # row i predicts token i+1
    got_bi = native(ids, attention).logits                                # row i predicts token i (shift)
    torch.testing.assert_close(got_bi[:, 1:][keep[:, 1:]], ref_bi[:, :-1][keep[:, 1:]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got_bi[0, 1:], got[0, :-1], atol=1e-3)  # full attention really differs


@torch.no_grad()
def test_prefix_causal_layout_keeps_the_context_causal_and_lets_the_slots_read_everything(tiny_base):
    from diffusion_core.model.tokenizer import FastTokenizer
    model = _native(tiny_base)
    mask_id = FastTokenizer(tiny_base).mask_token_id
    model.denoiser.set_layout("prefix-causal", mask_id)
    ids = torch.randint(6, model.shape.vocab_size, (1, 12))
    ids[0, 5:8] = mask_id                       # slots 5..7; 4 predicts slot 5; 8.. is the suffix
    hidden = model.denoiser.hidden(ids)                                   # (1, 12, H) unshifted
    causal = model.causal_logits(ids)                                     # the base as pretrained
    # the prefix before the predictor is exactly the pretrained causal pass
    torch.testing.assert_close(model.lm_head(hidden[0, :4]), causal[0, :4], rtol=1e-4, atol=1e-4)

    def changed(position: int, rows: slice) -> bool:
        other = ids.clone()
        other[0, position] = 6 if int(ids[0, position]) != 6 else 7
        return not torch.allclose(model.denoiser.hidden(other)[0, rows], hidden[0, rows], atol=1e-5)

    assert not changed(4, slice(8, 12))  # the suffix never reads the predictor (reusable across passes)...
    assert changed(2, slice(8, 12))      # ...but reads the prefix
    assert changed(10, slice(4, 8))      # the predictor and the slots read the suffix
    assert not changed(10, slice(0, 4))  # the prefix does not
    # a canvas with no slots reads as the causal base does; full attention is the default and differs
    plain = torch.randint(6, model.shape.vocab_size, (1, 9))
    torch.testing.assert_close(model.lm_head(model.denoiser.hidden(plain)), model.causal_logits(plain),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unknown attention layout"):
        model.denoiser.set_layout("sideways", mask_id)
    model.denoiser.set_layout("full", None)
    assert not torch.allclose(model.denoiser.hidden(ids)[0, :4], hidden[0, :4], atol=1e-3)


def _adapted(base: Path, rank=4, seed=0):
    from diffusion_core.model.tokenizer import FastTokenizer
    from diffusion_core.model.adapter import Adapter
    model = _native(base)
    tok = FastTokenizer(base)
    ids = {MASK_TOKEN: tok.mask_token_id, NULL_TOKEN: tok.convert_tokens_to_ids(NULL_TOKEN)}
    adapter = Adapter(model, ids, rank=rank, alpha=8.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model, adapter, tok


@torch.no_grad()
def test_delta_round_trip_and_merge(tiny_base, tiny_spec, tmp_path):
    from diffusion_core.model.adapter import apply_delta
    from diffusion_core.model.assemble import load_base
    model, adapter, tok = _adapted(tiny_base)
    ids = torch.tensor([[0] + tok("def add(a, b):", add_special_tokens=False).input_ids + [tok.mask_token_id] * 3])
    live = model(ids).logits
    sha = json.loads((tiny_base / "diffill_base.json").read_text())["gguf_sha256"]
    adapter.save(tmp_path / "delta.safetensors", sha)
    merged, _, _ = load_base(tiny_spec, fetch=False, delta=tmp_path / "delta.safetensors")
    # fp16 storage of the delta: close, not bit-equal
    torch.testing.assert_close(merged(ids).logits, live, rtol=0, atol=5e-2)
    assert not any(type(m).__name__ == "LoRALinear" for m in merged.modules())
    base_logits = _native(tiny_base)(ids).logits
    assert (merged(ids).logits - base_logits).abs().max() > 0.1  # the delta changed something
    # resuming training: the live adapter holds the same weights as the merged model
    resumed = apply_delta(_native(tiny_base), tmp_path / "delta.safetensors", sha)
    torch.testing.assert_close(resumed.model(ids).logits, merged(ids).logits, rtol=0, atol=1e-4)
    # served in bf16: merged in fp32, then cast, tensor by tensor
    half, _, _ = load_base(tiny_spec, fetch=False, dtype=torch.bfloat16, delta=tmp_path / "delta.safetensors")
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert torch.equal(half.denoiser.embed_tokens.weight, merged.denoiser.embed_tokens.weight.bfloat16())


def test_delta_for_another_base_is_refused(tiny_base, tiny_spec, tmp_path):
    from diffusion_core.model.adapter import DeltaError, apply_delta
    from diffusion_core.model.assemble import load_base
    _, adapter, _ = _adapted(tiny_base)
    adapter.save(tmp_path / "delta.safetensors", "0" * 64)
    sha = json.loads((tiny_base / "diffill_base.json").read_text())["gguf_sha256"]
    with pytest.raises(DeltaError, match="was trained on the base with GGUF SHA-256 0000"):
        apply_delta(_native(tiny_base), tmp_path / "delta.safetensors", sha)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(DeltaError, match="cannot read the delta"):
        apply_delta(_native(tiny_base), tmp_path / "bad.safetensors", sha)
    with pytest.raises(DeltaError, match="was trained on the base with GGUF SHA-256 0000"):
        load_base(tiny_spec, fetch=False, delta=tmp_path / "delta.safetensors")


def test_a_delta_of_another_shape_is_refused_when_merged(tiny_base, tiny_spec, tmp_path):
    from diffusion_core.model.adapter import DeltaError
    from diffusion_core.model.assemble import load_base
    _, adapter, _ = _adapted(tiny_base)
    adapter.model.denoiser.norm.weight = torch.nn.Parameter(torch.ones(3))
    sha = json.loads((tiny_base / "diffill_base.json").read_text())["gguf_sha256"]
    adapter.save(tmp_path / "delta.safetensors", sha)
    with pytest.raises(DeltaError, match="does not fit this base"):
        load_base(tiny_spec, fetch=False, delta=tmp_path / "delta.safetensors")


def test_a_truncated_base_says_so(tiny_base, tiny_spec):
    from diffusion_core.model.assemble import load_base
    from diffusion_core.model.base import BaseError
    weights = tiny_base / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BaseError, match="truncated"):
        load_base(tiny_spec, fetch=False)


def test_training_step_on_tiny_llama_then_load_and_fill(tiny_base, tiny_spec, tmp_path, monkeypatch):
    from conftest import TINY_TEXT
    from diffusion_core.infer.engine import EngineSettings, InfillEngine
    from diffusion_core.model.loading import load_model
    from diffusion_core.train.trainer import TrainConfig, train
    data = tmp_path / "data.txt"
    data.write_text(TINY_TEXT * 20)
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "run"), init=tiny_spec.name, steps=4, batch_size=4,
                      seq_len=32, lr=1e-2, warmup=1, save_every=2, lora_rank=4, threads=1, substitute="mid:0.2")
    ckpt = train(cfg, progress=False)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["tokens"] > 0
    assert json.loads((ckpt / "config.json").read_text())["diffill_substitute"] == "mid:0.2"  # the card can say how
    assert state["null_token"] == NULL_TOKEN  # infill spans were padded with the base's reserved null token
    assert (ckpt / "delta.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    from safetensors import safe_open
    with safe_open(str(ckpt / "delta.safetensors"), "pt") as f:
        assert any(k.endswith("lora_B") for k in f.keys())
        assert {f"denoiser.layers.{i}.input_layernorm.weight" for i in range(TINY_SHAPE["layers"])} <= set(f.keys())
        assert float(f.get_tensor("denoiser.layers.0.self_attn.q_proj.lora_B").abs().max()) > 0  # it learned
    # resume: four more steps from the checkpoint
    train(dataclasses.replace(cfg, steps=6), progress=False)
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 6
    # continue the delta in a new run (fresh optimizer): its token count carries on
    tokens = json.loads((ckpt / "trainer_state.json").read_text())["tokens"]
    again = train(dataclasses.replace(cfg, init=str(ckpt), out=str(tmp_path / "run2"), steps=1), progress=False)
    assert json.loads((again / "trainer_state.json").read_text())["tokens"] > tokens
    loaded = load_model(ckpt, precision="fp32")
    assert loaded.model.denoiser.layout == "full"
    engine = InfillEngine(loaded, EngineSettings(max_tokens=4))
    fill = engine.fill("def add(a, b):\n    return ", "\n", length=2)[0]
    assert fill.tokens == 2 and fill.text
    assert engine.fill("The quick brown fox ", " over the lazy dog.")[0].tokens >= 1
    # int8 and bf16 paths load and run too
    for precision in ("int8", "bf16"):
        e = InfillEngine(load_model(ckpt, precision=precision), EngineSettings(max_tokens=4))
        assert e.fill("def add(a, b):\n    return ", "\n", length=2)[0].tokens == 2


def test_prefix_causal_training_is_recorded_and_loaded(tiny_base, tiny_spec, tmp_path):
    from conftest import TINY_TEXT
    from diffusion_core.infer.engine import EngineSettings, InfillEngine
    from diffusion_core.model.loading import load_model
    from diffusion_core.train.trainer import TrainConfig, train
    data = tmp_path / "data.txt"
    data.write_text(TINY_TEXT * 20)
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "run"), init=tiny_spec.name, steps=2, batch_size=4,
                      seq_len=32, lr=1e-2, warmup=1, save_every=2, lora_rank=4, threads=1, attention="prefix-causal")
    ckpt = train(cfg, progress=False)
    assert json.loads((ckpt / "config.json").read_text())["diffill_attention"] == "prefix-causal"
    loaded = load_model(ckpt, precision="fp32")
    assert loaded.model.denoiser.layout == "prefix-causal"
    assert InfillEngine(loaded, EngineSettings(max_tokens=4)).fill(
        "def add(a, b):\n    return ", "\n", length=2)[0].tokens == 2
    # continuing the delta keeps its layout unless told otherwise
    again = train(dataclasses.replace(cfg, init=str(ckpt), out=str(tmp_path / "run2"), steps=1, attention=None),
                  progress=False)
    assert json.loads((again / "config.json").read_text())["diffill_attention"] == "prefix-causal"


def test_autoregressive_baseline_writes_the_given_length_and_cuts_before_the_suffix(tiny_base, tiny_spec, tmp_path):
    from diffusion_core.eval.autoregressive import AutoregressiveBaseline
    from diffusion_core.infer.engine import EngineSettings
    from diffusion_core.model.tokenizer import FastTokenizer
    tok = FastTokenizer(tiny_base)
    ar = AutoregressiveBaseline(_native(tiny_base), tok, EngineSettings(max_tokens=6))
    fill = ar.fill("def add(a, b):\n    return", " a + b\n", length=3)[0]
    assert fill.tokens == 3 and fill.passes == 3
    free = ar.fill("def add(a, b):\n    return", " a + b\n")[0]
    assert 1 <= free.tokens <= 6 and free.passes <= 7
    # A prompt ending in a space reads as the engine's canvas does (the space belongs to the fill), and the
    # text joins it without a doubled space.
    spaced = ar.fill("def add(a, b):\n    return ", "\n", length=3)[0]
    assert spaced.text == fill.text.lstrip(" ") and not spaced.text.startswith(" ")
    from diffusion_core.infer.canvas import special_ids
    control = set(special_ids(tok)) - {ar.start}
    assert control and not control & set(tok(fill.text + spaced.text, add_special_tokens=False).input_ids)


@torch.no_grad()
def test_cached_causal_decoding_matches_the_full_pass(tiny_base):
    model = _native(tiny_base)
    ids = torch.randint(6, model.shape.vocab_size, (1, 9))
    full = model.causal_logits(ids)                                       # (1, 9, V)
    cache = model.new_cache()
    steps = [model.causal_logits(ids[:, :5], cache=cache, last_only=True)]
    for t in range(5, 9):
        steps.append(model.causal_logits(ids[:, t:t + 1], cache=cache, last_only=True))
    torch.testing.assert_close(torch.stack(steps, 1)[0], full[0, 4:], rtol=1e-4, atol=1e-4)


def test_fill_refuses_the_autoregressive_baseline_with_a_clear_message(tmp_path):
    import subprocess
    import sys
    (tmp_path / "t.txt").write_text("a [MASK] b\n")
    r = subprocess.run([sys.executable, "-m", "diffusion_core.cli", "fill", str(tmp_path / "t.txt"),
                        "--strategy", "autoregressive"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "use it with diffill eval" in r.stderr and not r.stdout


def test_a_delta_model_without_its_base_says_how_to_get_it(tiny_spec, tmp_path, monkeypatch):
    from diffusion_core.model.loading import ModelLoadError, load_model
    monkeypatch.setenv("DIFFILL_BASES_DIR", str(tmp_path / "no-bases"))
    monkeypatch.setitem(BASES, tiny_spec.name, tiny_spec)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"diffill_base": tiny_spec.name}))
    (tmp_path / "m" / "delta.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="run `diffill fetch-base`"):
        load_model(tmp_path / "m")
    assert not (tmp_path / "no-bases").exists()  # nothing fetched or written


@torch.no_grad()
def test_context_cache_reads_the_text_around_the_gap_from_the_last_full_pass(tiny_base):
    from diffusion_core.infer.grow import grow
    from diffusion_core.model.tokenizer import FastTokenizer
    from diffusion_core.model.context_cache import ContextCache
    from diffusion_core.model.llama import _rotate, rotary
    model, tok = _native(tiny_base), FastTokenizer(tiny_base)
    head_dim, theta = model.shape.head_dim, model.shape.rope_theta
    # rotary turns compose: a key at position p turned by d is the key at p + d (what moves the cached suffix)
    k = torch.randn(1, 2, 3, head_dim)
    at = lambda p: rotary(torch.tensor(p), head_dim, theta)  # noqa: E731
    torch.testing.assert_close(_rotate(_rotate(k, *at([5, 6, 7])), *at([4])), _rotate(k, *at([9, 10, 11])))

    def plain(ids, positions):  # the engine's forward, without its bans
        return model.lm_head(model.denoiser(ids)[positions])

    before = torch.tensor([0] + tok("def add(a, b):\n    return", add_special_tokens=False).input_ids)
    after = torch.tensor(tok(" a + b\n\nprint(add(1, 2))", add_special_tokens=False).input_ids)
    m = tok.mask_token_id
    canvas = torch.cat([before, torch.full((2,), m), after])[None]
    slots = canvas == m
    cache = ContextCache(model, refresh=8)
    torch.testing.assert_close(cache(canvas, slots), plain(canvas, slots))          # first pass: full
    torch.testing.assert_close(cache(canvas, slots), plain(canvas, slots), rtol=1e-4, atol=1e-4)  # same canvas
    assert (cache.full_passes, cache.partial_passes) == (1, 1)
    # one token committed: only the changed part runs, beside the (slightly stale, shifted) cached context
    grown = torch.cat([before, torch.tensor([17]), torch.full((2,), m), after])[None]
    close = cache(grown, grown == m)
    assert cache.partial_passes == 2 and close.shape == (2, model.shape.vocab_size)
    assert (close - plain(grown, grown == m)).abs().max() < 0.5 * plain(grown, grown == m).abs().max()
    # refresh=1 is the exact forward; grow through it writes what grow through the plain forward writes
    exact = ContextCache(model, refresh=1)
    torch.testing.assert_close(exact(grown, grown == m), plain(grown, grown == m))
    one = grow(plain, before, after, m, [after[0].item()], [], 5, window=2)
    two = grow(ContextCache(model, refresh=1), before, after, m, [after[0].item()], [], 5, window=2)
    assert one.tokens == two.tokens and one.claims.keys() == two.claims.keys()
    cached = ContextCache(model, refresh=4)
    grown4 = grow(cached, before, after, m, [after[0].item()], [], 5, window=2)
    assert cached.partial_passes > 0 and cached.full_passes + cached.partial_passes == grown4.passes
    with pytest.raises(ValueError, match="refresh"):
        ContextCache(model, refresh=0)


@torch.no_grad()
def test_context_cache_runs_a_few_shapes_whatever_the_canvas_length(tiny_base):
    from diffusion_core.model.context_cache import GAP_ROWS, KEYS, ROWS, ContextCache
    model = _native(tiny_base)
    seen, run = set(), model.denoiser.hidden_beside

    def recording(ids, positions, kv, reads=None):  # the (rows, keys) of every pass
        seen.add((ids.shape[1], 0 if reads is None else reads.shape[-1]))
        return run(ids, positions, kv, reads)
    model.denoiser.hidden_beside = recording
    m = 5
    for length in range(20, 20 + 2 * ROWS):  # a canvas a token longer each time, then a token committed in it
        canvas = torch.randint(20, 60, (1, length))
        canvas[0, length // 2:length // 2 + 2] = m
        cache = ContextCache(model, refresh=8)
        plain = model.lm_head(model.denoiser(canvas)[canvas == m])
        # padding is never read (masked keys change only the last bits of the fused attention)
        torch.testing.assert_close(cache(canvas, canvas == m), plain, rtol=1e-4, atol=1e-4)
        canvas[0, length // 2] = 30
        cache(canvas, canvas == m)
    full = {rows for rows, keys in seen if keys == rows}
    assert all(rows % ROWS == 0 for rows in full) and len(full) <= 3  # 32 canvas lengths, 3 buckets
    assert all(rows % GAP_ROWS == 0 and (keys - rows) % KEYS == 0 for rows, keys in seen - {(r, r) for r in full})
    assert len(seen) <= 8


@torch.no_grad()
def test_fused_prepacked_bf16_gives_the_same_logits(tiny_base, tiny_spec):
    from diffusion_core.model.assemble import load_base
    from diffusion_core.model.precision import apply_precision, packing_works
    if not packing_works():
        pytest.skip("this torch build or CPU does not prepack bf16 weights")
    plain, tok, _ = load_base(tiny_spec, fetch=False, dtype=torch.bfloat16)
    served, used = apply_precision(load_base(tiny_spec, fetch=False)[0], "bf16")
    assert used == "bf16" and served.denoiser.layers[0].self_attn.qkv is not None
    ids = torch.tensor([[0] + tok("def add(a, b):", add_special_tokens=False).input_ids + [tok.mask_token_id] * 3])
    assert torch.equal(served(ids).logits, plain(ids).logits)
    assert torch.equal(served.causal_logits(ids, last_only=True), plain.causal_logits(ids, last_only=True))


@torch.no_grad()
def test_context_cache_runs_a_fill_and_its_guesses_in_one_pass(tiny_base):
    from diffusion_core.infer.grow import grow
    from diffusion_core.model.context_cache import ContextCache
    from diffusion_core.model.tokenizer import FastTokenizer
    model, tok = _native(tiny_base), FastTokenizer(tiny_base)
    m = tok.mask_token_id
    before = torch.tensor([0] + tok("def add(a, b):\n    return", add_special_tokens=False).input_ids)
    after = torch.tensor(tok(" a + b\n\nprint(add(1, 2))", add_special_tokens=False).input_ids)

    def canvas(*written):  # (ids (1, T), positions (1, T)): the fill so far and two masked slots
        ids = torch.cat([before, torch.tensor(written, dtype=torch.long), torch.full((2,), m), after])[None]
        return ids, ids == m
    first = ContextCache(model, refresh=100)
    assert len(first.rows([canvas(), canvas(17)])) == 1  # the first pass must be full: only the fill ran
    alone = [ContextCache(model, refresh=100) for _ in range(3)]
    for cache in alone:
        cache(*canvas())                                    # the full pass every later one reads beside (as first's)
    together = first.rows([canvas(17), canvas(17, 30), canvas(17, 31)])  # a fill and two guesses, one pass
    assert first.partial_passes == 1 and [len(x) for x in together] == [2, 2, 2]
    for cache, written, logits in zip(alone, [(17,), (17, 30), (17, 31)], together):
        torch.testing.assert_close(logits, cache(*canvas(*written)), rtol=1e-4, atol=1e-4)  # as if run alone

    # grow with guesses writes what it writes one token a pass, in no more passes
    ends = [after[0].item()]
    plain = ContextCache(model, refresh=100)
    one = grow(plain, before, after, m, ends, [], 8, window=2)
    spec = ContextCache(model, refresh=100)
    fast = grow(spec, before, after, m, ends, [], 8, window=2, rows=spec.rows, guesses=3)
    assert fast.tokens == one.tokens and fast.claims.keys() == one.claims.keys() and fast.passes <= one.passes
    assert spec.full_passes + spec.partial_passes == fast.passes
