"""``diffill train``: fine-tune or train a masked LM as a text-diffusion model.

One loop serves a single process and ``torchrun`` (DDP, gloo on CPU): each
rank draws its own batches from a seed derived from (seed, rank, step), so a
resumed run draws exactly the batches it would have drawn.  Checkpoints are
Hugging Face directories (safetensors + tokenizer.json + config.json) plus
``trainer_state.json`` and ``optimizer.safetensors``; nothing is pickled.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from diffusion_core.train.corpus import token_cache
from diffusion_core.train.masking import BoundaryTable, corrupt
from diffusion_core.model.mlm_head import MaskedLMRunner
from diffusion_core.infer.schedule import NoiseSchedule, SubstitutionSchedule
from diffusion_core.train.tokenizer import NULL_TOKEN

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    init: str = "scratch"            # scratch | default | PATH (masked LM or bare encoder)
    tokenizer: str | None = None     # PATH: move the model onto this tokenizer (vocabulary transfer)
    dev_data: list[str] = field(default_factory=list)
    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    schedule: str = "linear"
    substitute: str = "none"         # replaced-token noise beside the mask: none | mid:RATE | constant:RATE
    infill_prob: float = 0.5
    eval_every: int = 200
    eval_batches: int = 8
    save_every: int = 200
    seed: int = 0
    threads: int | None = None
    bf16: bool = False
    lora_rank: int = 32              # --init smollm2: rank of the LoRA factors on every projection (1 or more)
    attention: str | None = None     # a base's attention layout (model/llama.py LAYOUTS); None: the start's
    device: str = "cpu"              # cpu | cuda (scripts/gpu_train.sh)
    time_budget_s: float | None = None  # stop (and anneal the learning rate) by wall-clock time instead


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _BertWeights:
    """A transformers masked LM, trained whole and saved as a Hugging Face directory."""

    def __init__(self, model):
        self.model = model

    def parameters(self):
        return list(self.model.named_parameters())

    def save(self, out: Path, tokens: int = 0) -> None:
        self.model.save_pretrained(str(out), safe_serialization=True)


class _DeltaWeights:
    """A pretrained base adapted through ``model.adapter.Adapter``; only the delta is saved."""

    def __init__(self, model, adapter, spec, base_sha256: str):
        self.model, self.adapter, self.spec, self.base_sha256 = model, adapter, spec, base_sha256

    def parameters(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def save(self, out: Path, tokens: int = 0) -> None:
        from diffusion_core.model.assemble import DELTA_FILE
        out.mkdir(parents=True, exist_ok=True)
        self.adapter.save(out / DELTA_FILE, self.base_sha256, {"tokens": tokens})
        config = {"model_type": "llama", "architectures": ["DiffillLlamaDelta"], "diffill_base": self.spec.name,
                  "diffill_base_sha256": self.base_sha256,
                  **{k: v for k, v in vars(self.model.config).items() if k.startswith("diffill_")}}
        (out / "config.json").write_text(json.dumps(config, indent=2))


def _start_name(init: str) -> str:
    """The model ``--init`` names: "default" is whatever the loading module ships as its default."""
    from diffusion_core.model import loading
    return loading.DEFAULT_MODEL if init == "default" else init


def _delta_dir(init: str) -> Path | None:
    """``init`` as a delta model directory (a shipped or trained adaptation to continue), else None."""
    from diffusion_core.model.assemble import DELTA_FILE
    from diffusion_core.model.loading import ModelLoadError, resolve_model_dir
    try:
        path = resolve_model_dir(_start_name(init))
    except ModelLoadError:
        return None
    return path if (path / DELTA_FILE).is_file() else None


def _load_delta_start(cfg: TrainConfig, start: Path | None, resuming: bool):
    """A base + adapter to train: new (``start`` None), resumed from a checkpoint, or continuing a delta."""
    from diffusion_core.model.adapter import Adapter, apply_delta
    from diffusion_core.model.assemble import DELTA_FILE, base_spec_of, load_base
    from diffusion_core.model.base import BASES, MASK_TOKEN, NULL_TOKEN
    start_config = json.loads((start / "config.json").read_text()) if start else {}
    spec = base_spec_of(start_config) if start else BASES[cfg.init]
    model, tok, sha = load_base(spec)
    # A continued delta keeps its calibrated engine values (null threshold, length mode, ...) in its config.
    model.config.__dict__.update({k: v for k, v in start_config.items() if k.startswith("diffill_")})
    model.config.diffill_attention = cfg.attention or start_config.get("diffill_attention", "full")
    model.denoiser.set_layout(model.config.diffill_attention, tok.mask_token_id)
    if start is not None:  # resume (with the optimizer, below) or continue a delta (fresh optimizer)
        adapter = apply_delta(model, start / DELTA_FILE, sha)
    else:
        ids = {name: tok.convert_tokens_to_ids(name) for name in (MASK_TOKEN, NULL_TOKEN)}
        adapter = Adapter(model, ids, rank=cfg.lora_rank, alpha=float(cfg.lora_rank))
    model.config.diffill_null_token = NULL_TOKEN
    trainee = _DeltaWeights(model, adapter, spec, sha)
    if start is not None and not resuming:  # continuing a delta: count the tokens it was trained on
        trainee.start_tokens = int(adapter.info.get("tokens", 0))
    return trainee, tok


def _load_start(cfg: TrainConfig, resume_dir: Path | None):
    from diffusion_core.model.assemble import DELTA_FILE
    from diffusion_core.model.base import BASES
    if resume_dir is not None and (resume_dir / DELTA_FILE).is_file():
        return _load_delta_start(cfg, resume_dir, resuming=True)
    start = None if cfg.init in BASES else _delta_dir(cfg.init)
    if cfg.init in BASES or start is not None:
        if cfg.tokenizer:
            raise ValueError("--tokenizer moves a BERT-style model onto another vocabulary; an adaptation of a "
                             "pretrained base (--init smollm2, its deltas, the default) keeps the base's tokenizer")
        return _load_delta_start(cfg, start, resuming=False)
    if cfg.attention:
        raise ValueError("--attention chooses the layout of a pretrained Llama base (--init smollm2 or its "
                         "delta); a BERT-style model always reads the whole canvas")
    model, tok = _load_bert_start(cfg, resume_dir)
    return _BertWeights(model), tok


def _load_bert_start(cfg: TrainConfig, resume_dir: Path | None):
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from diffusion_core.train import model_init
    from diffusion_core.model.loading import resolve_model_dir
    if resume_dir is not None:
        tok = AutoTokenizer.from_pretrained(str(resume_dir), local_files_only=True)
        return AutoModelForMaskedLM.from_pretrained(str(resume_dir), use_safetensors=True, local_files_only=True), tok
    if cfg.init == "scratch":
        if not cfg.tokenizer:
            raise ValueError("--init scratch needs --tokenizer PATH (a tokenizer.json directory)")
        tok = _local_tokenizer(cfg.tokenizer)
        return model_init.from_scratch(tok), tok
    init_dir = resolve_model_dir(_start_name(cfg.init))
    tok = _local_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
    model = model_init.from_pretrained(init_dir, tok)
    return model, tok or AutoTokenizer.from_pretrained(str(init_dir), local_files_only=True)


def _local_tokenizer(name: str):
    """``--tokenizer``: a folder on this machine (or a cached hub copy); Diffill never downloads one."""
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except OSError as exc:  # transformers would say "couldn't connect", though it never tried
        raise ValueError(f"--tokenizer {name!r}: no such tokenizer on this machine (Diffill never downloads); "
                         "give a folder with tokenizer.json, e.g. one written by `diffill tokenizer`") from exc


def _batch(tokens: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, table: BoundaryTable, tok, null_id,
           substitute: SubstitutionSchedule | None = None):
    """(ids, attention, labels, per-token loss weights), each (B, T); ``substitute`` defaults to the config's."""
    span = cfg.seq_len - 2
    starts = rng.integers(0, max(1, len(tokens) - span), size=cfg.batch_size)
    schedule = NoiseSchedule(cfg.schedule)
    substitute = substitute or SubstitutionSchedule.parse(cfg.substitute)
    rows, labels, weights = [], [], []
    for s in starts:
        window = np.asarray(tokens[s:s + span], dtype=np.int64)
        word_start, newline = table(window)
        c = corrupt(window, word_start, newline, rng, schedule, tok.mask_token_id, null_id, infill_prob=cfg.infill_prob,
                    substitute=substitute)
        rows.append([tok.cls_token_id] + c.input_ids + [tok.sep_token_id])
        labels.append([-100] + c.labels + [-100])
        weights.append([0.0] + c.weights + [0.0])
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    lab = torch.full((len(rows), width), -100)
    wts = torch.zeros(len(rows), width)
    for i, (r, l, w) in enumerate(zip(rows, labels, weights)):
        ids[i, :len(r)] = torch.tensor(r)
        lab[i, :len(l)] = torch.tensor(l)
        wts[i, :len(w)] = torch.tensor(w)
    return ids, (ids != tok.pad_token_id).long(), lab, wts


