"""Find and load a masked LM: explicit path, user models dir, Hugging Face cache, shipped default.

Security: weights load from ``*.safetensors`` only (``use_safetensors=True``),
never with ``trust_remote_code``, and nothing in a model directory is ever
unpickled.  Every failure is one ``ModelLoadError`` that says where we looked.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

APP = "diffill"
SHIPPED_DIR = Path(__file__).parent.parent / "models"
# Models that ship with Diffill, by name. smollm2-diffill: a LoRA delta that turns the SmolLM2-135M base
# (fetched and converted once by `diffill fetch-base`) into a masked-diffusion denoiser.
SHIPPED_MODELS = {"smollm2-diffill": SHIPPED_DIR / "smollm2-diffill"}
DEFAULT_MODEL = "smollm2-diffill"
SHIPPED_DEFAULT = SHIPPED_MODELS[DEFAULT_MODEL]


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says where Diffill looked and why."""


def user_models_dir() -> Path:
    """Where named models live: $DIFFILL_MODELS_DIR, else the platformdirs user data dir."""
    env = os.environ.get("DIFFILL_MODELS_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP)) / "models"


def _is_model_dir(p: Path) -> bool:
    try:
        return p.is_dir() and (p / "config.json").is_file()
    except OSError:  # a name too long for the file system, a path through a file, ...
        return False


def _hf_cache_dir(name: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached, malformed id, or no hub library: just not found here
        return None


def resolve_model_dir(name: str | os.PathLike | None = None) -> Path:
    """Turn a path, a model name or None (the default) into a model directory.

    Order: an explicit existing path; ``<user models dir>/<name>``; the local
    Hugging Face cache (offline); the shipped models (``SHIPPED_MODELS``; None/"default" is ``DEFAULT_MODEL``).
    """
    name = str(name) if name not in (None, "") else os.environ.get("DIFFILL_MODEL", "default")
    looked: list[str] = []
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # "~nobody": no such user's home
        path = Path(name)
    looked.append(f"path {path}")
    if _is_model_dir(path):
        return path
    # A bare name lives inside the models dir: "." and ".." would step out of it.
    if "/" not in name and "\\" not in name and name not in (".", ".."):
        user = user_models_dir() / name
        looked.append(f"user models dir {user}")
        if _is_model_dir(user):
            return user
    if name.count("/") == 1 and not path.is_absolute() and not name.startswith("."):
        looked.append(f"Hugging Face cache for {name!r} (offline)")
        cached = _hf_cache_dir(name)
        if cached is not None and _is_model_dir(cached):
            return cached
    shipped = SHIPPED_DEFAULT if name == "default" else SHIPPED_MODELS.get(name)
    if shipped is not None:
        looked.append(f"shipped model {shipped}")
        if _is_model_dir(shipped):
            return shipped
    if _is_dir(path):  # it exists, it is just not a model: say what it lacks rather than "not found"
        lacks = "config.json" + ("" if any(path.glob("*.safetensors")) else " and no *.safetensors weights")
        elsewhere = f"; also looked in: {'; '.join(looked[1:])}" if looked[1:] else ""
        raise ModelLoadError(f"{path} is a folder but not a model: it has no {lacks} (a model folder holds "
                             f"config.json, *.safetensors weights and its tokenizer files){elsewhere}")
    raise ModelLoadError(f"model {name!r} not found; looked in: " + "; ".join(looked))


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


@dataclass
class LoadedModel:
    model: object       # a transformers *ForMaskedLM in eval mode
    tokenizer: object   # a fast tokenizer with a mask token
    path: Path
    null_token_id: int | None
    precision: str = "fp32"

    @property
    def name(self) -> str:
        return self.path.name


BACKENDS = ("auto", "native", "transformers")


def load_model(name: str | os.PathLike | None = None, threads: int | None = None,
               precision: str = "auto", backend: str = "auto") -> LoadedModel:
    """Load a masked LM for infilling, or raise ``ModelLoadError`` with a clear reason.

    ``precision`` is auto, fp32, bf16 or int8 (see ``precision.py``); an unsupported one falls back to fp32.
    ``backend``: ``native`` runs BERT directories without importing transformers (fast start-up,
    see ``native_bert.py``), ``transformers`` runs any masked-LM family, ``auto`` tries native first.
    """
    import torch

    from diffusion_core.model.tokenizer import MissingTokenizerFiles
    from diffusion_core.model.native_bert import Unsupported
    from diffusion_core.model.precision import apply_precision
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = resolve_model_dir(name)
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise ModelLoadError(f"{path} has no .safetensors weights (found: {found}); "
                             "Diffill loads safetensors only and never unpickles .bin/.pt files")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("config.json is not a JSON object")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read config.json: {exc}") from exc
    model = tokenizer = None
    if config.get("diffill_base"):  # a delta on a pretrained base (model/assemble.py)
        model, tokenizer = _load_delta(path, config, precision)
    elif backend != "transformers":
        try:
            model, tokenizer = _load_native(path, config, weights)
        except (Unsupported, MissingTokenizerFiles) as exc:
            if backend == "native":
                raise ModelLoadError(f"{path}: {exc}") from exc
            log.info("%s: %s; loading with transformers", path, exc)
    if model is None:
        model, tokenizer = _load_transformers(path)
    if tokenizer.mask_token_id is None:
        raise ModelLoadError(f"{path}: the tokenizer has no mask token, so it is not a masked LM")
    model.eval()
    if threads:
        torch.set_num_threads(threads)
    model, precision = apply_precision(model, precision)
    null_name = config.get("diffill_null_token")
    null_id = tokenizer.convert_tokens_to_ids(null_name) if isinstance(null_name, str) else None
    if null_id is not None and null_id == tokenizer.unk_token_id:
        null_id = None
    log.info("loaded %s (%s, %s, %s)", path, config.get("model_type"), type(model).__name__, precision)
    return LoadedModel(model, tokenizer, path, null_id, precision)


def _load_delta(path: Path, config: dict, precision: str):
    from diffusion_core.model.adapter import DeltaError
    from diffusion_core.model.assemble import load_delta_model
    from diffusion_core.model.base import BaseError
    from diffusion_core.model.gguf_file import GGUFError
    from diffusion_core.model.llama import NativeLlamaDenoiser
    from diffusion_core.model.precision import weights_dtype
    try:
        return load_delta_model(path, config, weights_dtype(NativeLlamaDenoiser, precision))
    except (DeltaError, BaseError, GGUFError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc


def _load_native(path: Path, config: dict, weights: list[Path]):
    from safetensors.torch import load_file

    from diffusion_core.model.tokenizer import FastTokenizer, MissingTokenizerFiles
    from diffusion_core.model.native_bert import NativeBertForMaskedLM, Unsupported, check_config
    check_config(config)
    try:
        tokenizer = FastTokenizer(path)
    except MissingTokenizerFiles:
        raise
    except Exception as exc:  # malformed tokenizer.json or tokenizer_config.json
        raise ModelLoadError(f"{path}: cannot read the tokenizer: {exc}") from exc
    try:
        state: dict = {}
        for f in weights:
            state.update(load_file(str(f)))
        model = NativeBertForMaskedLM(config)
        model.load_weights(state)
    except Unsupported:
        raise
    except Exception as exc:  # truncated or corrupt safetensors, wrong shapes, bad config values
        raise ModelLoadError(f"{path}: cannot load masked-LM weights: {exc}") from exc
    return model, tokenizer


def _load_transformers(path: Path):
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in a CLI or an editor log
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # malformed json, unknown model type, missing tokenizer files
        raise ModelLoadError(f"{path}: cannot read config or tokenizer: {exc}") from exc
    try:
        model = AutoModelForMaskedLM.from_pretrained(str(path), config=config, use_safetensors=True,
                                                     trust_remote_code=False, local_files_only=True,
                                                     dtype=torch.float32)
    except Exception as exc:  # corrupt safetensors, shape mismatch, not a masked-LM family
        raise ModelLoadError(f"{path}: cannot load masked-LM weights: {exc}") from exc
    return model, tokenizer
