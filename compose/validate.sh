#!/usr/bin/env bash
# Validates the production shape without a Docker engine or a cluster (compose/README.md, "Validation"):
#   bash compose/validate.sh [ROOT]      # ROOT: a tree with compose/, k8s/ and Dockerfiles; default this repository
# compose/docker-compose.yml against the Compose Specification schema and dclint; `kubectl kustomize` of k8s/ and of
# k8s/ with the GPU patch (k8s/optional/forecaster-gpu.yaml), every object against the Kubernetes schemas; every Dockerfile linted. Prints
# "INVALID <file>: <problem>" per problem and exits 1 if there is any. The validators come from
# compose/local/setup.sh (npm, cached in .local/deploy-tools); tests/StreamHealth.Tests/Deployment runs this in CI.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "${1:-$REPO}" && pwd)"
export STREAMHEALTH_DEPLOY_TOOLS="${STREAMHEALTH_DEPLOY_TOOLS:-$REPO/.local/deploy-tools}"
command -v kubectl >/dev/null || { echo "validate: kubectl not found (it renders k8s/ with its built-in kustomize)" >&2; exit 2; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
rendered=()
status=0
render() {   # render NAME DIR
  if kubectl kustomize "$2" >"$out/$1.yaml" 2>"$out/$1.err"; then
    rendered+=("$out/$1.yaml")
  else
    echo "INVALID $1: kubectl kustomize: $(tr '\n' ' ' <"$out/$1.err")"; status=1
  fi
}
if [[ -f "$ROOT/k8s/kustomization.yaml" ]]; then
  render k8s "$ROOT/k8s"
  # The GPU variant as a user enables it (k8s/kustomization.yaml, patches:): an overlay outside k8s/ (kustomize refuses
  # a root inside another), with the patch beside it (patch files must lie under their kustomization).
  mkdir -p "$out/gpu"
  cp "$ROOT/k8s/optional/forecaster-gpu.yaml" "$out/gpu/"
  printf 'resources: [%s]\npatches:\n  - path: forecaster-gpu.yaml\n' "$(realpath --relative-to="$out/gpu" "$ROOT/k8s")" >"$out/gpu/kustomization.yaml"
  render k8s-optional-forecaster-gpu "$out/gpu"
else
  echo "INVALID k8s: no kustomization.yaml"; status=1
fi
node "$REPO/compose/validate/validate.mjs" "$ROOT" "${rendered[@]}" || status=$?
exit "$status"
