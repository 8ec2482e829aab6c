#!/usr/bin/env bash
# Starts/stops the local PostgreSQL 15 and Redis 7 of one profile, on loopback, own ports, data outside
# the checkout. Idempotent: start on a running profile and stop on a stopped one are no-ops.
#   services.sh start|stop|status dev|test
# dev:  PostgreSQL 55432, Redis 56379 (the README's first command)
# test: PostgreSQL 55433, Redis 56380 (the test suite; fsync off, it is thrown away)
set -euo pipefail
action=${1:?usage: services.sh start|stop|status dev|test}
profile=${2:-dev}
case "$profile" in
  dev)  PG_PORT=${STREAMHEALTH_PG_PORT:-55432}; REDIS_PORT=${STREAMHEALTH_REDIS_PORT:-56379}; PG_EXTRA="" ;;
  test) PG_PORT=${STREAMHEALTH_PG_PORT:-55433}; REDIS_PORT=${STREAMHEALTH_REDIS_PORT:-56380}
        PG_EXTRA="-c fsync=off -c synchronous_commit=off -c full_page_writes=off" ;;
  *) echo "services.sh: unknown profile '$profile' (dev or test)" >&2; exit 2 ;;
esac
RUN_DIR=${STREAMHEALTH_RUN_DIR:-/var/tmp/streamhealth}/$profile
PG_BIN=/usr/lib/postgresql/15/bin
PG_DATA=$RUN_DIR/pg
log() { printf '[services:%s] %s\n' "$profile" "$*" >&2; }

as_postgres() { runuser -u postgres -- "$@"; }

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }
redis_running() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start() {
  mkdir -p "$RUN_DIR/redis" "$RUN_DIR/pgsock"
  chown postgres:postgres "$RUN_DIR/pgsock"
  if ! pg_running; then
    # Every test class creates a database of its own and none is kept on purpose: a test server starts empty, or the
    # databases of every earlier run pile up (68 GB had, and the disk filled mid-run).
    if [[ $profile == test && -d $PG_DATA ]]; then rm -rf "$PG_DATA"; fi
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
      rm -rf "$PG_DATA" && mkdir -p "$PG_DATA" && chown postgres:postgres "$PG_DATA"
      # Trust on loopback only: a local development and test server, never exposed.
      as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$RUN_DIR/initdb.log" 2>&1 \
        || { log "initdb failed: see $RUN_DIR/initdb.log"; exit 1; }
    fi
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$RUN_DIR/pgsock -c max_connections=200 $PG_EXTRA" >/dev/null \
      || { log "PostgreSQL did not start: see $PG_DATA/server.log"; tail -5 "$PG_DATA/server.log" >&2; exit 1; }
    log "PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DATA)"
  fi
  if ! redis_running; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$RUN_DIR/redis.pid" \
      --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis.log" --save '' --appendonly no >/dev/null
    for _ in $(seq 50); do redis_running && break; sleep 0.1; done
    redis_running || { log "Redis did not start: see $RUN_DIR/redis.log"; exit 1; }
    log "Redis on 127.0.0.1:$REDIS_PORT"
  fi
}

stop() {
  if pg_running; then as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null; log "PostgreSQL stopped"; fi
  if redis_running; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; log "Redis stopped"; fi
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) pg_running && echo "postgres up :$PG_PORT" || echo "postgres down"; redis_running && echo "redis up :$REDIS_PORT" || echo "redis down" ;;
  *) echo "services.sh: unknown action '$action' (start, stop or status)" >&2; exit 2 ;;
esac
