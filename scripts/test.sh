#!/usr/bin/env bash
# Runs every Sluice test. Usage: bash scripts/test.sh [extra dotnet test args]
# Services the tests need are installed and started here: PostgreSQL (scripts/test-postgres.sh) and an MQTT broker
# (scripts/test-mosquitto.sh), headless Chromium for the web chat tests (scripts/test-chromium.sh), and the llama.cpp
# reference for the engine tests (scripts/test-llama-ref.sh, from npm), nginx for the scale-out tests (three gateways
# behind it on one PostgreSQL; scripts/test-nginx.sh), and tcpdump, wrk and Prometheus for the benchmarks' smoke runs
# and the tests that scrape the gateway with a real Prometheus (scripts/test-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/fixtures ] && [ -z "${SLUICE_FIXTURES:-}" ]; then
  echo "error: ../shared/fixtures not found next to the repository (set SLUICE_FIXTURES to its path)." >&2
  exit 1
fi

# shellcheck source=scripts/test-postgres.sh
. scripts/test-postgres.sh
# shellcheck source=scripts/test-mosquitto.sh
. scripts/test-mosquitto.sh
# shellcheck source=scripts/test-chromium.sh
. scripts/test-chromium.sh
# shellcheck source=scripts/test-llama-ref.sh
. scripts/test-llama-ref.sh
# shellcheck source=scripts/test-nginx.sh
. scripts/test-nginx.sh
# shellcheck source=scripts/test-tools.sh
. scripts/test-tools.sh

results=$(mktemp -d)
# Runs however the script ends (tests failing included): the throwaway services never outlive the run.
trap 'sluice_pg_stop; sluice_mqtt_stop; rm -rf "$results"' EXIT
trap 'exit 130' INT TERM

echo "== building (Release) =="
dotnet build Sluice.slnx -c Release -nologo -clp:NoSummary -warnaserror

sluice_pg_start
sluice_mqtt_start
sluice_chromium_ensure
sluice_llama_ref_ensure
sluice_nginx_ensure
sluice_tool_ensure tcpdump tcpdump
sluice_tool_ensure wrk wrk
sluice_tool_ensure prometheus prometheus promtool

echo "== running tests =="
status=0
dotnet test Sluice.slnx -c Release --no-build -nologo \
  --logger "trx;LogFilePrefix=sluice" --results-directory "$results" \
  --logger "console;verbosity=minimal" "$@" || status=$?

# One plain summary line across all test projects.
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); passed=$((passed + ${p:-0}))
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${f:-0}))
  s=$(sed -n 's/.* notExecuted="\([0-9]*\)".*/\1/p' <<<"$counters"); skipped=$((skipped + ${s:-0}))
done
echo "$passed passed, $failed failed, $skipped skipped"
if [ "$passed" -eq 0 ]; then
  echo "error: no test ran" >&2
  exit 1
fi
exit $status
