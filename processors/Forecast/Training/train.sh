#!/usr/bin/env bash
# Reproduces the glucose forecaster: installs the Debian packages (idempotent), trains with fixed
# seeds, evaluates model + baselines, exports processors/Forecast/Model/glucose-forecaster.{onnx,json}
# and .testvectors.json, and prints the metrics table to stdout (progress goes to stderr).
#   bash processors/Forecast/Training/train.sh [--no-compare] [--epochs N] [--out-dir DIR]
# Environment: STREAMHEALTH_DATA (default <repo>/../shared/data), ORT_CHECK=0 to skip the ONNX
# Runtime check, ORT_LIB=/path/libonnxruntime.so to use an existing library.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3   # Debian's python: the pyenv python3 on PATH does not see python3-torch
export PYTHONDONTWRITEBYTECODE=1

if ! "$PY" -c "import torch, onnx" >/dev/null 2>&1; then
  echo "installing python3-torch python3-onnx (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y python3-torch python3-onnx >&2 || { apt-get update >&2 && apt-get install -y python3-torch python3-onnx >&2; }
fi

# ONNX Runtime for the end-to-end check: the libonnxruntime.so (1.29.0) the C# service loads,
# from the npm package named in shared/ENVIRONMENT.md, cached outside the checkout.
export ORT_CACHE="${ORT_CACHE:-$HOME/.cache/streamhealth-ort}"
lib="$ORT_CACHE/package/Plugins/Linux/x64/libonnxruntime.so"
if [ "${ORT_CHECK:-1}" != 0 ] && [ -z "${ORT_LIB:-}" ] && [ ! -f "$lib" ] && command -v npm >/dev/null; then
  echo "fetching com.github.asus4.onnxruntime@0.4.9 (npm) for the ONNX Runtime check" >&2
  mkdir -p "$ORT_CACHE"
  ( cd "$ORT_CACHE" && tgz=$(npm pack --silent com.github.asus4.onnxruntime@0.4.9 2>/dev/null | tail -1) \
      && tar xzf "$tgz" package/Plugins/Linux/x64/libonnxruntime.so && rm -f "$tgz" ) \
    || echo "ONNX Runtime not available: the check is skipped (onnx.checker + torch re-run only)" >&2
fi
if [ "${ORT_CHECK:-1}" = 0 ]; then export ORT_LIB=/nonexistent ORT_CACHE=/nonexistent; fi

# 2 shared cores: lowest priority, one torch thread
exec nice -n 19 "$PY" "$here/train.py" "$@"
