#!/usr/bin/env bash
# benchmarks/gpu_check.py on a lent GPU machine, whose python3 holds a CUDA torch but lacks papermill,
# ipykernel, albumentations, torch-pruning ... and cannot download them: install the wheels that
# `python benchmarks/gpu_check.py --prepare` put into gpu_subset/wheels (for Python 3.12) into a folder
# of their own, put it and this checkout on PYTHONPATH, and run the check on cuda.
#   bash benchmarks/gpu_check.sh --out "$OUT/gpu"        # more arguments go to gpu_check.py
# PYTHON=... picks another interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
if compgen -G "gpu_subset/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    gpu_subset/wheels/*.whl || { echo "gpu_check.sh: installing gpu_subset/wheels failed"; exit 3; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:$PYTHONPATH" PATH="$SITE/bin:$PATH" NO_ALBUMENTATIONS_UPDATE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
exec "$PY" benchmarks/gpu_check.py --device cuda "$@"