def _loss(runner, ids, attention, labels, weights, bf16: bool):
    device = next(runner.parameters()).device
    ids, attention, labels, weights = (t.to(device) for t in (ids, attention, labels, weights))
    positions = labels != -100                                   # (B, T)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = runner(ids, attention, positions)               # (N, V)
    ce = torch.nn.functional.cross_entropy(logits.float(), labels[positions], reduction="none")  # (N,)
    loss = (ce * weights[positions]).sum() / ids.shape[0]
    acc = (logits.argmax(-1) == labels[positions]).float().mean()
    return loss, ce.mean().detach(), acc.detach()


def _save(trainee, tok, optimizer, state: dict, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainee.save(tmp, state["tokens"])
    tok.save_pretrained(str(tmp))
    flat = {}
    for i, st in optimizer.state_dict()["state"].items():
        for k, v in st.items():
            flat[f"{i}.{k}"] = v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)
    save_file(flat, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _restore_optimizer(optimizer, path: Path) -> None:
    flat = load_file(str(path))
    sd = optimizer.state_dict()
    for key, value in flat.items():
        i, name = key.split(".", 1)
        sd["state"].setdefault(int(i), {})[name] = value
    optimizer.load_state_dict(sd)


def _param_checksum(model) -> str:
    """sha256 over every parameter's name and float32 bytes, in a fixed order."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _gather_checksums(local: str, world: int) -> list[str]:
    if world == 1:
        return [local]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, local)
    return gathered


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) training; returns the final checkpoint directory."""
    from tqdm import tqdm
    rank, world = _rank_world()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(os.path.expanduser(cfg.out))
    ckpt = out / "checkpoint"
    resume = ckpt if (ckpt / "trainer_state.json").exists() else None
    trainee, tok = _load_start(cfg, resume)
    model = trainee.model.to(cfg.device)
    if tok.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token; a masked LM needs one")
    # The null token pads infill spans (masking.corrupt); without one only random masking is trained. A base
    # adapter names its own (SmolLM2: a reserved special); a BERT start uses tokenizer_train's, if it has it.
    declared = getattr(model.config, "diffill_null_token", None)
    null_name = declared or NULL_TOKEN
    null_id = tok.convert_tokens_to_ids(null_name) if null_name in tok.get_vocab() else None
    if declared and null_id is None:
        raise ValueError(f"the model declares the null token {declared!r} but its tokenizer has no such token")
    null_token = null_name if null_id is not None else None
    if null_token:
        model.config.diffill_null_token = null_token
    model.config.diffill_schedule = cfg.schedule
    substitute = SubstitutionSchedule.parse(cfg.substitute)  # once, and a bad spec fails before any step
    model.config.diffill_substitute = str(substitute)
    tokens = token_cache(cfg.data, tok, out / "cache")
    dev_tokens = token_cache(cfg.dev_data, tok, out / "cache") if cfg.dev_data else None
    table = BoundaryTable(tok)
    runner = MaskedLMRunner(model)
    trained = torch.nn.parallel.DistributedDataParallel(runner) if world > 1 else runner
    trainable = [(n, p) for n, p in trainee.parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2 and n != "token_rows"]
    no_decay = [p for n, p in trainable if p.ndim < 2 or n == "token_rows"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    state = {"step": 0, "tokens": getattr(trainee, "start_tokens", 0), "history": [], "config": asdict(cfg),
             "null_token": null_token}
    if resume is not None:
        state.update(json.loads((resume / "trainer_state.json").read_text()), config=asdict(cfg),
                     null_token=null_token)
        _restore_optimizer(optimizer, resume / "optimizer.safetensors")
        log.info("resumed from %s at step %d", resume, state["step"])

    def progress_frac(step: int) -> float:
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.time_budget_s:
            frac = max(frac, state.get("elapsed_s", 0.0) / cfg.time_budget_s)
        return frac

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = progress_frac(step)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    bar = tqdm(total=cfg.steps, initial=state["step"], disable=not progress or rank != 0, file=sys.stderr,
               unit="step", dynamic_ncols=True)
    t0, tokens_at_t0 = time.time(), state["tokens"]
    model.train()
    elapsed_at_t0 = state.get("elapsed_s", 0.0)
    while state["step"] < cfg.steps and progress_frac(state["step"]) < 1.0:
        step = state["step"]
        rng = np.random.default_rng([cfg.seed, rank, step])
        ids, attention, labels, weights = _batch(tokens, rng, cfg, table, tok, null_id, substitute)
        torch.manual_seed(int(rng.integers(2**62)))  # dropout too, so a resumed run repeats the same steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss, ce, acc = _loss(trained, ids, attention, labels, weights, cfg.bf16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        optimizer.step()
        state["step"] += 1
        state["tokens"] += int(attention.sum()) * world
        state["elapsed_s"] = elapsed_at_t0 + time.time() - t0
        if world > 1 and cfg.time_budget_s:  # ranks must agree on when to stop
            clock = torch.tensor([state["elapsed_s"]])
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            state["elapsed_s"] = float(clock)
        rate = (state["tokens"] - tokens_at_t0) / max(1e-6, time.time() - t0)
        bar.set_postfix(loss=f"{loss.item():.3f}", ce=f"{ce.item():.3f}", acc=f"{acc.item():.3f}", tok_s=f"{rate:.0f}")
        bar.update(1)
        done = state["step"] == cfg.steps or progress_frac(state["step"]) >= 1.0
        if dev_tokens is not None and (state["step"] % cfg.eval_every == 0 or done):
            record = dict(step=state["step"], tokens=state["tokens"], **evaluate(runner, dev_tokens, cfg, table, tok, null_id))
            state["history"].append(record)
            if rank == 0:
                bar.write(json.dumps(record), file=sys.stderr)
            model.train()
        if done:  # every rank reaches this on the same step; DDP ranks must end with identical weights
            state["param_sha256"] = _gather_checksums(_param_checksum(model), world)
            if len(set(state["param_sha256"])) > 1:
                log.error("DDP ranks ended with different parameters: %s", state["param_sha256"])
            elif rank == 0:
                log.info("parameter checksum %s (%d rank(s))", state["param_sha256"][0], world)
        if rank == 0 and (state["step"] % cfg.save_every == 0 or done):
            _save(trainee, tok, optimizer, state, ckpt)
    bar.close()
    if world > 1:
        dist.barrier()
    return ckpt


@torch.no_grad()
def evaluate(runner, tokens: np.ndarray, cfg: TrainConfig, table, tok, null_id) -> dict:
    """Held-out masked-token cross-entropy and top-1 accuracy on fixed batches (masking only, so runs
    trained with and without substitutions compare)."""
    runner.eval()
    rng = np.random.default_rng([cfg.seed, 10_000])
    ces, accs = [], []
    for _ in range(cfg.eval_batches):
        ids, attention, labels, weights = _batch(tokens, rng, cfg, table, tok, null_id, SubstitutionSchedule())
        _, ce, acc = _loss(runner, ids, attention, labels, weights, False)
        ces.append(ce.item())
        accs.append(acc.item())
    return {"dev_ce": round(float(np.mean(ces)), 4), "dev_acc": round(float(np.mean(accs)), 4)}
