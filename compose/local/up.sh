#!/usr/bin/env bash
# README command 1: everything on the embedded defaults. Installs native pieces (idempotent), builds,
# starts PostgreSQL + Redis, the `streamhealth up` host (embedded Kafka, migrations, sample producers)
# and the gateway, prints where to look, and stops it all cleanly on Ctrl-C.
#   up.sh [--for SECONDS]     (--for: stop by itself after SECONDS; used to smoke-test this script)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FOR_SECONDS=""
[[ "${1:-}" == "--for" ]] && FOR_SECONDS=${2:?--for needs seconds}
GATEWAY_PORT=${STREAMHEALTH_GATEWAY_PORT:-8080}
RUN_DIR=${STREAMHEALTH_RUN_DIR:-/var/tmp/streamhealth}/dev
log() { printf '[up] %s\n' "$*" >&2; }
started=$(date +%s)

bash "$ROOT/compose/local/setup.sh"
log "building (Release)"
dotnet build "$ROOT/StreamHealth.sln" -c Release -nologo -v q -clp:ErrorsOnly
bash "$ROOT/compose/local/services.sh" start dev
mkdir -p "$RUN_DIR"

export STREAMHEALTH_Postgres__Port=${STREAMHEALTH_PG_PORT:-55432}
export STREAMHEALTH_Redis__Port=${STREAMHEALTH_REDIS_PORT:-56379}
export STREAMHEALTH_State__Directory="$RUN_DIR/state"
[[ -d "$ROOT/../shared/data" ]] && export STREAMHEALTH_Samples__DataDirectory="$(cd "$ROOT/../shared/data" && pwd)"
# The sample call provider signs its webhooks to the gateway started below (the ones sent before it is up reach the pipeline
# through the poller's safety net).
export STREAMHEALTH_Samples__GatewayUrl="http://127.0.0.1:$GATEWAY_PORT"

pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping"
  # Reverse start order: the gateway lets go of Kafka before the host takes the embedded broker down.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  bash "$ROOT/compose/local/services.sh" stop dev
  log "stopped cleanly"
}
trap cleanup INT TERM EXIT

BOOTSTRAP_FILE="$RUN_DIR/kafka.bootstrap"
rm -f "$BOOTSTRAP_FILE"
"$ROOT/processors/Host/bin/Release/net10.0/streamhealth" up --bootstrap-file "$BOOTSTRAP_FILE" &
pids+=($!)
for _ in $(seq 300); do [[ -s "$BOOTSTRAP_FILE" ]] && break; kill -0 "${pids[0]}" 2>/dev/null || exit 1; sleep 0.1; done
[[ -s "$BOOTSTRAP_FILE" ]] || { log "the streamhealth host did not come up in 30 s"; exit 1; }
export STREAMHEALTH_Kafka__BootstrapServers="$(cat "$BOOTSTRAP_FILE")"

# Development: the local-only credentials of gateway/gateway.Development.json (the dev key, the dev JWT signing key).
(cd "$ROOT/gateway" && ASPNETCORE_ENVIRONMENT=Development exec dotnet bin/Release/net10.0/StreamHealth.Gateway.dll --urls "http://127.0.0.1:$GATEWAY_PORT" \
   --Logging:LogLevel:Default=Warning) &
pids+=($!)
for _ in $(seq 200); do curl -fs "http://127.0.0.1:$GATEWAY_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$GATEWAY_PORT/health" >/dev/null || { log "gateway is not healthy"; curl -s "http://127.0.0.1:$GATEWAY_PORT/health" >&2 || true; exit 1; }
# A sample person registered through the API, with two weeks of health metrics sent through it: the insights pipeline
# has something to aggregate and recommend on, and the token it prints opens the person's own endpoints.
SAMPLE_USER=$("$ROOT/processors/Host/bin/Release/net10.0/streamhealth" sample-user --gateway "http://127.0.0.1:$GATEWAY_PORT") \
  || { log "the sample person could not be set up"; exit 1; }

cat <<INFO

  StreamHealth is up ($(( $(date +%s) - started )) s).
    dashboard   http://127.0.0.1:$GATEWAY_PORT/
    health      http://127.0.0.1:$GATEWAY_PORT/health
    openapi     http://127.0.0.1:$GATEWAY_PORT/openapi/v1.json   (per-user data: a bearer token from /api/v1/auth/token, or the local-only X-Api-Key: dev-key-change-me)
    docs        http://127.0.0.1:$GATEWAY_PORT/docs   (the API reference)
    cgm         http://127.0.0.1:$GATEWAY_PORT/api/v1/cgm/cgm-sample-dexcom/latest   (the sample Dexcom export, streaming in)
                curl -s -H 'Content-Type: text/csv' --data-binary @FILE http://127.0.0.1:$GATEWAY_PORT/convert_to_unified   (any CGM export → unified CSV)
    checkins    http://127.0.0.1:$GATEWAY_PORT/api/v1/health-entries/user/demo-alice   (medications, food and symptoms from the sample provider's check-in calls)
    kafka       $STREAMHEALTH_Kafka__BootstrapServers (embedded)
    postgres    127.0.0.1:$STREAMHEALTH_Postgres__Port/streamhealth   redis 127.0.0.1:$STREAMHEALTH_Redis__Port
    replay      STREAMHEALTH_Kafka__BootstrapServers=$STREAMHEALTH_Kafka__BootstrapServers \\
                  $ROOT/processors/Host/bin/Release/net10.0/streamhealth dump insights.metrics --max 5
$SAMPLE_USER
  Ctrl-C stops everything.

INFO

if [[ -n "$FOR_SECONDS" ]]; then
  sleep "$FOR_SECONDS"
  exit 0
fi
# Stop when Ctrl-C arrives or when any part dies on its own.
wait -n "${pids[@]}"
log "a process exited on its own"
exit 1
