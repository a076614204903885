#!/usr/bin/env bash
# Build, lint, test and package the VS Code extension from a clean checkout.
# Usage: editors/vscode/ci.sh   (needs Node >= 20.19 and npm; no VS Code, no Python)
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }

step "npm ci";      npm ci --no-audit --no-fund
step "compile";     npm run compile
step "lint";        npm run lint
step "test";        npm test
step "package";     npx --no-install vsce package --allow-missing-repository </dev/null
step "done: $(ls "$(pwd)"/diffill-*.vsix)"
