#!/usr/bin/env bash
# README command 2 (and .ci/run): the whole test suite against real PostgreSQL, Redis, RocksDB and the
# embedded Kafka. Installs native pieces (idempotent), starts the `test` profile's servers, runs every
# test project, stops the servers, and ends with "tests: N passed, N failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/compose/local/setup.sh"
# The container suite (tests/StreamHealth.ContainerTests: real Kafka, TimescaleDB, Redis and Schema Registry) needs a Docker
# engine, which this machine kind lacks, so it is not in StreamHealth.sln and never runs here; building it here keeps it
# compiling against the main suite's fixtures it reuses (README, "Container suite").
dotnet build "$ROOT/tests/StreamHealth.ContainerTests" -c Release -nologo -v quiet
bash "$ROOT/compose/local/services.sh" start test
trap 'bash "$ROOT/compose/local/services.sh" stop test' EXIT
export STREAMHEALTH_TEST_PG_PORT=55433 STREAMHEALTH_TEST_REDIS_PORT=56380

log=$(mktemp)
set +e
dotnet test "$ROOT/StreamHealth.sln" -c Release -nologo --logger "console;verbosity=normal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Sum the per-project summaries: "Failed: 0, Passed: 12, ..." or "     Passed: 12" (console logger).
count() { awk -v word="$1" '{ while (match($0, word ": +[0-9]+")) { n += substr($0, RSTART + length(word) + 1, RLENGTH - length(word) - 1); $0 = substr($0, RSTART + RLENGTH) } } END { print n + 0 }' "$log"; }
passed=$(count Passed)
failed=$(count Failed)
# A failure scrolls far up a long log: repeat each failed test with its message at the end.
if [[ ${failed:-0} -gt 0 ]]; then
  echo "failed tests:"
  awk '/^ +Failed [A-Za-z_]/ { show = 40 } show > 0 { print; show-- }' "$log" | grep -v '^ *at System\.' | head -200 || true
fi
rm -f "$log"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
if [[ $status -eq 0 && ${passed:-0} -eq 0 ]]; then echo "no test ran" >&2; exit 1; fi
exit "$status"
