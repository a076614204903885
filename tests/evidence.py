"""Which model the load and fault evidence runs on (tests/test_storm.py, tests/test_faults.py), and the check
that a model's base has been fetched.

A plain run (CI: 2 cores, 20 minutes for the whole suite) uses the tiny test models of conftest.py.  The
evidence behind docs/guarantees.md is re-run on the shipped default, as a user gets it::

    DIFFILL_EVIDENCE_MODEL=default DIFFILL_RESULTS_DIR=benchmarks/results \\
        .venv/bin/python -m pytest tests/test_storm.py tests/test_faults.py

``DIFFILL_EVIDENCE_MODEL`` takes ``default``, a shipped model's name or a model directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import session_model
from diffusion_core.model.loading import DEFAULT_MODEL, SHIPPED_MODELS, resolve_model_dir

CHOSEN = os.environ.get("DIFFILL_EVIDENCE_MODEL", "")


def evidence_model(tiny: str = "tiny", hidden: int = 32, layers: int = 1) -> tuple[Path, str]:
    """(model dir, what it is): the model DIFFILL_EVIDENCE_MODEL names, else a tiny test model."""
    if not CHOSEN:
        return (session_model(tiny, hidden=hidden, layers=layers),
                f"tests: {layers}-layer BERT, hidden {hidden}")
    name = DEFAULT_MODEL if CHOSEN == "default" else CHOSEN
    if name in SHIPPED_MODELS:
        shipped = SHIPPED_MODELS[name]
        return shipped, f"{name} (shipped{' default' if name == DEFAULT_MODEL else ''})"
    path = resolve_model_dir(name)
    return path, str(path)


def require_base(model: Path) -> None:
    """Fail, never skip, when ``model`` adapts a base that is not fetched: a skip would hide that the model
    the test is about was never run."""
    from diffusion_core.model.base import BASES, bases_dir, is_converted
    base = json.loads((model / "config.json").read_text(encoding="utf-8")).get("diffill_base")
    if base and not is_converted(BASES[base]):
        pytest.fail(f"{model.name} adapts the base {base}, which is not fetched into {bases_dir()}: "
                    "run `diffill fetch-base` (scripts/setup.sh does) and run the tests again", pytrace=False)


def machine() -> dict:
    """The CPU the evidence was measured on (lscpu's model name) and the cores this process may use."""
    info = {"cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {**info, "cpu": fields.get("model name", ""), "avx512_bf16": "avx512_bf16" in flags,
            "amx": sorted(f for f in flags if f.startswith("amx"))}
