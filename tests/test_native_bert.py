"""The transformers-free BERT and tokenizer give exactly what transformers gives, and `diffill serve` starts
and loads a BERT model without importing transformers at all."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion_core.model.loading import ModelLoadError, load_model
from diffusion_core.model.precision import PRECISIONS, apply_precision, supported


@pytest.fixture(scope="module")
def both(tiny_model_dir):
    return (load_model(tiny_model_dir, backend="native", precision="fp32"),
            load_model(tiny_model_dir, backend="transformers", precision="fp32"))


def test_same_logits_with_padding(both):
    native, hf = both
    assert type(native.model).__name__ == "NativeBertForMaskedLM"
    ids = torch.randint(6, len(native.tokenizer), (3, 17))
    attention = torch.ones_like(ids)
    attention[1, 12:] = 0
    with torch.no_grad():
        a = native.model(input_ids=ids, attention_mask=attention).logits
        b = hf.model(input_ids=ids, attention_mask=attention).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_same_special_tokens_and_null(both):
    native, hf = both
    for role in ("mask", "pad", "cls", "sep", "bos", "eos", "unk"):
        assert getattr(native.tokenizer, f"{role}_token_id") == getattr(hf.tokenizer, f"{role}_token_id"), role
    assert native.null_token_id == hf.null_token_id is not None
    assert len(native.tokenizer) == len(hf.tokenizer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_same_tokens_and_exact_round_trip(both, text):
    native, hf = both
    ids = native.tokenizer(text, add_special_tokens=False).input_ids
    assert ids == hf.tokenizer(text, add_special_tokens=False).input_ids
    assert native.tokenizer.decode(ids) == hf.tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def test_mismatched_weights_fall_back_or_fail_clearly(tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["position_embedding_type"] = "relative_key"      # not supported natively: transformers runs it
    (d / "config.json").write_text(json.dumps(cfg))
    assert type(load_model(d).model).__name__ == "BertForMaskedLM"
    with pytest.raises(ModelLoadError, match="native BERT cannot run"):
        load_model(d, backend="native")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precisions_run_or_fall_back(tiny_model_dir, precision):
    loaded = load_model(tiny_model_dir, precision=precision)
    wanted = "int8" if precision == "auto" else precision  # auto: a BERT model takes int8 without loss
    assert loaded.precision == (wanted if supported(wanted)[0] else "fp32")
    ids = torch.randint(6, len(loaded.tokenizer), (1, 9))
    with torch.no_grad():
        assert loaded.model(input_ids=ids).logits.shape == (1, 9, len(loaded.tokenizer))


def test_unknown_precision_falls_back_to_fp32(tiny_loaded):
    _, used = apply_precision(tiny_loaded.model, "int3")
    assert used == "fp32"


STARTS_SERVING = """
import json, sys
from server.__main__ import main
from server.app import DiffillServer

def start_io(self):  # what `diffill serve` reaches once set up; load the model as initialize would, and report
    self.ensure_model()
    self.worker.ready.wait(120)
    print(json.dumps({"engine": self.worker.engine is not None,
                      "transformers": sorted(m for m in sys.modules if m.split(".")[0] == "transformers")}))

DiffillServer.start_io = start_io
sys.exit(main(["--model", sys.argv[1]]))
"""


def test_diffill_serve_starts_and_loads_a_bert_model_without_transformers(tiny_model_dir):
    r = subprocess.run([sys.executable, "-c", STARTS_SERVING, str(tiny_model_dir)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report == {"engine": True, "transformers": []}
