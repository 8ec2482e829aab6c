#!/usr/bin/env bash
# Installs every native piece StreamHealth needs on a fresh Debian 12 machine of the `dotnet` kind.
# Idempotent: each step checks for its result first; downloads are cached under .local/ (ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL/cache"
log() { printf '[setup] %s\n' "$*" >&2; }

# ---- Debian packages -------------------------------------------------------------------------
# The clients' librdkafka comes from NuGet (librdkafka.redist 2.16.0). Its default librdkafka.so needs libsasl2.so.3,
# a RHEL soname no Debian 12 package provides (libsasl2-2 ships libsasl2.so.2), so Confluent.Kafka loads the redist's
# self-contained centos8-librdkafka.so (same 2.16.0, without Kerberos/GSSAPI). The build tools below are only for the
# embedded broker's own patched librdkafka (next step). wrk drives the insights load harness (benchmarks/, `insights-api`).
# chromium: the dashboard's browser tests drive Debian's build through Playwright (never a browser download).
APT_PACKAGES=(postgresql-15 redis-server wrk chromium
              gcc make pkg-config libssl-dev zlib1g-dev libzstd-dev liblz4-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster on 5432 via its service; we run our own clusters.

# ---- the embedded broker's librdkafka (patched; the clients keep librdkafka.redist 2.16.0) -------------
# The embedded broker is librdkafka's mock cluster. Its fetch looks up an offset by walking the partition's
# message sets from the oldest (upstream "FIXME: Maintain an index"), so each fetch near the end costs
# O(message sets kept, up to 100,000): at a steady 10k records/s the stream loop's p50 leaves ~12 ms within
# 10 s and reaches tens of seconds, still so in 2.16.0 (benchmarks/RESULTS.md). Walking from the newest makes
# the usual tail fetch O(1). So the broker alone runs a patched build, loaded by path with RTLD_LOCAL
# (processors/Runtime/Kafka/Librdkafka.cs); -Bsymbolic binds its calls to its own functions to itself, never
# to the clients' copy. Source: no npm package carries librdkafka 2.16.0's C source (the newest,
# @confluentinc/kafka-javascript 1.10.1, carries 2.15.1), so the broker is 2.15.1: the mock cluster speaks
# the Kafka wire protocol to the 2.16.0 clients like any broker. Bump BROKER_PATCH when the recipe changes.
BROKER_RDK_VERSION=2.15.1
BROKER_RDK_NPM_VERSION=1.10.1   # @confluentinc/kafka-javascript, package.json "librdkafka": "2.15.1"
BROKER_PATCH="mock-msgset-find-from-tail-v1+bsymbolic"
BROKER_SO="$LOCAL/broker/librdkafka-mock-broker.so"
BROKER_STAMP="$LOCAL/broker/librdkafka-mock-broker.stamp"
if [[ ! -f "$BROKER_SO" || "$(cat "$BROKER_STAMP" 2>/dev/null)" != "$BROKER_RDK_VERSION $BROKER_PATCH" ]]; then
  mkdir -p "$LOCAL/broker"
  tgz="$LOCAL/cache/confluentinc-kafka-javascript-$BROKER_RDK_NPM_VERSION.tgz"
  if [[ ! -f "$tgz" ]]; then
    log "npm pack @confluentinc/kafka-javascript@$BROKER_RDK_NPM_VERSION (librdkafka $BROKER_RDK_VERSION C source)"
    (cd "$LOCAL/cache" && npm pack --silent "@confluentinc/kafka-javascript@$BROKER_RDK_NPM_VERSION" >/dev/null 2>&1) \
      || { log "npm pack @confluentinc/kafka-javascript@$BROKER_RDK_NPM_VERSION failed"; exit 1; }
  fi
  src="$LOCAL/cache/librdkafka-broker-$BROKER_RDK_VERSION"
  rm -rf "$src" "$src.extract" && mkdir -p "$src.extract"
  tar -xzf "$tgz" -C "$src.extract" package/deps/librdkafka
  mv "$src.extract/package/deps/librdkafka" "$src" && rm -rf "$src.extract"
  grep -q "RD_KAFKA_VERSION  *0x$(printf '%02x%02x%02x' ${BROKER_RDK_VERSION//./ })ff" "$src/src/rdkafka.h" \
    || { log "$tgz does not carry librdkafka $BROKER_RDK_VERSION"; exit 1; }
  python3 - "$src/src/rdkafka_mock.c" <<'PATCH'
import sys
path = sys.argv[1]
code = open(path).read()
old = "TAILQ_FOREACH(mset, &mpart->msgsets, link) {\n                if (mset->first_offset <= offset && offset <= mset->last_offset)"
new = "TAILQ_FOREACH_REVERSE(mset, &mpart->msgsets, rd_kafka_mock_msgset_tailq_s, link) {\n                if (mset->first_offset <= offset && offset <= mset->last_offset)"
if code.count(old) != 1: sys.exit("rdkafka_mock.c: msgset lookup not found; the patch needs updating")
open(path, "w").write(code.replace(old, new))
PATCH
  log "building the embedded broker's librdkafka $BROKER_RDK_VERSION ($BROKER_PATCH, about a minute)"
  (cd "$src" && LDFLAGS="-Wl,-Bsymbolic" ./configure --disable-gssapi --disable-curl >"$LOCAL/broker/configure.txt" 2>&1 \
     && make -C src -j"$(nproc)" librdkafka.so.1 >"$LOCAL/broker/make.txt" 2>&1) \
    || { log "broker librdkafka build failed: see $LOCAL/broker/configure.txt and make.txt"; exit 1; }
  readelf -d "$src/src/librdkafka.so.1" | grep SYMBOLIC >/dev/null \
    || { log "broker librdkafka was linked without -Bsymbolic: it could call into the clients' copy"; exit 1; }
  cp "$src/src/librdkafka.so.1" "$BROKER_SO.tmp" && mv "$BROKER_SO.tmp" "$BROKER_SO"
  rm -rf "$src"
  echo "$BROKER_RDK_VERSION $BROKER_PATCH" >"$BROKER_STAMP"
  log "built $BROKER_SO"
fi

# ---- validators of the production shape (compose/validate.sh: Compose schema, Kubernetes schemas, Dockerfile lint) ----
# npm packages pinned by compose/validate/package-lock.json, installed into .local/deploy-tools; reinstalled only when
# the lock file changes. kubectl renders k8s/ with its built-in kustomize (v5); Debian's own kubernetes-client (1.20)
# is too old for the kustomization, so the apt package `kubectl` where the machine's sources carry it.
TOOLS="$LOCAL/deploy-tools"
TOOLS_LOCK="$ROOT/compose/validate/package-lock.json"
if [[ ! -d "$TOOLS/node_modules" || "$(cat "$TOOLS/stamp" 2>/dev/null)" != "$(sha256sum <"$TOOLS_LOCK")" ]]; then
  log "npm ci the deployment validators into $TOOLS"
  rm -rf "$TOOLS" && mkdir -p "$TOOLS"
  cp "$ROOT/compose/validate/package.json" "$TOOLS_LOCK" "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error --cache "$LOCAL/cache/npm" >"$TOOLS/npm.txt" 2>&1) \
    || { log "npm ci of the deployment validators failed: see $TOOLS/npm.txt"; exit 1; }
  sha256sum <"$TOOLS_LOCK" >"$TOOLS/stamp"
fi
if ! command -v kubectl >/dev/null; then
  log "apt-get install kubectl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends kubectl >/dev/null \
    || { log "no kubectl package in this machine's apt sources: compose/validate.sh cannot render k8s/"; exit 1; }
fi

# ---- the dashboard (gateway/dashboard: Vite + uPlot) built into the gateway's web root, gateway/wwwroot (ignored) ----
# Rebuilt only when the lock file or a source changes; everything it needs is bundled, nothing is fetched at run time.
DASH="$ROOT/gateway/dashboard"
DASH_STAMP="$LOCAL/dashboard.stamp"
dash_hash="$(cd "$DASH" && cat package.json package-lock.json vite.config.js index.html src/* | sha256sum)"
if [[ ! -f "$ROOT/gateway/wwwroot/index.html" || ! -d "$DASH/node_modules" || "$(cat "$DASH_STAMP" 2>/dev/null)" != "$dash_hash" ]]; then
  log "npm ci + vite build of the dashboard into gateway/wwwroot"
  (cd "$DASH" && npm ci --no-audit --no-fund --loglevel=error --cache "$LOCAL/cache/npm" >"$LOCAL/dashboard-build.txt" 2>&1 \
     && npm run build >>"$LOCAL/dashboard-build.txt" 2>&1) \
    || { log "the dashboard build failed: see $LOCAL/dashboard-build.txt"; exit 1; }
  echo "$dash_hash" >"$DASH_STAMP"
fi

# ONNX Runtime comes from NuGet (Microsoft.ML.OnnxRuntime, restored with the solution): nothing to build here.
log "native dependencies ready"
