#!/usr/bin/env bash
# A gateway's first seconds: how long `sluice serve` takes to answer /health, the time to first byte of the first
# streamed answer, and the first seconds of load started the moment it listens (wrk -c32 streaming through the
# gateway to `sluice mock-upstream`): streams/s, whole-stream p50/p99 and the gateway's CPU. This is what a restart, a
# deploy or an autoscaled replica costs its first callers — the JIT compiles the gateway's code while they wait.
# Compares builds in alternating order, by default the framework-dependent publish with and without ReadyToRun
# (precompiled code: docs/install.md), both published here into a temporary folder.
#
# Usage: bench/cold-start.sh [--rounds N] [--load-seconds S] [--build NAME=PATH/sluice.dll ...]
#   --rounds N        starts per build (default 3); medians are printed
#   --load-seconds S  seconds of load after the start (default 3)
#   --build NAME=DLL  a build to start instead of publishing (repeatable; e.g. --build jit=src/Sluice.Cli/bin/Release/net10.0/sluice.dll)
# Needs wrk and curl. Exit code 1 when a build's answers failed. The children are killed on exit, on failure and on Ctrl+C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=3; load=3; names=(); dlls=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "cold-start.sh: --rounds takes a whole number of starts, not '${2:-}'." >&2; exit 2; }; rounds="$2"; shift ;;
    --load-seconds) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "cold-start.sh: --load-seconds takes whole seconds, not '${2:-}'." >&2; exit 2; }; load="$2"; shift ;;
    --build)
      [[ "${2:-}" == *=* ]] || { echo "cold-start.sh: --build takes NAME=PATH (a sluice.dll), not '${2:-}'." >&2; exit 2; }
      [[ -f "${2#*=}" ]] || { echo "cold-start.sh: --build ${2%%=*}: '${2#*=}' not found; build or publish it first." >&2; exit 2; }
      names+=("${2%%=*}"); dlls+=("${2#*=}"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "cold-start.sh: unknown option '$1'; see --help." >&2; exit 2 ;;
  esac
  shift
done
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "cold-start.sh: $tool not found; install it with 'apt-get install -y $tool'." >&2; exit 3; }
done

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [[ ${#names[@]} -eq 0 ]]; then
  for variant in jit:false r2r:true; do
    echo "cold-start: publishing ${variant%%:*} (dotnet publish -r linux-x64 --self-contained false -p:PublishReadyToRun=${variant#*:})…" >&2
    dotnet publish "$root/src/Sluice.Cli" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=${variant#*:} \
      -o "$work/${variant%%:*}" -nologo > "$work/publish-${variant%%:*}.log" 2>&1 \
      || { echo "cold-start.sh: publishing ${variant%%:*} failed; see the log below." >&2; tail -20 "$work/publish-${variant%%:*}.log" >&2; exit 3; }
    names+=("${variant%%:*}"); dlls+=("$work/${variant%%:*}/sluice.dll")
  done
fi

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { # URL, log, pid: polls every 10 ms (the start time is measured by it) for up to 60 s
  for _ in $(seq 6000); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.01
  done
  echo "cold-start.sh: $1 did not answer; the log:" >&2; tail -20 "$2" >&2; exit 3
}

# The mock runs throughout (warmed first), so only the gateway starts cold.
mp=$(port)
dotnet "${dlls[0]}" mock-upstream --host 127.0.0.1 --port "$mp" --chunks 64 --model mock > "$work/mock.log" 2>&1 & mpid=$!; pids+=($mpid)
wait_http "http://127.0.0.1:$mp/v1/models" "$work/mock.log" $mpid
SLUICE_BENCH_MAX_TOKENS=64 wrk -t1 -c8 -d3s -s "$root/bench/chat-stream.lua" "http://127.0.0.1:$mp" > /dev/null

body='{"model":"mock","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":64}'
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0; else printf "%.2f", v * 1000 }'; }
declare -A results
for round in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    name=${names[$i]}; gp=$(port); dir="$work/run-$name-$round"; mkdir -p "$dir"
    printf '{"Host":"127.0.0.1","Port":%s,"DataDirectory":"%s/data","Models":[{"Name":"mock","Provider":"openai","BaseUrl":"http://127.0.0.1:%s/v1","MaxAttempts":1}]}' \
      "$gp" "$dir" "$mp" > "$dir/sluice.json"
    t0=$(date +%s%N)
    dotnet "${dlls[$i]}" serve --config "$dir/sluice.json" > "$dir/gw.log" 2>&1 & gpid=$!; pids+=($gpid)
    wait_http "http://127.0.0.1:$gp/health" "$dir/gw.log" $gpid
    t1=$(date +%s%N)
    first=$(curl -sS -N -o /dev/null -w '%{time_starttransfer}' -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$gp/v1/chat/completions")
    c0=$(awk '{print $14+$15}' /proc/$gpid/stat)
    out=$(SLUICE_BENCH_MAX_TOKENS=64 wrk -t1 -c32 -d${load}s --latency -s "$root/bench/chat-stream.lua" "http://127.0.0.1:$gp")
    c1=$(awk '{print $14+$15}' /proc/$gpid/stat)
    kill $gpid; wait $gpid 2>/dev/null || true
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    p50=$(ms "$(awk '$1 == "50%" {print $2}' <<< "$out")"); p99=$(ms "$(awk '$1 == "99%" {print $2}' <<< "$out")")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<< "$out")
    [[ -z "$errors" ]] || { echo "cold-start.sh: $name round $round: $errors; the gateway's log:" >&2; tail -20 "$dir/gw.log" >&2; exit 1; }
    line="$(( (t1 - t0) / 1000000 )) $(awk -v s="$first" 'BEGIN {printf "%.1f", s * 1000}') $rps $p50 $p99 $(( (c1 - c0) * 10 ))"
    results[$name]+="$line"$'\n'
    printf 'cold-start: %-6s round %d  health %5d ms  first answer TTFB %6s ms  first %ss of load: %8s streams/s  p50 %7s ms  p99 %7s ms  gateway CPU %5d ms\n' \
      "$name" "$round" $(( (t1 - t0) / 1000000 )) "$(awk -v s="$first" 'BEGIN {printf "%.1f", s * 1000}')" "$load" "$rps" "$p50" "$p99" $(( (c1 - c0) * 10 ))
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "Cold start — medians of $rounds starts per build, ${load} s of wrk -c32 through the gateway to sluice mock-upstream (64 chunks), load average $(cut -d' ' -f1 /proc/loadavg)"
printf '%-8s %10s %14s %12s %10s %10s %12s\n' build "health ms" "1st TTFB ms" "streams/s" "p50 ms" "p99 ms" "CPU ms"
for name in "${names[@]}"; do
  col() { printf '%s' "${results[$name]}" | awk -v c="$1" 'NF {print $c}' | median; }
  printf '%-8s %10s %14s %12s %10s %10s %12s\n' "$name" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)"
done
