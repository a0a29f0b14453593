#!/usr/bin/env bash
# Resident memory of a long-running gateway under rounds of streaming load, per GC configuration.
#
#   bash bench/gc-memory.sh                 # every configuration below, 3 rounds of 2000 streams each
#   ROUNDS=6 STREAMS=2000 CONCURRENCY=400 bash bench/gc-memory.sh shipped workstation
#   SLUICE_DLL=path/sluice.dll …            # that build instead of building src/Sluice.Cli (Release)
#
# For each configuration: `sluice serve` (open mode, simulated models, its own SQLite store in a temp folder) is
# started with the configuration's variables on top of what sluice.runtimeconfig.json ships. `sluice bench` (a
# separate process) first measures CPU-bound throughput (sim-fast, 64 tokens, C=32, THROUGHPUT streams after a
# warm-up), then runs ROUNDS rounds of STREAMS paced streams (sim-realistic: ~300 ms to first token, ~45 tokens/s, 64
# tokens) with CONCURRENCY at once; after each round the gateway idles IDLE seconds and its VmRSS (and the managed
# heap from /health) is sampled, and once more after IDLE_END seconds without load. Prints one line per sample and a
# table (MB). Not a timing assertion: numbers depend on the machine; compare configurations within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
STREAMS="${STREAMS:-2000}"
CONCURRENCY="${CONCURRENCY:-400}"
IDLE="${IDLE:-5}"
IDLE_END="${IDLE_END:-30}"
THROUGHPUT="${THROUGHPUT:-20000}"
PORT="${PORT:-18190}"

# name|environment (on top of the shipped runtimeconfig)
configs=(
  "shipped|"
  "server-classic|DOTNET_gcServer=1 DOTNET_GCDynamicAdaptationMode=0 DOTNET_GCConserveMemory=0"
  "server-datas|DOTNET_gcServer=1 DOTNET_GCDynamicAdaptationMode=1 DOTNET_GCConserveMemory=0"
  "workstation|DOTNET_gcServer=0 DOTNET_gcConcurrent=1"
  "server-datas-conserve|DOTNET_gcServer=1 DOTNET_GCDynamicAdaptationMode=1 DOTNET_GCConserveMemory=5"
  "server-hardlimit-256m|DOTNET_gcServer=1 DOTNET_GCHeapHardLimit=0x10000000"
  "shipped-no-replay|SLUICE_Streaming__Resumable=false"
)
if [ $# -gt 0 ]; then
  selected=()
  for name in "$@"; do
    for c in "${configs[@]}"; do [ "${c%%|*}" = "$name" ] && selected+=("$c"); done
  done
  configs=("${selected[@]}")
fi

if [ -n "${SLUICE_DLL:-}" ]; then
  cli="$SLUICE_DLL"
  [ -f "$cli" ] || { echo "gc-memory.sh: SLUICE_DLL '$cli' not found; build it first or unset SLUICE_DLL." >&2; exit 2; }
else
  dotnet build src/Sluice.Cli -c Release -nologo -clp:NoSummary -v quiet >/dev/null
  cli="src/Sluice.Cli/bin/Release/net10.0/sluice.dll"
fi
[ ${#configs[@]} -gt 0 ] || { echo "gc-memory.sh: no such configuration: $*; the names are the first fields of configs in this script." >&2; exit 2; }
results=$(mktemp)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null || true; rm -f "$results"; }
trap cleanup EXIT

rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
heap_mb() { curl -s "http://127.0.0.1:$PORT/health" | sed -n 's/.*"heap_bytes": *\([0-9]*\).*/\1/p' | awk '{ printf "%.0f", $1 / 1048576 }'; }

for config in "${configs[@]}"; do
  name="${config%%|*}"; vars="${config#*|}"
  data=$(mktemp -d)
  # shellcheck disable=SC2086
  env $vars SLUICE_DataDirectory="$data" dotnet "$cli" serve --port "$PORT" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  curl -s "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 \
    || { echo "gc-memory.sh: $name: the gateway did not start on port $PORT (in use? set PORT)." >&2; exit 1; }
  fast=$(dotnet "$cli" bench --url "http://127.0.0.1:$PORT" --model sim-fast --max-tokens 64 -c 32 -n "$THROUGHPUT" -w 2000 --json 2>/dev/null \
    | sed -n 's/.*"streams_per_second": *\([0-9.]*\).*/\1/p' | head -n 1)
  echo "$name: ${fast:-?} streams/s (sim-fast, C=32)"
  [ -n "$fast" ] || { echo "gc-memory.sh: $name: sluice bench gave no result against the gateway." >&2; exit 1; }
  start=$(rss_mb "$server")
  line="$name|${fast:-?}|$start"
  for round in $(seq 1 "$ROUNDS"); do
    rate=$(dotnet "$cli" bench --url "http://127.0.0.1:$PORT" --model sim-realistic --max-tokens 64 -c "$CONCURRENCY" -n "$STREAMS" --json 2>/dev/null \
      | sed -n 's/.*"streams_per_second": *\([0-9.]*\).*/\1/p' | head -n 1)
    [ -n "$rate" ] || { echo "gc-memory.sh: $name round $round: sluice bench gave no result against the gateway." >&2; exit 1; }
    sleep "$IDLE"
    rss=$(rss_mb "$server"); heap=$(heap_mb)
    echo "$name round $round: RSS $rss MB (managed heap $heap MB) after $STREAMS streams at C=$CONCURRENCY, ${rate:-?} streams/s"
    line="$line|$rss"
  done
  sleep "$IDLE_END"
  idle=$(rss_mb "$server")
  echo "$name after ${IDLE_END} s idle: RSS $idle MB (managed heap $(heap_mb) MB)"
  peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server/status")
  echo "$line|$idle|$peak" >> "$results"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  rm -rf "$data"
done

echo
header="| configuration | streams/s (sim-fast, C=32) | RSS after warm-up |"
for round in $(seq 1 "$ROUNDS"); do header="$header after round $round |"; done
echo "$header after ${IDLE_END} s idle | peak RSS |"
echo "|---|$(printf -- '---:|%.0s' $(seq 1 $((ROUNDS + 4))))"
while IFS='|' read -r -a row; do
  printf '| %s |' "${row[0]}"
  for value in "${row[@]:1}"; do printf ' %s |' "$value"; done
  echo
done < "$results"
