#!/usr/bin/env bash
# Gateway overhead measured with wrk, an independent load generator: the mock upstream (sluice mock-upstream),
# a bare ASP.NET Core pass-through (sluice bench proxy) and the gateway (sluice serve, an openai model pointing at
# the mock) each run as their own process on free loopback ports; wrk streams chat completions to each in
# alternating order (ABBA) and the script prints streams/s per round and the ratios to direct. Time to first token at
# concurrency 1 comes from bench/ttfb-probe.c (built here with cc): one connection, requests one after another, timed
# to the first "data:" frame — a C loop, so the client adds no GC pause or event-loop wake of its own to the tail.
#
# Usage: bench/overhead-wrk.sh [--auth] [--upstream sluice|node] [--no-resume] [--chunks N] [-c N] [--duration S] [--rounds N] [--warmup S] [--threads N] [--requests N]
#   --auth        gateway with a master key, called with a team's virtual key created through the admin API
#                 (authentication, admission and the usage ledger on) — what the performance budget asks for
#   --upstream U  the mock behind every target: sluice (default: `sluice mock-upstream`, C#, as cheap as it gets, so
#                 the ratios show the gateway's own cost) or node (bench/node-mock.mjs: node:http with JSON.stringify
#                 per chunk, one event loop — the "Node.js-speed mock" the budget's ≥ 75 % of direct is stated against)
#   --no-resume   gateway with Streaming:Resumable false
#   --no-access-log  gateway with Observability:AccessLog:Enabled false (the access log is on by default)
#   --store S     the gateway's Store (default: a throwaway SQLite file), e.g. a PostgreSQL connection string
#   --chunks N    content chunks per answer from the mock (default 64)
#   -c N          connections (= streams open at once) for the throughput runs (default 32)
#   --duration S  seconds per target per round of the throughput runs (default 10)
#   --requests N  requests per target per round of the concurrency-1 runs (default 5000, after 200 unmeasured)
#   --rounds N    rounds (default 2)
#   --warmup S    seconds of load per target before the rounds (default 5; .NET targets keep compiling for ~20 s
#                 under load on 2 cores, so use 25+ for steady-state figures)
#   --threads N   wrk threads (default 1: the load generator should take as little of the CPU as it can)
#   --b-env K=V   also run a second gateway, "gateway-b", with this environment variable (repeatable), measured in the
#                 same rounds: an A/B of a runtime setting within one run (e.g. DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=30)
#   --b-dll PATH  the second gateway runs this sluice.dll instead (an A/B of two builds within one run)
# Environment: SLUICE_DLL (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll; built when missing).
# The children are killed on exit, on failure and on Ctrl+C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
auth=0; upstream=sluice; resumable=true; chunks=64; connections=32; duration=10; rounds=2; warmup=5; threads=1; access_log=true; store=""; requests=5000
b_env=(); b_dll=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --auth) auth=1 ;;
    --upstream) upstream="$2"; shift ;;
    --no-resume) resumable=false ;;
    --no-access-log) access_log=false ;;
    --store) store="$2"; shift ;;
    --chunks) chunks="$2"; shift ;;
    -c|--concurrency) connections="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --warmup) warmup="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --requests) requests="$2"; shift ;;
    --b-env) [[ "$2" == *=* ]] || { echo "overhead-wrk.sh: --b-env takes NAME=VALUE, not '$2'." >&2; exit 2; }; b_env+=("$2"); shift ;;
    --b-dll) [[ -f "$2" ]] || { echo "overhead-wrk.sh: --b-dll: '$2' not found; build it first." >&2; exit 2; }; b_dll="$2"; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "overhead-wrk.sh: unknown option '$1'; see --help." >&2; exit 2 ;;
  esac
  shift
done

case "$upstream" in
  sluice) ;;
  node) command -v node >/dev/null || { echo "overhead-wrk.sh: --upstream node needs Node.js (apt-get install nodejs); install it and run again." >&2; exit 3; } ;;
  *) echo "overhead-wrk.sh: --upstream must be sluice or node, not '$upstream'." >&2; exit 2 ;;
