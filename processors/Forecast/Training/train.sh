#!/usr/bin/env bash
# Reproduces the glucose forecaster: installs the Debian packages (idempotent), trains with fixed
# seeds, evaluates model + baselines, exports processors/Forecast/Model/glucose-forecaster.{onnx,json}
# and .testvectors.json, and prints the metrics table to stdout (progress goes to stderr).
#   bash processors/Forecast/Training/train.sh [--no-compare] [--epochs N] [--out-dir DIR]
# Environment: STREAMHEALTH_DATA (default <repo>/../shared/data), ORT_CHECK=0 to skip the ONNX
# Runtime check, ORT_LIB=/path/libonnxruntime.so to use another library than the service's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3   # Debian's python: the pyenv python3 on PATH does not see python3-torch
export PYTHONDONTWRITEBYTECODE=1

if ! "$PY" -c "import torch, onnx" >/dev/null 2>&1; then
  echo "installing python3-torch python3-onnx (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y python3-torch python3-onnx >&2 || { apt-get update >&2 && apt-get install -y python3-torch python3-onnx >&2; }
fi

# ONNX Runtime for the end-to-end check: the libonnxruntime.so the C# service loads, from the NuGet
# package Microsoft.ML.OnnxRuntime in the repo-local package folder (nuget.config), restored if absent.
if [ "${ORT_CHECK:-1}" = 0 ]; then
  export ORT_LIB=/nonexistent
elif [ -z "${ORT_LIB:-}" ]; then
  root="$(cd "$here/../../.." && pwd)"
  ort_version=$(sed -n 's/.*PackageVersion Include="Microsoft.ML.OnnxRuntime" Version="\([^"]*\)".*/\1/p' "$root/Directory.Packages.props")
  lib="$root/.local/nuget/microsoft.ml.onnxruntime/$ort_version/runtimes/linux-x64/native/libonnxruntime.so"
  [ -f "$lib" ] || dotnet restore "$root/processors/Forecast" -nologo -v q >&2 || true
  if [ -f "$lib" ]; then export ORT_LIB="$lib"
  else echo "ONNX Runtime $ort_version not restored: the check is skipped (onnx.checker + torch re-run only)" >&2; fi
fi

# 2 shared cores: lowest priority, one torch thread
exec nice -n 19 "$PY" "$here/train.py" "$@"
