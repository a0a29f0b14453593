#!/usr/bin/env bash
# CPU per proxied stream of one gateway build, for comparing builds (e.g. before and after a change) on a noisy
# machine: CPU time is steadier than streams/s. Starts `sluice mock-upstream` (64 chunks) and `sluice serve` with a
# master key, creates a team through the admin API and streams with its virtual key (auth, admission and the usage
# ledger on), warm-up (WARMUP seconds, default 30: under load the JIT
# keeps compiling for ~20 s on 2 cores, which would otherwise be counted per stream) then 12 s measured with wrk -c32; prints streams/s and the gateway process's CPU
# (user + system) per stream. Alternate builds and repeat: single runs vary by ±20 % on a shared 2-core machine.
#   bash bench/cpu-per-stream.sh [SLUICE_DLL]   (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll)
# Environment: ACCESS_LOG=false turns the access log off; CONNECTIONS sets wrk's connections (default 32); EXTRA_CONFIG adds top-level config entries (e.g.
# EXTRA_CONFIG='"Streaming":{"ReplayTtlSeconds":0},'); WARMUP sets the warm-up seconds; DOTNET_* variables reach every process.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dll="${1:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"; work=$(mktemp -d)
command -v wrk >/dev/null || { echo "cpu-per-stream.sh: wrk not found; install it with 'apt-get install -y wrk'." >&2; exit 1; }
[ -f "$dll" ] || { echo "cpu-per-stream.sh: $dll not found; build with 'dotnet build src/Sluice.Cli -c Release'." >&2; exit 1; }
mp=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
gp=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
master="sk-bench-master-0123456789abcdef0123456789abcdef"
cat > $work/sluice.json <<J
{"Host":"127.0.0.1","Port":$gp,"DataDirectory":"$work/data","MasterKey":"$master","Observability":{"AccessLog":{"Enabled":${ACCESS_LOG:-true}}},${EXTRA_CONFIG:-}"Models":[{"Name":"mock","Provider":"openai","BaseUrl":"http://127.0.0.1:$mp/v1","MaxAttempts":1}]}
J
(cd $work && exec dotnet "$dll" mock-upstream --host 127.0.0.1 --port $mp --chunks 64 --model mock > $work/mock.log 2>&1) & mpid=$!
(cd $work && exec dotnet "$dll" serve --config $work/sluice.json > $work/gw.log 2>&1) & gpid=$!
trap 'kill $gpid $mpid 2>/dev/null; sleep 1; kill -9 $gpid $mpid 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq 300); do curl -fsS -o /dev/null http://127.0.0.1:$gp/health 2>/dev/null && break; sleep 0.1; done
for i in $(seq 300); do curl -fsS -o /dev/null http://127.0.0.1:$mp/v1/models 2>/dev/null && break; sleep 0.1; done
admin() { curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$gp/$1"; }
admin api/organizations/create '{"organization_id":"org_bench","name":"Bench"}' >/dev/null
key="$(admin api/teams/create '{"organization_id":"org_bench","team_id":"team_bench","team_alias":"Bench","credits_allocated":1000000000}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])')"
SLUICE_BENCH_KEY="$key" SLUICE_BENCH_MAX_TOKENS=64 wrk -t1 -c${CONNECTIONS:-32} -d${WARMUP:-30}s -s "$root/bench/chat-stream.lua" http://127.0.0.1:$gp > /dev/null
rt() { curl -fsS -H "Authorization: Bearer $master" http://127.0.0.1:$gp/health | python3 -c 'import json,sys;r=json.load(sys.stdin)["runtime"];print(r["allocated_bytes"],r["gen0_collections"],r["gen1_collections"],r["gen2_collections"],r.get("gc_pause_ms",0))'; }
r0=$(rt)
t0=$(awk '{print $14+$15}' /proc/$gpid/stat)
out=$(SLUICE_BENCH_KEY="$key" SLUICE_BENCH_MAX_TOKENS=64 wrk -t1 -c${CONNECTIONS:-32} -d12s -s "$root/bench/chat-stream.lua" http://127.0.0.1:$gp)
t1=$(awk '{print $14+$15}' /proc/$gpid/stat)
r1=$(rt)
n=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
echo "$dll  streams/s $rps  CPU µs/stream $(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)*1e6/$n,1))")  load average $(cut -d' ' -f1 /proc/loadavg)"
# Allocation and GC per stream: steadier than CPU on a loaded machine (health counts the wrk requests and the probes).
python3 -c "
a=[float(x) for x in '$r0'.split()]; b=[float(x) for x in '$r1'.split()]; n=$n
print(f'  allocated B/stream {(b[0]-a[0])/n:,.0f}  GCs per 1,000 streams gen0 {1000*(b[1]-a[1])/n:.2f} gen1 {1000*(b[2]-a[2])/n:.2f} gen2 {1000*(b[3]-a[3])/n:.2f}  GC pause µs/stream {1000*(b[4]-a[4])/n:.1f}')"
