import json
import shutil

import pytest

from diffusion_core.model.loading import ModelLoadError, load_model, resolve_model_dir


def test_explicit_path_loads_with_null_token(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    assert loaded.tokenizer.mask_token_id is not None
    assert loaded.null_token_id == loaded.tokenizer.convert_tokens_to_ids("<null>")


def test_name_resolves_in_user_models_dir(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path))
    shutil.copytree(tiny_model_dir, tmp_path / "mine")
    assert resolve_model_dir("mine") == tmp_path / "mine"


def test_missing_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError) as err:
        resolve_model_dir("nope")
    assert "user models dir" in str(err.value) and str(tmp_path) in str(err.value)


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_model(d)


def test_corrupt_weights_give_a_clear_error(tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="cannot load masked-LM weights"):
        load_model(d)


def test_broken_config_gives_a_clear_error(tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read config"):
        load_model(d)


def test_remote_code_is_never_run(tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForMaskedLM": "evil.EvilModel"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    # auto_map is ignored: the built-in BERT classes are used by both backends
    assert type(load_model(d).model).__name__ == "NativeBertForMaskedLM"
    assert type(load_model(d, backend="transformers").model).__name__ == "BertForMaskedLM"
