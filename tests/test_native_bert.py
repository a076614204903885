"""The transformers-free BERT and tokenizer give exactly what transformers gives."""
import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion_core.model.loading import SHIPPED_DEFAULT, ModelLoadError, load_model
from diffusion_core.model.precision import PRECISIONS, apply_precision, supported


@pytest.fixture(scope="module", params=["tiny", "shipped"])
def both(request, tiny_model_dir):
    path = tiny_model_dir if request.param == "tiny" else SHIPPED_DEFAULT
    return load_model(path, backend="native"), load_model(path, backend="transformers")


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
    assert loaded.precision == (precision if supported(precision)[0] else "fp32")
    ids = torch.randint(6, len(loaded.tokenizer), (1, 9))
    with torch.no_grad():
        assert loaded.model(input_ids=ids).logits.shape == (1, 9, len(loaded.tokenizer))


def test_unknown_precision_falls_back_to_fp32(tiny_loaded):
    _, used = apply_precision(tiny_loaded.model, "int3")
    assert used == "fp32"
