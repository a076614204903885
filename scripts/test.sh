#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the whole test suite: the Python tests (engine, training,
# language server over stdio, Neovim end to end), then the VS Code extension's build, lint, unit tests
# and packaging.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash editors/vscode/ci.sh
.venv/bin/python -m pytest -q "$@"
