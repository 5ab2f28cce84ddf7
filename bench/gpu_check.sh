#!/usr/bin/env bash
# GPU check, for a CUDA machine with no model hub: LoRA bf16 and QLoRA 4-bit on a random Llama-3-8B shape
# through the trainer's loop; prints tokens/s, MFU and peak GPU memory against the plan. Aims at < 5 minutes.
#
#   bench/gpu_check.sh [--steps 200] [--batch-size 8] [--skip-qlora]   (--smoke: 2 CPU steps, checks the script)
#
# Expects torch, transformers, peft and accelerate installed; the project's other dependencies (pydantic,
# fsspec, ... and bitsandbytes for QLoRA) are installed from bench/wheels/ when that folder is there
# (fill it here with: pip download -d bench/wheels pydantic fsspec s3fs click rich pyyaml httpx
# prometheus-client bitsandbytes --only-binary :all:). The trainer runs from this source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA GPU" >&2; exit 2; }
missing=$("$PY" - <<'PY'
import importlib.util
mods = ["torch", "transformers", "peft", "accelerate", "pydantic", "fsspec", "click", "rich", "yaml", "httpx",
        "safetensors"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ] || ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
  if [ -d bench/wheels ]; then
    "$PY" -m pip install -q --no-index --find-links bench/wheels pydantic fsspec click rich pyyaml httpx \
      prometheus-client bitsandbytes 2>&1 | tail -2 || true
  elif [ -n "$missing" ]; then
    echo "missing Python packages: $missing (and no bench/wheels/ to install them from)" >&2; exit 2
  fi
fi
export PYTHONPATH="$PWD/operator:$PWD/trainer-image${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
exec timeout 290 "$PY" bench/gpu_check.py "$@"
