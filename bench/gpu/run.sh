#!/usr/bin/env bash
# The prepared GPU device run of issue #21, at most 8 minutes on one H200: see bench/gpu/run.py for the
# sections and README.md ("GPU") for how to run it. Results (8 files) go to $OUT.
#   bench/gpu/carry.sh                       # here, once: the model and the wheels the device lacks
#   bench/gpu/run.sh                         # there, through the device tool, carrying bench/gpu/carry
#   PYTHON=.venv/bin/python bench/gpu/run.sh --device cpu --dry-run   # here: proves the script
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHEELS=bench/gpu/carry/wheels
if [ -d "$WHEELS" ] && ! "$PY" -c "import pydantic_settings, starlette, efficientnet_lite_pytorch" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 3
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-bench/results/gpu}
timeout 470 "$PY" bench/gpu/run.py --out "$OUT" "$@"