esac

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing it (apt-get install -y wrk)…" >&2
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; } \
    || { echo "overhead-wrk.sh: could not install wrk; install it yourself (apt-get install wrk) and run again." >&2; exit 3; }
fi
if ! command -v cc >/dev/null; then
  echo "cc not found; installing gcc (apt-get install -y gcc) for bench/ttfb-probe.c…" >&2
  apt-get install -y gcc >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y gcc >/dev/null; } \
    || { echo "overhead-wrk.sh: could not install a C compiler; install one (apt-get install gcc) and run again." >&2; exit 3; }
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "overhead-wrk.sh: $tool is needed; install it and run again." >&2; exit 3; }
done

dll="${SLUICE_DLL:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
if [[ ! -f "$dll" ]]; then
  echo "building sluice (Release)…" >&2
  dotnet build -c Release "$root/src/Sluice.Cli" >/dev/null
fi

# The children are configured by their arguments and config only; SLUICE_ variables of this shell would change them.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^SLUICE_' || true)

work="$(mktemp -d /tmp/sluice-wrk-XXXXXX)"
pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    # Bounded wait (5 s), then SIGKILL.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  [[ ${#pids[@]} -gt 0 ]] && echo "stopped child processes: ${pids[*]}" >&2
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM
cc -O2 -o "$work/ttfb-probe" "$root/bench/ttfb-probe.c"

