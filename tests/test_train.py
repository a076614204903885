"""The training pipeline on tiny models: the loss falls, checkpoints round-trip exactly,
the noising process keeps its invariants, DDP ranks stay in sync, ``--register``
exports a loadable model (continuing the default's delta too, all or nothing), and
vocabulary transfer keeps shared pieces."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from conftest import TINY_TEXT
from diffusion_core.train import trainer as train_mod
from diffusion_core.train.trainer import TrainConfig, train

NULL = "<null>"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory, tok):
    """A from_scratch model (hidden 32, 1 layer) on the conftest tokenizer, saved as an HF directory."""
    from diffusion_core.train import model_init
    out = tmp_path_factory.mktemp("scratch")
    torch.manual_seed(0)
    model = model_init.from_scratch(tok, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    (d / "train.txt").write_text(TINY_TEXT * 12, encoding="utf-8")
    return d / "train.txt"


def _cfg(out, data, init, **kw) -> TrainConfig:
    base = dict(data=[str(data)], out=str(out), init=str(init), steps=12, batch_size=4, seq_len=32, lr=3e-3,
                warmup=3, save_every=1000, eval_every=1000, eval_batches=2, seed=0, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def _state(out: Path) -> dict:
    return json.loads((Path(out) / "checkpoint" / "trainer_state.json").read_text())


# 1. the training step learns ------------------------------------------------------------------

def test_dev_loss_falls(tmp_path, scratch_dir, corpus):
    cfg = _cfg(tmp_path / "run", corpus, scratch_dir, dev_data=[str(corpus)], steps=60, batch_size=8,
               eval_every=5, eval_batches=4)
    ckpt = train(cfg, progress=False)
    history = _state(tmp_path / "run")["history"]
    assert [h["step"] for h in history] == list(range(5, 61, 5))
    first, last = history[0]["dev_ce"], history[-1]["dev_ce"]
    assert all(np.isfinite(h["dev_ce"]) for h in history)
    # from near-uniform over a 400-token vocabulary (ln 400 = 6.0) to about the corpus' unigram entropy (4.6)
    assert last < first - 0.5, history
    assert ckpt == tmp_path / "run" / "checkpoint"


# 2. checkpoints round-trip exactly ------------------------------------------------------------

class _Interrupted(Exception):
    pass


def test_resume_matches_uninterrupted_run(tmp_path, scratch_dir, corpus, monkeypatch):
    from diffusion_core.model.loading import load_model
    n = 6
    straight = train(_cfg(tmp_path / "straight", corpus, scratch_dir, steps=2 * n, save_every=n), progress=False)

    real_save, real_restore = train_mod._save, train_mod._restore_optimizer

    def save_then_die(model, tok, optimizer, state, out):
        real_save(model, tok, optimizer, state, out)
        if state["step"] == n:
            raise _Interrupted  # a crash right after the step-n checkpoint

    monkeypatch.setattr(train_mod, "_save", save_then_die)
    with pytest.raises(_Interrupted):
        train(_cfg(tmp_path / "resumed", corpus, scratch_dir, steps=2 * n, save_every=n), progress=False)
    assert _state(tmp_path / "resumed")["step"] == n
    saved_opt = load_file(str(tmp_path / "resumed" / "checkpoint" / "optimizer.safetensors"))
    assert {k.split(".", 1)[1] for k in saved_opt} == {"exp_avg", "exp_avg_sq", "step"}
    assert all(float(v) == n for k, v in saved_opt.items() if k.endswith(".step"))

    restored = []

    def spy_restore(optimizer, path):
        real_restore(optimizer, path)
        restored.append({i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.state_dict()["state"].items()})

    monkeypatch.setattr(train_mod, "_save", real_save)
    monkeypatch.setattr(train_mod, "_restore_optimizer", spy_restore)
    resumed = train(_cfg(tmp_path / "resumed", corpus, scratch_dir, steps=2 * n, save_every=n), progress=False)

    # the optimizer state that was loaded is the one saved at step n
    assert len(restored) == 1
    loaded = restored[0]
    assert len(loaded) == len({k.split(".", 1)[0] for k in saved_opt})
    for key, value in saved_opt.items():
        i, name = key.split(".", 1)
        assert torch.equal(loaded[int(i)][name], value), key

    assert _state(tmp_path / "resumed")["step"] == 2 * n
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    oa = load_file(str(straight / "optimizer.safetensors"))
    ob = load_file(str(resumed / "optimizer.safetensors"))
    for k in oa:
        torch.testing.assert_close(oa[k], ob[k], rtol=0, atol=1e-6, msg=k)

    names = {p.name for p in resumed.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"} <= names
    assert not [p for p in resumed.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")]
    loaded_model = load_model(resumed, precision="fp32")  # the weights as trained
    assert loaded_model.model.config.diffill_null_token == NULL
    assert loaded_model.null_token_id == loaded_model.tokenizer.convert_tokens_to_ids(NULL)
    assert _state(tmp_path / "resumed")["param_sha256"] == [train_mod._param_checksum(loaded_model.model)]


def test_resume_at_the_end_does_nothing(tmp_path, tiny_model_dir, corpus):
    ckpt = train(_cfg(tmp_path / "run", corpus, tiny_model_dir, steps=3), progress=False)
    before = load_file(str(ckpt / "model.safetensors"))
    train(_cfg(tmp_path / "run", corpus, tiny_model_dir, steps=3), progress=False)
    after = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _state(tmp_path / "run")["step"] == 3


def test_export_drops_training_state_and_halves(tmp_path, tiny_model_dir, corpus):
    from diffusion_core.train.export import export_model
    from diffusion_core.model.loading import load_model
    ckpt = train(_cfg(tmp_path / "run", corpus, tiny_model_dir, steps=2), progress=False)
    dest = export_model(ckpt, tmp_path / "shipped", dtype=torch.float16)
    names = {p.name for p in dest.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not names & {"optimizer.safetensors", "trainer_state.json"}
    assert all(v.dtype == torch.float16 for v in load_file(str(dest / "model.safetensors")).values()
               if v.is_floating_point())
    loaded = load_model(dest, precision="fp32")
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.null_token_id is not None


# 3. the noising process -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def table(tok):
    from diffusion_core.train.masking import BoundaryTable
    return BoundaryTable(tok)


@pytest.fixture(scope="module")
def corpus_ids(tok) -> np.ndarray:
    return np.asarray(tok(TINY_TEXT * 3, add_special_tokens=False).input_ids, dtype=np.int64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), start=st.integers(0, 10_000), length=st.integers(1, 80),
       infill=st.booleans(), schedule=st.sampled_from(["linear", "cosine", "log-linear"]))
def test_corrupt_invariants(tok, table, corpus_ids, seed, start, length, infill, schedule):
    from diffusion_core.train.masking import corrupt
    from diffusion_core.infer.schedule import NoiseSchedule
    start %= len(corpus_ids)
    window = corpus_ids[start:start + length]
    null_id = tok.convert_tokens_to_ids(NULL)
    mask_id = tok.mask_token_id
    word_start, newline = table(window)
    c = corrupt(window, word_start, newline, np.random.default_rng(seed), NoiseSchedule(schedule), mask_id, null_id,
                infill_prob=1.0 if infill else 0.0)
    inputs, labels = np.array(c.input_ids), np.array(c.labels)
    assert len(inputs) == len(labels) == len(window)  # infill keeps the window length too
    target = labels != -100
    assert target.any()                                # at least one position is at risk
    assert np.array_equal(target, inputs == mask_id)   # loss exactly where the input is masked
    assert np.isfinite(c.weight) and c.weight > 0
    content = np.where(target, labels, inputs)         # what each position holds: revealed or to predict
    if not infill:
        assert np.array_equal(content, window)
        assert null_id not in labels
        return
    # the window with a span's slots padded by a run of nulls (some revealed, as mid-sampling), cut to length
    is_null = content == null_id
    kept = content[~is_null]
    assert np.array_equal(kept, window[:len(kept)])
    nulls = np.flatnonzero(is_null)
    if len(nulls):
        assert (np.diff(nulls) == 1).all()
        assert not target[nulls[-1] + 1:].any()        # nothing at risk after the slots
        null_targets = is_null[target]                 # null targets only after all span targets
        if null_targets.any():
            assert null_targets[int(np.argmax(null_targets)):].all()
    assert mask_id not in labels[target]


def test_corrupt_without_null_token_is_random_masking(tok, table, corpus_ids):
    from diffusion_core.train.masking import corrupt
    from diffusion_core.infer.schedule import NoiseSchedule
    window = corpus_ids[:40]
    for seed in range(50):
        c = corrupt(window, *table(window), np.random.default_rng(seed), NoiseSchedule(), tok.mask_token_id, None,
                    infill_prob=1.0)
        labels = np.array(c.labels)
        assert np.array_equal(labels[labels != -100], window[labels != -100])


def _synthetic_window(n=120):
    ids = np.random.default_rng(7).integers(5, 500, size=n)
    return ids, np.random.default_rng(8).random(n) < 0.4, np.random.default_rng(9).random(n) < 0.05


def test_masking_only_corruption_is_exactly_what_it_was_before_substitutions():
    """``substitute`` none draws no extra random numbers: the same outputs, bit for bit, as the masking-only
    corruption had (digest recorded from it before substitutions were added)."""
    import hashlib

    from diffusion_core.train.masking import corrupt
    from diffusion_core.infer.schedule import NoiseSchedule, SubstitutionSchedule
    ids, starts, newlines = _synthetic_window()
    h = hashlib.sha256()
    for seed in range(300):
        for infill in (0.0, 1.0):
            c = corrupt(ids, starts, newlines, np.random.default_rng(seed), NoiseSchedule(), 3, 4, infill_prob=infill,
                        substitute=SubstitutionSchedule("none"))
            h.update(np.array(c.input_ids + c.labels).tobytes())
            h.update(repr(round(c.weight, 12)).encode())
            assert np.array_equal(np.array(c.weights) > 0, np.array(c.labels) != -100)
            assert set(np.array(c.weights)[np.array(c.labels) != -100]) == {c.weight}
    assert h.hexdigest() == "b9f87fc65f7028a994bdc9245dfe18646a715feda91b3a52bb1e905ff752e9dd"


@pytest.mark.parametrize("infill", [0.0, 1.0])
def test_substitutions_replace_visible_tokens_and_ask_about_as_many_kept_ones(infill):
    from diffusion_core.train.masking import corrupt
    from diffusion_core.infer.schedule import NoiseSchedule, SubstitutionSchedule
    ids, starts, newlines = _synthetic_window()
    mask_id, null_id = 3, 4
    replaced_total = asked_total = visible_total = 0
    for seed in range(400):
        c = corrupt(ids, starts, newlines, np.random.default_rng(seed), NoiseSchedule(), mask_id, null_id,
                    infill_prob=infill, substitute=SubstitutionSchedule("constant", 0.2))
        inputs, labels, weights = np.array(c.input_ids), np.array(c.labels), np.array(c.weights)
        target = labels != -100
        masked = inputs == mask_id
        assert masked[~target].sum() == 0                     # every mask is a target
        visible_target = target & ~masked
        replaced = visible_target & (inputs != labels)
        assert set(inputs[replaced]) <= set(ids)              # replacements come from the same text
        assert np.allclose(weights[visible_target], 1 / len(ids))  # plain CE, no time weight
        assert np.allclose(weights[masked], c.weight) and (weights[~target] == 0).all()
        if infill == 0.0:                                     # random masking: the clean text is recoverable
            assert np.array_equal(np.where(target, labels, inputs), ids)
        replaced_total += replaced.sum()
        asked_total += visible_target.sum()
        visible_total += (~masked).sum()
    assert 0.15 < replaced_total / visible_total < 0.25        # share 0.2 of the visible tokens
    assert 0.3 < asked_total / visible_total < 0.5            # and about as many kept ones asked about


# corpus cache ---------------------------------------------------------------------------------

def test_token_cache_follows_changes_inside_a_folder(tmp_path, tok):
    from diffusion_core.train.corpus import token_cache
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.txt").write_text("The quick brown fox.")
    first = np.array(token_cache([str(src)], tok, tmp_path / "cache"))
    (src / "a.txt").write_text("The lazy dog jumps over the quick brown fox.")
    second = np.array(token_cache([str(src)], tok, tmp_path / "cache"))
    assert len(second) > len(first)
    assert tok.decode(second[:-1].tolist()) == "The lazy dog jumps over the quick brown fox."


def test_token_cache_with_a_multiple_of_the_batch_and_no_text(tmp_path, tok):
    from diffusion_core.train.corpus import token_cache
    jl = tmp_path / "docs.jsonl"
    jl.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(64)))
    ids = token_cache([str(jl)], tok, tmp_path / "cache")
    assert (np.asarray(ids) == tok.eos_token_id).sum() == 64
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no text"):
        token_cache([str(empty)], tok, tmp_path / "cache")


# 4. DDP ---------------------------------------------------------------------------------------

def test_ddp_ranks_stay_in_sync(tmp_path, tiny_model_dir, corpus):
    from diffusion_core.model.loading import load_model
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "diffusion_core.cli", "train", "--data", str(corpus), "--init", str(tiny_model_dir),
           "--out", str(out), "--steps", "4", "--batch-size", "2", "--seq-len", "32", "--warmup", "1",
           "--lr", "1e-2", "--threads", "1", "--quiet"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun hung: {exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = _state(out)
    assert state["step"] == 4
    sums = state["param_sha256"]
    assert len(sums) == 2 and sums[0] == sums[1], sums
    loaded = load_model(out / "checkpoint", precision="fp32")
    assert train_mod._param_checksum(loaded.model) == sums[0]
    # the ranks did train (on different batches, averaged), not sit still
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    end = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert not list(out.glob("cache/*.tmp.npy"))


# 5. diffill train --register ------------------------------------------------------------------

def test_register_exports_a_named_model_and_resumes(tmp_path, tiny_model_dir, corpus, monkeypatch, caplog):
    from diffusion_core.cli import main
    from diffusion_core.model.loading import load_model, resolve_model_dir
    models = tmp_path / "models"
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(models))
    args = ["train", "--data", str(corpus), "--init", str(tiny_model_dir), "--register", "mine", "--batch-size", "2",
            "--seq-len", "32", "--warmup", "1", "--threads", "1", "--quiet"]
    assert main(args + ["--steps", "2"]) == 0
    assert resolve_model_dir("mine") == models / "mine"
    first = load_file(str(models / "mine" / "model.safetensors"))
    loaded = load_model("mine")
    assert loaded.path == models / "mine" and loaded.null_token_id is not None
    assert _state(models / ".runs" / "mine")["step"] == 2

    caplog.set_level(logging.INFO, logger="diffusion_core.train.trainer")
    assert main(args + ["--steps", "4"]) == 0
    assert any("resumed from" in r.getMessage() and "at step 2" in r.getMessage() for r in caplog.records)
    assert _state(models / ".runs" / "mine")["step"] == 4
    second = load_file(str(models / "mine" / "model.safetensors"))
    assert any(not torch.equal(first[k], second[k]) for k in first)
    load_model("mine")


def test_register_with_out_still_registers(tmp_path, tiny_model_dir, corpus, monkeypatch):
    from diffusion_core.cli import main
    from diffusion_core.model.loading import resolve_model_dir
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path / "models"))
    assert main(["train", "--data", str(corpus), "--init", str(tiny_model_dir), "--register", "other",
                 "--out", str(tmp_path / "elsewhere"), "--steps", "1", "--batch-size", "2", "--seq-len", "32",
                 "--threads", "1", "--quiet"]) == 0
    assert resolve_model_dir("other") == tmp_path / "models" / "other"
    assert (tmp_path / "elsewhere" / "checkpoint" / "trainer_state.json").exists()


def test_register_rejects_a_path(tmp_path, corpus, monkeypatch, capsys):
    from diffusion_core.cli import main
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path / "models"))
    assert main(["train", "--data", str(corpus), "--register", "a/b", "--steps", "1"]) == 2
    assert "plain name" in capsys.readouterr().err


def test_lora_rank_zero_is_refused(corpus, capsys):
    """Whole-weight fine-tuning (rank 0) is gone: the rank is a positive number."""
    from diffusion_core.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--data", str(corpus), "--init", "smollm2", "--lora-rank", "0", "--out", "unused"])
    assert "--lora-rank: must be at least 1, not 0" in capsys.readouterr().err


# 5b. learn my style: --init default continues the default's delta ----------------------------

STYLE = ["train", "--init", "default", "--register", "my-style", "--batch-size", "2", "--seq-len", "32",
         "--warmup", "1", "--save-every", "1", "--threads", "1", "--quiet"]


@pytest.fixture()
def tiny_default(tmp_path, monkeypatch, corpus):
    """A user models dir, and a shipped default that is a small delta (one step, rank 4) on a tiny Llama base,
    with a calibrated engine value in its config; returns the models dir."""
    from llama_helpers import install_tiny_base, tiny_base_spec, write_tiny_gguf
    from diffusion_core.train.export import export_model
    from diffusion_core.model import loading
    write_tiny_gguf(tmp_path / "tiny.gguf")
    spec = tiny_base_spec(tmp_path / "tiny.gguf")
    install_tiny_base(tmp_path / "tiny.gguf", spec, tmp_path / "bases", monkeypatch)
    start = train(_cfg(tmp_path / "start", corpus, spec.name, steps=1, batch_size=2, lora_rank=4), progress=False)
    shipped = export_model(start, tmp_path / "shipped" / "tiny-diffill")
    config = json.loads((shipped / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps({**config, "diffill_null_threshold": 0.25}))
    monkeypatch.setitem(loading.SHIPPED_MODELS, "tiny-diffill", shipped)
    monkeypatch.setattr(loading, "DEFAULT_MODEL", "tiny-diffill")
    monkeypatch.setenv("DIFFILL_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def test_learn_my_style_continues_the_default_and_registers_a_loadable_model(tiny_default, corpus, caplog):
    from diffusion_core.cli import main
    from diffusion_core.infer.engine import InfillEngine
    from diffusion_core.model.adapter import read_delta
    from diffusion_core.model.loading import DEFAULT_MODEL, load_model, resolve_model_dir
    start_tokens = json.loads(read_delta(resolve_model_dir(DEFAULT_MODEL) / "delta.safetensors")[0]["info"])["tokens"]
    assert main(STYLE + ["--data", str(corpus), "--steps", "2"]) == 0
    model = tiny_default / "my-style"
    assert sorted(p.name for p in tiny_default.iterdir()) == [".runs", "my-style"]  # the run is no model
    assert {p.name for p in model.iterdir()} == {"config.json", "delta.safetensors"}  # as the shipped delta
    config = json.loads((model / "config.json").read_text())
    assert config["diffill_null_threshold"] == 0.25 and config["diffill_base"] == "tiny-llama"
    assert json.loads(read_delta(model / "delta.safetensors")[0]["info"])["tokens"] > start_tokens  # continued
    fill = InfillEngine(load_model("my-style")).fill("The quick brown", " over the lazy dog.")[0]
    assert fill.text.strip()
    # ... and the language server (so both editors, which pass settings through) serves it by name
    from server.app import DiffillServer
    ls = DiffillServer()
    try:
        ls.apply_settings({"model": "my-style", "precision": "fp32"}, "test")
        assert ls.worker.ready.wait(120) and ls.worker.model_error is None
        assert ls.worker.engine.loaded.path == model
    finally:
        ls.worker.stop(wait=5)
    # a second invocation resumes the run and replaces the model whole
    caplog.set_level(logging.INFO, logger="diffusion_core.train.trainer")
    assert main(STYLE + ["--data", str(corpus), "--steps", "3"]) == 0
    assert any("at step 2" in r.getMessage() for r in caplog.records if "resumed from" in r.getMessage())
    assert sorted(p.name for p in tiny_default.iterdir()) == [".runs", "my-style"]
    assert load_model("my-style").path == model


@pytest.mark.parametrize("failing", ["training", "export"])
def test_a_failed_run_leaves_no_model_and_the_next_one_resumes(tiny_default, corpus, monkeypatch, failing):
    from diffusion_core.train import export as export_mod
    from diffusion_core.cli import main
    from diffusion_core.model.loading import ModelLoadError, load_model, resolve_model_dir
    real_save, real_export = train_mod._save, export_mod.export_model

    def save_then_stop(*args):
        real_save(*args)
        raise KeyboardInterrupt  # the user stops the run after its first checkpoint

    def half_export(checkpoint, dest):
        Path(dest).mkdir(parents=True)
        (Path(dest) / "config.json").write_text("{}")
        raise OSError("No space left on device")  # the disk fills up half-way through the model

    if failing == "training":
        monkeypatch.setattr(train_mod, "_save", save_then_stop)
    else:
        monkeypatch.setattr(export_mod, "export_model", half_export)
    assert main(STYLE + ["--data", str(corpus), "--steps", "2"]) != 0
    assert [p.name for p in tiny_default.iterdir()] == [".runs"]
    with pytest.raises(ModelLoadError):
        resolve_model_dir("my-style")
    monkeypatch.setattr(train_mod, "_save", real_save)
    monkeypatch.setattr(export_mod, "export_model", real_export)
    assert main(STYLE + ["--data", str(corpus), "--steps", "2"]) == 0
    assert load_model("my-style").path == tiny_default / "my-style"


# 6. vocabulary transfer -----------------------------------------------------------------------

def test_vocabulary_transfer_keeps_shared_pieces(tmp_path, tiny_model_dir, tok):
    from transformers import AutoModelForMaskedLM
    from diffusion_core.train import model_init
    from diffusion_core.train.tokenizer import train_tokenizer
    other_text = ("The lazy dog sleeps over the quick brown fox. An editor sends requests to a language server.\n"
                  "def sub(a, b):\n    return a - b\n")
    new_tok = train_tokenizer([other_text] * 4, vocab_size=330, out_dir=tmp_path / "tok")
    assert len(new_tok) != len(tok)
    old = AutoModelForMaskedLM.from_pretrained(str(tiny_model_dir), use_safetensors=True)
    old_emb = old.get_input_embeddings().weight.detach()
    torch.manual_seed(0)
    model = model_init.from_pretrained(tiny_model_dir, new_tok)
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape == (len(new_tok), old_emb.shape[1]) and model.config.vocab_size == len(new_tok)

    old_vocab = tok.get_vocab()
    shared = [(p, i, old_vocab[p]) for p, i in new_tok.get_vocab().items() if p in old_vocab]
    assert len([p for p, _, _ in shared if p.startswith("Ġ") and len(p) > 2]) >= 5  # whole words in both
    for piece, new_id, old_id in shared:
        torch.testing.assert_close(emb[new_id], old_emb[old_id], msg=piece)
    for special in ("<mask>", "<pad>", NULL):
        torch.testing.assert_close(emb[new_tok.convert_tokens_to_ids(special)],
                                   old_emb[tok.convert_tokens_to_ids(special)])

    ids = torch.tensor([new_tok("The lazy dog", add_special_tokens=True).input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(new_tok)) and torch.isfinite(logits).all()
    assert model.get_output_embeddings().weight.shape[0] == len(new_tok)


NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    sys.stderr.write("NETWORK ATTEMPT\\n")
    raise ConnectionRefusedError("no network in this test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = refuse
from diffusion_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("init", ["scratch", "default", "smollm2"])
def test_train_with_a_hub_tokenizer_name_fails_fast_and_offline(tmp_path, corpus, init):
    """`diffill train --tokenizer NAME` reads tokenizers from this machine only: a hub-style name is a clear
    error, and nothing tries the network (none is allowed here, and the hub variables are unset).  An
    adaptation of a pretrained base (the default may be one) refuses --tokenizer outright."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", NO_NETWORK, "train", "--data", str(corpus), "--init", init,
                        "--tokenizer", "someone/no-such-tokenizer", "--out", str(tmp_path / "run"), "--steps", "1",
                        "--quiet"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    assert "NETWORK ATTEMPT" not in r.stderr
    adapts_a_base = init == "smollm2" or train_mod._delta_dir(init) is not None
    expected = ("keeps the base's tokenizer" if adapts_a_base
                else "'someone/no-such-tokenizer': no such tokenizer on this machine")
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - started < 120
