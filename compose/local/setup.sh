#!/usr/bin/env bash
# Installs every native piece StreamHealth needs on a fresh Debian 12 machine of the `dotnet` kind.
# Idempotent: each step checks for its result first; downloads are cached under .local/ (ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL/cache" "$LOCAL/feed"
log() { printf '[setup] %s\n' "$*" >&2; }

# ---- Debian packages -------------------------------------------------------------------------
# The clients' librdkafka comes from NuGet (librdkafka.redist 2.16.0). Its default librdkafka.so needs libsasl2.so.3,
# a RHEL soname no Debian 12 package provides (libsasl2-2 ships libsasl2.so.2), so Confluent.Kafka loads the redist's
# self-contained centos8-librdkafka.so (same 2.16.0, without Kerberos/GSSAPI). The build tools below are only for the
# embedded broker's own patched librdkafka (next step).
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

# ---- ONNX Runtime 1.29.0 for the forecaster (no ONNX Runtime package in this NuGet copy) ----------
# The npm package below carries Microsoft.ML.OnnxRuntime's C# API sources (package/Runtime) and a
# linux-x64 CPU libonnxruntime.so (ORT 1.29.0). They are compiled into a net10.0 library and packed,
# with the native library under runtimes/linux-x64/native/, as a repo-local Microsoft.ML.OnnxRuntime
# package (mapped to .local/feed in nuget.config), so processors/Forecast holds a plain PackageReference.
# Never committed: everything here lives under the ignored .local/. Bump ORT_RECIPE when this changes.
ORT_VERSION=1.29.0
ORT_NPM_VERSION=0.4.9
ORT_NPM="com.github.asus4.onnxruntime@$ORT_NPM_VERSION"
ORT_RECIPE="asus4-$ORT_NPM_VERSION-net10-tensors9.0.19-v1"
ORT_NUPKG="$LOCAL/feed/Microsoft.ML.OnnxRuntime.$ORT_VERSION.nupkg"
ORT_STAMP="$LOCAL/cache/onnxruntime.stamp"
if [[ -f "$ORT_NUPKG" && "$(cat "$ORT_STAMP" 2>/dev/null)" != "$ORT_RECIPE" ]]; then
  log "onnxruntime recipe changed: rebuilding"
  rm -f "$ORT_NUPKG"
fi
if [[ ! -f "$ORT_NUPKG" ]]; then
  tgz="$LOCAL/cache/com.github.asus4.onnxruntime-$ORT_NPM_VERSION.tgz"
  if [[ ! -f "$tgz" ]]; then
    log "npm pack $ORT_NPM (150 MB, every platform's library; only the linux-x64 one is used)"
    (cd "$LOCAL/cache" && npm pack --silent "$ORT_NPM" >/dev/null 2>&1) || { log "npm pack $ORT_NPM failed"; exit 1; }
  fi
  build="$LOCAL/cache/onnxruntime-managed"
  rm -rf "$build" && mkdir -p "$build/extract"
  tar -xzf "$tgz" -C "$build/extract" package/Runtime package/Plugins/Linux/x64 package/LICENSE package/ThirdPartyNotices.txt
  mkdir -p "$build/src" "$build/native"
  (cd "$build/extract/package/Runtime" && find . -name '*.cs' -exec cp --parents {} "$build/src/" \;)
  cp "$build/extract/package/Plugins/Linux/x64/libonnxruntime.so" \
     "$build/extract/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so" "$build/native/"
  cp "$build/extract/package/LICENSE" "$build/extract/package/ThirdPartyNotices.txt" "$build/"
  rm -rf "$build/extract"
  # The Unity copy relies on an implicit using that a plain net10.0 build lacks (DllImportResolver's Assembly).
  grep -q '^using System.Reflection;' "$build/src/NativeMethods.shared.cs" \
    || sed -i '0,/^using System;$/s//using System;\nusing System.Reflection;/' "$build/src/NativeMethods.shared.cs"
  grep -q '^using System.Reflection;' "$build/src/NativeMethods.shared.cs" \
    || { log "onnxruntime: NativeMethods.shared.cs has no 'using System;' line; the recipe needs updating"; exit 1; }
  # Keep the repository's build settings (warnings as errors, central package versions) out of this foreign code.
  echo '<Project />' >"$build/Directory.Build.props"
  echo '<Project />' >"$build/Directory.Packages.props"
  cat >"$build/Microsoft.ML.OnnxRuntime.csproj" <<CSPROJ
<Project Sdk="Microsoft.NET.Sdk">
  <!-- Generated by compose/local/setup.sh from $ORT_NPM; not part of the repository. -->
  <PropertyGroup>
    <TargetFramework>net10.0</TargetFramework>
    <AssemblyName>Microsoft.ML.OnnxRuntime</AssemblyName>
    <RootNamespace>Microsoft.ML.OnnxRuntime</RootNamespace>
    <AllowUnsafeBlocks>true</AllowUnsafeBlocks>
    <Nullable>disable</Nullable>
    <ImplicitUsings>disable</ImplicitUsings>
    <EnableDefaultCompileItems>false</EnableDefaultCompileItems>
    <NoWarn>\$(NoWarn);CS1591;CS0618;CS8632;CA1416;NU1603;NU5100;NU5104</NoWarn>
    <PackageId>Microsoft.ML.OnnxRuntime</PackageId>
    <Version>$ORT_VERSION</Version>
    <Authors>StreamHealth setup (Microsoft ONNX Runtime $ORT_VERSION sources and binary from $ORT_NPM)</Authors>
    <Description>ONNX Runtime $ORT_VERSION C# API and linux-x64 CPU library, built locally by compose/local/setup.sh.</Description>
    <PackageLicenseExpression>MIT</PackageLicenseExpression>
    <IncludeSymbols>false</IncludeSymbols>
    <EnableSourceControlManagerQueries>false</EnableSourceControlManagerQueries>
  </PropertyGroup>
  <ItemGroup>
    <Compile Include="src/**/*.cs" />
    <!-- 10.x breaks these sources (ENVIRONMENT.md); 9.0.19 is the 9.0 release this NuGet copy holds. -->
    <PackageReference Include="System.Numerics.Tensors" Version="9.0.19" />
    <None Include="native/*.so" Pack="true" PackagePath="runtimes/linux-x64/native/" />
    <None Include="LICENSE;ThirdPartyNotices.txt" Pack="true" PackagePath="" />
  </ItemGroup>
</Project>
CSPROJ
  log "building Microsoft.ML.OnnxRuntime $ORT_VERSION (managed API from $ORT_NPM)"
  dotnet pack "$build/Microsoft.ML.OnnxRuntime.csproj" -c Release -nologo -o "$build/out" >"$LOCAL/cache/onnxruntime-pack.txt" 2>&1 \
    || { log "onnxruntime build failed: see $LOCAL/cache/onnxruntime-pack.txt"; exit 1; }
  mv "$build/out/Microsoft.ML.OnnxRuntime.$ORT_VERSION.nupkg" "$ORT_NUPKG"
  rm -rf "$build/out" "$build/bin" "$build/obj"
  echo "$ORT_RECIPE" >"$ORT_STAMP"
  # A stale extraction in the repo-local package folder would shadow the new package.
  rm -rf "$LOCAL/nuget/microsoft.ml.onnxruntime"
  log "packed $ORT_NUPKG"
fi
log "native dependencies ready"