read -r mock_port proxy_port gateway_port b_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
mock="http://127.0.0.1:$mock_port"; proxy="http://127.0.0.1:$proxy_port"; gateway="http://127.0.0.1:$gateway_port"; gateway_b="http://127.0.0.1:$b_port"
with_b=0; [[ ${#b_env[@]} -gt 0 || -n "$b_dll" ]] && with_b=1

start() { # name, readiness URL, sluice arguments… (or: node, then node's arguments); START_ENV/START_DLL for gateway-b
  local name="$1" probe="$2"; shift 2
  local program=(dotnet "${START_DLL:-$dll}")
  if [[ "$1" == node ]]; then program=(node); shift; fi
  (cd "$work" && exec env ${START_ENV:-} "${program[@]}" "$@" >"$work/$name.log" 2>&1) &
  local pid=$!
  pids+=("$pid")
  echo "starting $name (pid $pid): ${program[*]##*/} $*" >&2
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "$probe" 2>/dev/null; then echo "$name ready" >&2; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "overhead-wrk.sh: $name exited before it was ready; its output:" >&2; tail -20 "$work/$name.log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "overhead-wrk.sh: $name not ready after 60 s; its output:" >&2; tail -20 "$work/$name.log" >&2; exit 1
}

master=""
[[ $auth == 1 ]] && master="sk-bench-master-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
write_config() { # path, port, data directory
python3 - "$1" "$2" "$mock" "$3" "$master" "$resumable" "$access_log" "$store" <<'EOF'
import json, sys
path, port, mock, data, master, resumable, access_log, store = sys.argv[1:]
config = {"Host": "127.0.0.1", "Port": int(port), "DataDirectory": data,
          "Streaming": {"Resumable": resumable == "true"},
          "Observability": {"AccessLog": {"Enabled": access_log == "true"}},
          "Models": [{"Name": "mock", "Provider": "openai", "BaseUrl": mock + "/v1", "MaxAttempts": 1}]}
if master:
    config["MasterKey"] = master
if store:
    config["Store"] = store
json.dump(config, open(path, "w"), indent=2)
EOF
}
write_config "$work/sluice.json" "$gateway_port" "$work/data"
[[ $with_b == 1 ]] && write_config "$work/sluice-b.json" "$b_port" "$work/data-b"

if [[ $upstream == node ]]; then
  start mock-upstream "$mock/v1/models" node "$root/bench/node-mock.mjs" --host 127.0.0.1 --port "$mock_port" --chunks "$chunks" --model mock
else
  start mock-upstream "$mock/v1/models" mock-upstream --host 127.0.0.1 --port "$mock_port" --chunks "$chunks" --model mock
fi
mock_pid="${pids[-1]}"
start bare-proxy "$proxy/health" bench proxy --upstream "$mock/" --port "$proxy_port"
proxy_pid="${pids[-1]}"
start gateway "$gateway/health" serve --config "$work/sluice.json"
gateway_pid="${pids[-1]}"
if [[ $with_b == 1 ]]; then
  START_ENV="${b_env[*]}" START_DLL="$b_dll" start gateway-b "$gateway_b/health" serve --config "$work/sluice-b.json"
  b_pid="${pids[-1]}"
fi

team_key() { # gateway URL: a team's virtual key, created through its admin API
  curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d '{"organization_id":"org_bench","name":"Bench"}' "$1/api/organizations/create" >/dev/null
  curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' \
    -d '{"organization_id":"org_bench","team_id":"team_bench","team_alias":"Bench","credits_allocated":1000000000}' "$1/api/teams/create" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])'
}
key=""; key_b=""
if [[ $auth == 1 ]]; then
  key="$(team_key "$gateway")"
  [[ $with_b == 1 ]] && key_b="$(team_key "$gateway_b")"
  echo "created team team_bench through the admin API; the gateway is called with its virtual key" >&2
fi

declare -A server_pid=([direct]="$mock_pid" [bare-proxy]="$proxy_pid" [gateway]="$gateway_pid")
names=(direct bare-proxy gateway)
declare -A url=([direct]="$mock" [bare-proxy]="$proxy" [gateway]="$gateway")
declare -A auth_key=([direct]="" [bare-proxy]="" [gateway]="$key")
if [[ $with_b == 1 ]]; then
  server_pid[gateway-b]="$b_pid"; names+=(gateway-b); url[gateway-b]="$gateway_b"; auth_key[gateway-b]="$key_b"
  echo "gateway-b: ${b_dll:-the same sluice.dll}${b_env[*]:+ with ${b_env[*]}}" >&2
fi

# One stream per target with curl: the answer must be a whole OpenAI stream (wrk only counts bytes and statuses).
for name in "${names[@]}"; do
  body="$(curl -fsS -N "${url[$name]}/v1/chat/completions" -H 'Content-Type: application/json' \
    ${auth_key[$name]:+-H "Authorization: Bearer ${auth_key[$name]}"} \
    -d "{\"model\":\"mock\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":$chunks}")"
  content=$(grep -c '"content":" hello"' <<<"$body" || true)
  if [[ "$body" != *"data: [DONE]"* || "$content" != "$chunks" ]]; then
    echo "overhead-wrk.sh: $name did not stream $chunks chunks and [DONE]; got:" >&2; head -c 600 <<<"$body" >&2; exit 1
  fi
done
echo "checked: each target streams $chunks chunks and [DONE]" >&2

# CPU time (user + system, and system alone, clock ticks) a process has used so far, from /proc/PID/stat.
cpu_ticks() { awk '{ print $14 + $15, $15 }' "/proc/$1/stat"; }
# Context switches of all a process's threads so far: "voluntary involuntary" (a thread that waited; one preempted).
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }'; }
ticks_per_second="$(getconf CLK_TCK)"

# Runs wrk; prints "streams/s p50_ms cpu_us_per_stream p99_ms system_cpu_us_per_stream voluntary_per_stream
# involuntary_per_stream" (whole-stream latency; CPU
# of the target's own process per stream — the proxy's or the gateway's, the mock's for direct — and the part of it
# spent in the kernel: system calls and, on loopback, most of the TCP work of both ends of what the process sends;
# its threads' context switches per stream — each is expensive on a VM, and they grow when the cores are crowded).
# Fails on socket errors or non-2xx answers.
run_wrk() { # name, connections, seconds
  local name="$1" c="$2" seconds="$3" out pid="${server_pid[$name]}" before after before_sys after_sys vol0 inv0 vol1 inv1
  read -r before before_sys <<<"$(cpu_ticks "$pid")"
  read -r vol0 inv0 <<<"$(ctx_switches "$pid")"
  out="$(SLUICE_BENCH_KEY="${auth_key[$name]}" SLUICE_BENCH_MAX_TOKENS="$chunks" \
    wrk -t "$(( threads < c ? threads : c ))" -c "$c" -d "${seconds}s" --latency -s "$root/bench/chat-stream.lua" "${url[$name]}")"
  read -r after after_sys <<<"$(cpu_ticks "$pid")"
  read -r vol1 inv1 <<<"$(ctx_switches "$pid")"
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "overhead-wrk.sh: errors against $name:" >&2; echo "$out" >&2; exit 1
  fi
  awk -v ticks="$(( after - before ))" -v sys_ticks="$(( after_sys - before_sys ))" -v hz="$ticks_per_second" \
      -v vol="$(( vol1 - vol0 ))" -v inv="$(( inv1 - inv0 ))" '
       /requests in/ { total = $1 }
       /Requests\/sec:/ { rps = $2 }
       function ms(v,  unit) { unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
                               return (unit == "us") ? v / 1000 : (unit == "s") ? v * 1000 : v }
       /^ +50%/ { p50 = ms($2) }
       /^ +99%/ { p99 = ms($2) }
       END { printf "%.1f %.3f %.1f %.3f %.1f %.3f %.3f\n", rps, p50, (total > 0 ? ticks / hz * 1e6 / total : 0), p99,
                    (total > 0 ? sys_ticks / hz * 1e6 / total : 0), (total > 0 ? vol / total : 0), (total > 0 ? inv / total : 0) }' <<<"$out"
}

# Runs the concurrency-1 probe; prints "ttfb_p50_ms ttfb_p99_ms whole_stream_p99_ms".
run_probe() { # name
  local name="$1" port="${url[$1]##*:}" out
  out="$("$work/ttfb-probe" 127.0.0.1 "$port" "$requests" --max-tokens "$chunks" --warmup 200 ${auth_key[$name]:+--key "${auth_key[$name]}"})" \
    || { echo "overhead-wrk.sh: the concurrency-1 probe failed against $name (see above)." >&2; exit 1; }
  awk '/^first data/ { p50 = $4; p99 = $8 } /^whole stream/ { w99 = $8 } END { print p50, p99, w99 }' <<<"$out"
}

echo "warming up each target (${warmup} s)…" >&2
for name in "${names[@]}"; do result="$(run_wrk "$name" "$connections" "$warmup")"; done

declare -A rps single tail cpu whole syscpu volsw invsw
for (( round = 1; round <= rounds; round++ )); do
  order=("${names[@]}")
  (( round % 2 == 0 )) && order=($(printf '%s\n' "${names[@]}" | tac))
  for name in "${order[@]}"; do
    echo "round $round/$rounds: $name, $connections connections, ${duration} s" >&2
    result="$(run_wrk "$name" "$connections" "$duration")"; read -r r _ u _ k vs is <<<"$result"
    rps[$name]+="$r "
    cpu[$name]+="$u "
    syscpu[$name]+="$k "
    volsw[$name]+="$vs "
    invsw[$name]+="$is "
    echo "  $r streams/s, $u µs CPU per stream in its own process ($k µs of it in the kernel), context switches per stream $vs voluntary / $is involuntary" >&2
  done
  for name in "${order[@]}"; do
    echo "round $round/$rounds: $name, 1 connection, $requests requests one after another" >&2
    read -r p p99 w99 <<<"$(run_probe "$name")"
    single[$name]+="$p "
    tail[$name]+="$p99 "
    whole[$name]+="$w99 "
    echo "  time to first token p50 $p ms, p99 $p99 ms; whole stream p99 $w99 ms" >&2
  done
done

mode="open mode (no auth)"; [[ $auth == 1 ]] && mode="with a virtual key (auth + ledger)"
echo
echo "Gateway overhead with wrk and ttfb-probe — $upstream mock upstream, $chunks chunks/stream, $connections connections, ${duration} s x $rounds rounds after ${warmup} s of warm-up, wrk -t$threads, gateway $mode, resumable $resumable, access log $access_log, load average $(cut -d' ' -f1 /proc/loadavg)"
python3 - "$rounds" "${names[@]}" -- $(for n in "${names[@]}"; do printf '%s ' "$(tr ' ' , <<<"${rps[$n]}")" "$(tr ' ' , <<<"${single[$n]}")" "$(tr ' ' , <<<"${cpu[$n]}")" "$(tr ' ' , <<<"${tail[$n]}")" "$(tr ' ' , <<<"${whole[$n]}")" "$(tr ' ' , <<<"${syscpu[$n]}")" "$(tr ' ' , <<<"${volsw[$n]}")" "$(tr ' ' , <<<"${invsw[$n]}")"; done) <<'EOF'
import statistics, sys
rounds = int(sys.argv[1])
sep = sys.argv.index("--")
names = sys.argv[2:sep]
values = sys.argv[sep + 1:]
def series(k):
    return {n: [float(v) for v in values[8 * i + k].strip(",").split(",") if v] for i, n in enumerate(names)}
rps, lat, cpu, p99, whole, kernel, voluntary, involuntary = (series(k) for k in range(8))
print(f"{'':12}" + "".join(f"{'round ' + str(r + 1):>12}" for r in range(rounds)) + f"{'mean':>12}{'/ direct':>10}{'TTFT p50':>10}{'TTFT p99':>10}{'whole p99':>11}")
direct = statistics.mean(rps["direct"])
for n in names:
    m = statistics.mean(rps[n])
    print(f"{n:12}" + "".join(f"{v:12.0f}" for v in rps[n]) + f"{m:12.0f}{m / direct:10.1%}{statistics.median(lat[n]):10.3f}{statistics.median(p99[n]):10.3f}{statistics.median(whole[n]):11.3f}")
bare, gw = statistics.mean(rps["bare-proxy"]), statistics.mean(rps["gateway"])
print(f"bare-proxy ratio {bare / direct:.1%}, gateway ratio {gw / direct:.1%} (budget >= 75 %), gateway / bare proxy {gw / bare:.1%} (budget >= 85 %)")
print("CPU per stream in the target's own process (median of rounds, min-max): "
      + ", ".join(f"{n} {statistics.median(cpu[n]):.0f} µs ({min(cpu[n]):.0f}-{max(cpu[n]):.0f})" for n in names)
      + " (budget: gateway <= 100 µs); of it in the kernel: "
      + ", ".join(f"{n} {statistics.median(kernel[n]):.0f} µs" for n in names))
print("context switches per stream in the target's own process (median of rounds, voluntary / involuntary): "
      + ", ".join(f"{n} {statistics.median(voluntary[n]):.2f} / {statistics.median(involuntary[n]):.2f}" for n in names))
def added(n, d): return statistics.median(d[n]) - statistics.median(d["direct"])
def span(n, d): return f"{min(d[n]):.3f}-{max(d[n]):.3f}"
print(f"added time to first token at C=1 (ms, median of rounds; the gateway's own per-round values in brackets): "
      f"p50 bare proxy {added('bare-proxy', lat):.3f}, gateway {added('gateway', lat):.3f} [{span('gateway', lat)}] (budget <= 0.3); "
      f"p99 bare proxy {added('bare-proxy', p99):.3f}, gateway {added('gateway', p99):.3f} [{span('gateway', p99)}] (budget <= 1); "
      f"whole-stream p99 gateway {added('gateway', whole):.3f}")
if "gateway-b" in names:
    # Round by round the two gateways ran next to each other: their ratio is steadier than either figure.
    ratios = [b / a for a, b in zip(cpu["gateway"], cpu["gateway-b"])]
    print(f"gateway-b: {statistics.mean(rps['gateway-b']) / direct:.1%} of direct, CPU per stream {statistics.median(cpu['gateway-b']):.0f} µs "
          f"({min(cpu['gateway-b']):.0f}-{max(cpu['gateway-b']):.0f}); gateway-b / gateway CPU per stream by round "
          f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}); "
          f"added TTFT p50 {added('gateway-b', lat):.3f} / p99 {added('gateway-b', p99):.3f} ms")
print("(times in ms from the request's first byte sent; TTFT = the first data: frame, measured by bench/ttfb-probe.c)")
EOF
