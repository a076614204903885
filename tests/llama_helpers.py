"""A tiny llama GGUF written the way llama.cpp writes one (rotary-permuted q/k, quantized tensors),
with a real byte-level BPE tokenizer, for the base-conversion, denoiser and adaptation tests."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

TINY_SHAPE = dict(hidden=64, heads=4, kv_heads=2, ff=128, layers=2)


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf does to q/k rows (Hugging Face rotate-half -> interleaved)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_tokenizer_parts(tmp: Path):
    """(tokens, token_types, merges) of a byte-level BPE trained on the tests' tiny text."""
    from conftest import TINY_TEXT
    from diffusion_core.train.tokenizer import train_tokenizer
    tok = train_tokenizer([TINY_TEXT] * 4, vocab_size=400, out_dir=tmp / "tok")
    spec = json.loads((tmp / "tok" / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    specials = {a["content"] for a in spec["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, [3 if t in specials else 1 for t in tokens], merges, tok


def write_tiny_gguf(path: Path, seed: int = 0, embed_type: str = "Q8_0", layer_type: str = "F32") -> dict:
    """Write a tiny llama GGUF; returns the Hugging Face-layout float32 state it encodes (after dequantisation)."""
    import gguf
    from gguf.quants import dequantize, quantize
    s = TINY_SHAPE
    tokens, types, merges, _ = tiny_tokenizer_parts(path.parent)
    rng = np.random.default_rng(seed)
    h, f, hd = s["hidden"], s["ff"], s["hidden"] // s["heads"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(s["layers"])
    w.add_context_length(512)
    w.add_embedding_length(h)
    w.add_feed_forward_length(f)
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    hf: dict[str, np.ndarray] = {}

    def put(gguf_name: str, hf_name: str, array: np.ndarray, kind: str, heads: int | None = None):
        array = array.astype(np.float32)
        stored = llama_cpp_permute(array, heads) if heads else array
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        if kind == "F32":
            w.add_tensor(gguf_name, stored)
            back = stored
        else:
            q = quantize(stored, qtype)
            w.add_tensor(gguf_name, q, raw_shape=q.shape, raw_dtype=qtype)
            back = dequantize(q, qtype).reshape(stored.shape)
        # what a correct reader must give back, in Hugging Face layout
        hf[hf_name] = llama_cpp_unpermute(back, heads) if heads else back

    put("token_embd.weight", "model.embed_tokens.weight", rng.normal(0, 0.5, (len(tokens), h)), embed_type)
    put("output_norm.weight", "model.norm.weight", 1 + rng.normal(0, 0.1, h), "F32")
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", 1 + rng.normal(0, 0.1, h), "F32")
        put(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", 1 + rng.normal(0, 0.1, h), "F32")
        put(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", rng.normal(0, 0.2, (h, h)), layer_type, s["heads"])
        put(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", rng.normal(0, 0.2, (s["kv_heads"] * hd, h)),
            layer_type, s["kv_heads"])
        put(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", rng.normal(0, 0.2, (s["kv_heads"] * hd, h)), layer_type)
        put(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", rng.normal(0, 0.2, (h, h)), layer_type)
        put(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", rng.normal(0, 0.2, (f, h)), layer_type)
        put(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", rng.normal(0, 0.2, (f, h)), layer_type)
        put(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", rng.normal(0, 0.2, (h, f)), layer_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


def llama_cpp_unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_base_spec(gguf: Path):
    """A ``BaseSpec`` for the tiny GGUF at ``gguf``, its reserved tokens the tiny tokenizer's mask and null."""
    from diffusion_core.model.base import MASK_TOKEN, NULL_TOKEN, SMOLLM2, sha256_of
    return dataclasses.replace(SMOLLM2, name="tiny-llama", gguf_sha256=sha256_of(gguf),
                               reserved={MASK_TOKEN: "<mask>", NULL_TOKEN: "<null>"})


def install_tiny_base(gguf: Path, spec, bases: Path, monkeypatch) -> Path:
    """Convert the tiny GGUF into a base under ``bases`` (as DIFFILL_BASES_DIR) and register it as a base."""
    from diffusion_core.model.base import BASES, base_dir, convert_gguf
    monkeypatch.setenv("DIFFILL_BASES_DIR", str(bases))
    monkeypatch.setitem(BASES, spec.name, spec)
    return convert_gguf(gguf, base_dir(spec), spec)
