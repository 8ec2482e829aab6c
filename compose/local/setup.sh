#!/usr/bin/env bash
# Installs every native piece StreamHealth needs on a fresh Debian 12 machine of the `dotnet` kind.
# Idempotent: each step checks for its result first; downloads are cached under .local/ (ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL/cache" "$LOCAL/feed"
log() { printf '[setup] %s\n' "$*" >&2; }

# ---- Debian packages -------------------------------------------------------------------------
APT_PACKAGES=(librocksdb7.8 postgresql-15 redis-server
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

# ---- librdkafka 2.15.1 (Debian ships 2.0.2, which Confluent.Kafka 2.15.1 cannot use) ------------
RDK_VERSION=2.15.1
RDK_NPM="@confluentinc/kafka-javascript@1.10.1"   # carries librdkafka 2.15.1's C source in deps/
RDK_NUPKG="$LOCAL/feed/librdkafka.redist.$RDK_VERSION.nupkg"
# One patch to the embedded broker (the mock cluster), never to the client: its fetch looks up an offset
# by walking the partition's message sets from the oldest (upstream "FIXME: Maintain an index"), so each
# fetch near the end costs O(message sets kept, up to 100,000) and latency grows as topics fill. Walking
# from the newest makes the usual tail fetch O(1). Bump the stamp when the patch changes.
RDK_PATCH="mock-msgset-find-from-tail-v1"
if [[ -f "$RDK_NUPKG" && "$(cat "$LOCAL/cache/librdkafka-patch.stamp" 2>/dev/null)" != "$RDK_PATCH" ]]; then
  log "librdkafka patch changed: rebuilding"
  rm -f "$RDK_NUPKG" "$LOCAL/cache/librdkafka-$RDK_VERSION/src/librdkafka.so.1"
fi
if [[ ! -f "$RDK_NUPKG" ]]; then
  src="$LOCAL/cache/librdkafka-$RDK_VERSION"
  if [[ ! -f "$src/src/librdkafka.so.1" ]]; then
    tgz=$(ls "$LOCAL"/cache/confluentinc-kafka-javascript-1.10.1.tgz 2>/dev/null || true)
    if [[ -z "$tgz" ]]; then
      log "npm pack $RDK_NPM"
      (cd "$LOCAL/cache" && npm pack --silent "$RDK_NPM" >/dev/null 2>&1)
      tgz="$LOCAL/cache/confluentinc-kafka-javascript-1.10.1.tgz"
    fi
    rm -rf "$src" "$LOCAL/cache/pkg" && mkdir -p "$LOCAL/cache/pkg"
    tar -xzf "$tgz" -C "$LOCAL/cache/pkg" package/deps/librdkafka
    mv "$LOCAL/cache/pkg/package/deps/librdkafka" "$src" && rm -rf "$LOCAL/cache/pkg"
    python3 - "$src/src/rdkafka_mock.c" <<'PATCH'
import sys
path = sys.argv[1]
code = open(path).read()
old = "TAILQ_FOREACH(mset, &mpart->msgsets, link) {\n                if (mset->first_offset <= offset && offset <= mset->last_offset)"
new = "TAILQ_FOREACH_REVERSE(mset, &mpart->msgsets, rd_kafka_mock_msgset_tailq_s, link) {\n                if (mset->first_offset <= offset && offset <= mset->last_offset)"
if new not in code:
    if code.count(old) != 1: sys.exit("rdkafka_mock.c: msgset lookup not found; patch needs updating")
    open(path, "w").write(code.replace(old, new))
PATCH
    log "building librdkafka $RDK_VERSION (about a minute)"
    (cd "$src" && ./configure --disable-gssapi --disable-curl >"$LOCAL/cache/librdkafka-configure.txt" 2>&1 \
       && make -C src -j"$(nproc)" librdkafka.so.1 >"$LOCAL/cache/librdkafka-make.txt" 2>&1) \
      || { log "librdkafka build failed: see $LOCAL/cache/librdkafka-*.txt"; exit 1; }
  fi
  # A minimal librdkafka.redist package so Confluent.Kafka's ordinary dependency resolves to it.
  stage="$LOCAL/cache/redist-stage"
  rm -rf "$stage" && mkdir -p "$stage/runtimes/linux-x64/native"
  cp "$src/src/librdkafka.so.1" "$stage/runtimes/linux-x64/native/librdkafka.so"
  cat >"$stage/librdkafka.redist.nuspec" <<NUSPEC
<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>librdkafka.redist</id>
    <version>$RDK_VERSION</version>
    <authors>StreamHealth setup (built from librdkafka $RDK_VERSION source)</authors>
    <description>librdkafka $RDK_VERSION for linux-x64, built locally by compose/local/setup.sh.</description>
    <license type="expression">BSD-2-Clause</license>
  </metadata>
</package>
NUSPEC
  (cd "$stage" && rm -f "$RDK_NUPKG.tmp" && zip -q -r -X "$RDK_NUPKG.tmp" librdkafka.redist.nuspec runtimes)
  mv "$RDK_NUPKG.tmp" "$RDK_NUPKG"
  echo "$RDK_PATCH" >"$LOCAL/cache/librdkafka-patch.stamp"
  # A stale extraction in the repo-local package folder would shadow the new package.
  rm -rf "$LOCAL/nuget/librdkafka.redist"
  log "packed $RDK_NUPKG"
fi

# ONNX Runtime comes from NuGet (Microsoft.ML.OnnxRuntime, restored with the solution): nothing to build here.
log "native dependencies ready"
