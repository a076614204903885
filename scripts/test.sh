#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the whole test suite: the VS Code extension's build,
# lint, unit tests and packaging; the Python tests (engine, training, language server over stdio,
# Neovim end to end, the shipped model); and, in CI or with DIFFILL_E2E_VSCODE=1, the extension in a
# real VS Code (code-server in headless Chromium; downloads about 1.2 GB on its first run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash editors/vscode/ci.sh
.venv/bin/python -m pytest -q "$@"
if [ "${CI:-}" = "true" ] || [ "${DIFFILL_E2E_VSCODE:-}" = "1" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  bash editors/vscode/e2e/run.sh
fi
