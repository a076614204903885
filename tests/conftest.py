"""Tiny real models built in-process: a byte-level BPE tokenizer trained on a few
paragraphs and a randomly initialised 1-layer BERT masked LM, saved as a real
Hugging Face model directory (config.json, model.safetensors, tokenizer.json).

Tests write only to temporary dirs: every server the tests start (they inherit
this environment) logs under the session's temporary dir, never into the user's
log, which ``:Diffill log`` shows.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

TINY_TEXT = """The quick brown fox jumps over the lazy dog. A language server answers requests from an editor.
def add(a, b):
    return a + b

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y
Masked diffusion fills gaps in the middle of text, seeing both sides of the gap at once.
Émile a mangé 🍎 et 日本語 のテキスト. Combining: e\u0301. Tabs\tand  double  spaces.
"""


def build_tiny_model(out: Path, hidden: int = 32, layers: int = 1) -> Path:
    """Write a real model directory: trained tokenizer + randomly initialised BERT masked LM."""
    from transformers import BertConfig, BertForMaskedLM
    from diffusion_core.train.tokenizer import train_tokenizer
    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer([TINY_TEXT] * 4, vocab_size=400, out_dir=out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    cfg.diffill_null_token = "<null>"
    BertForMaskedLM(cfg).save_pretrained(str(out), safe_serialization=True)
    return out


_SESSION_DIR = Path(tempfile.mkdtemp(prefix="diffill-tests-"))
LOG_DIR = _SESSION_DIR / "log"
os.environ["DIFFILL_LOG_DIR"] = str(LOG_DIR)                  # server/logs.py: where the server log goes
os.environ["XDG_STATE_HOME"] = str(_SESSION_DIR / "state")    # and platformdirs' fallback for it


def session_model(name: str, **kw) -> Path:
    """A model dir shared by the whole run (server tests need its path when their module is imported)."""
    return build_tiny_model(_SESSION_DIR / name, **kw)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return session_model("tiny")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from diffusion_core.model.loading import load_model
    return load_model(tiny_model_dir, precision="fp32")  # fp32: tests bias its head


@pytest.fixture()
def engine(tiny_loaded):
    from diffusion_core.infer.engine import InfillEngine
    return InfillEngine(tiny_loaded)
