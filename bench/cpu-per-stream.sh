#!/usr/bin/env bash
# CPU per proxied stream of one gateway build, for comparing builds (e.g. before and after a change) on a noisy
# machine: CPU time is steadier than streams/s. Starts `sluice mock-upstream` (64 chunks) and `sluice serve` with a
# master key, creates a team through the admin API and streams with its virtual key (auth, admission and the usage
# ledger on), warm-up (WARMUP seconds, default 30: under load the JIT
# keeps compiling for ~20 s on 2 cores, which would otherwise be counted per stream) then MEASURE seconds (default 12) measured with wrk -c32; prints streams/s and the gateway process's CPU
# (user + system) per stream. Alternate builds and repeat: single runs vary by ±20 % on a shared 2-core machine.
#   bash bench/cpu-per-stream.sh [SLUICE_DLL]   (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll)
# Environment: ACCESS_LOG=false turns the access log off; CONNECTIONS sets wrk's connections (default 32); MEASURE sets the measured seconds (default 12); EXTRA_CONFIG adds top-level config entries (e.g.
# EXTRA_CONFIG='"Streaming":{"ReplayTtlSeconds":0},'); WARMUP sets the warm-up seconds; DOTNET_* variables reach every process.
# UPSTREAM=node streams from bench/node-mock.mjs (50 chunks, each its own write; the overhead budget's Node.js-speed
# upstream, as in overhead-wrk.sh --upstream node) instead of `sluice mock-upstream`.
# SYSCALLS=1 also counts the gateway's system calls per stream (perf stat on its tracepoints: sends, receives, epoll, futex, all).
# PERF_RECORD=file also records the gateway with `perf record -g` (PERF_FREQ samples a second, default 999) during the measured seconds (JIT-compiled methods named
# through a perf map) and prints the 25 hottest functions by own time and the CPU per stream by stage of the call
# (bench/cpu-phases.py, from file.stacks); `perf report -i file` reads it further.
# GATEWAY_ENV='K=V …' sets environment variables for the gateway alone (a runtime setting A/B without touching the mock,
# e.g. GATEWAY_ENV=DOTNET_HillClimbing_Disable=1). GATEWAY_CPUS / LOAD_CPUS pin the gateway / the mock and wrk to CPUs
# (taskset lists, e.g. GATEWAY_CPUS=0 LOAD_CPUS=1: the gateway alone on one core, as in a one-CPU container).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dll="${1:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"; work=$(mktemp -d)
gpin=(); [ -n "${GATEWAY_CPUS:-}" ] && gpin=(taskset -c "$GATEWAY_CPUS")
lpin=(); [ -n "${LOAD_CPUS:-}" ] && lpin=(taskset -c "$LOAD_CPUS")
genv=(); [ -n "${GATEWAY_ENV:-}" ] && read -r -a genv <<< "$GATEWAY_ENV"
command -v wrk >/dev/null || { echo "cpu-per-stream.sh: wrk not found; install it with 'apt-get install -y wrk'." >&2; exit 1; }
[ -f "$dll" ] || { echo "cpu-per-stream.sh: $dll not found; build with 'dotnet build src/Sluice.Cli -c Release'." >&2; exit 1; }
mp=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
gp=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
master="sk-bench-master-0123456789abcdef0123456789abcdef"
cat > $work/sluice.json <<J
{"Host":"127.0.0.1","Port":$gp,"DataDirectory":"$work/data","MasterKey":"$master","Observability":{"AccessLog":{"Enabled":${ACCESS_LOG:-true}}},${EXTRA_CONFIG:-}"Models":[{"Name":"mock","Provider":"openai","BaseUrl":"http://127.0.0.1:$mp/v1","MaxAttempts":1}]}
J
if [ "${UPSTREAM:-sluice}" = node ]; then
  command -v node >/dev/null || { echo "cpu-per-stream.sh: UPSTREAM=node needs Node.js; install it with 'apt-get install -y nodejs'." >&2; exit 1; }
  (cd $work && exec "${lpin[@]}" node "$root/bench/node-mock.mjs" --host 127.0.0.1 --port $mp --chunks 50 --model mock > $work/mock.log 2>&1) & mpid=$!
else
  (cd $work && exec "${lpin[@]}" dotnet "$dll" mock-upstream --host 127.0.0.1 --port $mp --chunks 64 --model mock > $work/mock.log 2>&1) & mpid=$!
fi
perfenv=(); [ -n "${PERF_RECORD:-}" ] && perfenv=(DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0)
if [ -n "${PERF_RECORD:-}" ] && ! command -v perf >/dev/null; then echo "cpu-per-stream.sh: PERF_RECORD needs perf; install it with 'apt-get install -y linux-perf'." >&2; exit 1; fi
(cd $work && exec "${gpin[@]}" env "${perfenv[@]}" "${genv[@]}" dotnet "$dll" serve --config $work/sluice.json > $work/gw.log 2>&1) & gpid=$!
trap 'kill $gpid $mpid 2>/dev/null; sleep 1; kill -9 $gpid $mpid 2>/dev/null; rm -rf "$work"' EXIT
ready() { # URL, pid, log, name: waits up to 30 s; stops the script when the process is gone or never answers
  for i in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "cpu-per-stream.sh: the $4 did not answer $1; its log:" >&2; tail -20 "$3" >&2; exit 1
}
ready http://127.0.0.1:$gp/health $gpid $work/gw.log gateway
ready http://127.0.0.1:$mp/v1/models $mpid $work/mock.log mock upstream
admin() { curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$gp/$1"; }
admin api/organizations/create '{"organization_id":"org_bench","name":"Bench"}' >/dev/null
key="$(admin api/teams/create '{"organization_id":"org_bench","team_id":"team_bench","team_alias":"Bench","credits_allocated":1000000000}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])' 2>/dev/null)"
if [ -z "$key" ]; then
  echo "cpu-per-stream.sh: the gateway did not create the bench team (is $dll a sluice build?); its log:" >&2; tail -20 $work/gw.log >&2; exit 1
fi
SLUICE_BENCH_KEY="$key" SLUICE_BENCH_MAX_TOKENS=64 "${lpin[@]}" wrk -t1 -c${CONNECTIONS:-32} -d${WARMUP:-30}s -s "$root/bench/chat-stream.lua" http://127.0.0.1:$gp > /dev/null
rt() { curl -fsS -H "Authorization: Bearer $master" http://127.0.0.1:$gp/health | python3 -c 'import json,sys;r=json.load(sys.stdin)["runtime"];print(r["allocated_bytes"],r["gen0_collections"],r["gen1_collections"],r["gen2_collections"],r.get("gc_pause_ms",0),r.get("thread_pool_completed_items",0),r.get("lock_contentions",0))'; }
r0=$(rt)
ctx() { for t in /proc/$gpid/task/*; do printf '%s\t%s\n' "$(cat $t/comm)" "$(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2} END {print v"/"n}' $t/status)"; done 2>/dev/null; }
ctx > $work/ctx0
t0=$(awk '{print $14+$15}' /proc/$gpid/stat)
[ -n "${PERF_RECORD:-}" ] && { perf record -q -F ${PERF_FREQ:-999} -g -p $gpid -o "$PERF_RECORD" -- sleep ${MEASURE:-12} 2>/dev/null & ppid=$!; }
if [ -n "${SYSCALLS:-}" ]; then
  command -v perf >/dev/null || { echo "cpu-per-stream.sh: SYSCALLS needs perf; install it with 'apt-get install -y linux-perf'." >&2; exit 1; }
  perf stat -x, -o $work/syscalls -p $gpid $(for c in sendmsg sendto write writev recvfrom recvmsg read epoll_wait futex; do printf -- '-e syscalls:sys_enter_%s ' $c; done) -e raw_syscalls:sys_enter -- sleep ${MEASURE:-12} 2>/dev/null & spid=$!
fi
out=$(SLUICE_BENCH_KEY="$key" SLUICE_BENCH_MAX_TOKENS=64 "${lpin[@]}" wrk -t1 -c${CONNECTIONS:-32} -d${MEASURE:-12}s -s "$root/bench/chat-stream.lua" http://127.0.0.1:$gp)
t1=$(awk '{print $14+$15}' /proc/$gpid/stat)
ctx > $work/ctx1
r1=$(rt)
n=$(echo "$out" | awk '/requests in/ {print $1}')
# Figures from failed answers would be meaningless: say so instead of printing them.
if [ -z "$n" ] || [ "$n" -eq 0 ] || echo "$out" | grep -q 'Non-2xx'; then
  echo "cpu-per-stream.sh: the measured streams did not all succeed; wrk said:" >&2; echo "$out" >&2; tail -5 $work/gw.log >&2; exit 1
fi
if [ -n "${SYSCALLS:-}" ]; then
  wait $spid 2>/dev/null
  # perf counted the same 12 s as wrk: per stream, by system call.
  python3 -c "
import sys
n=$n; parts=[]
for line in open('$work/syscalls'):
    f=line.strip().split(',')
    if len(f)>2 and f[0].replace('.','').isdigit():
        name=f[2].split(':')[-1].replace('sys_enter_','').replace('sys_enter','all')
        parts.append(f'{name} {float(f[0])/n:.2f}')
print('  system calls per stream: ' + ', '.join(parts))
"
fi
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
cpu=$(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)*1e6/$n,1))")
echo "$dll  streams/s $rps  CPU µs/stream $cpu  load average $(cut -d' ' -f1 /proc/loadavg)"
# Allocation and GC per stream: steadier than CPU on a loaded machine (health counts the wrk requests and the probes).
python3 -c "
a=[float(x) for x in '$r0'.split()]; b=[float(x) for x in '$r1'.split()]; n=$n
print(f'  allocated B/stream {(b[0]-a[0])/n:,.0f}  GCs per 1,000 streams gen0 {1000*(b[1]-a[1])/n:.2f} gen1 {1000*(b[2]-a[2])/n:.2f} gen2 {1000*(b[3]-a[3])/n:.2f}  GC pause µs/stream {1000*(b[4]-a[4])/n:.1f}')
print(f'  thread-pool work items per stream {(b[5]-a[5])/n:.2f}  lock contentions per 1,000 streams {1000*(b[6]-a[6])/n:.2f}')
# Context switches per stream by thread name (threads alive at both samples): voluntary = the thread slept (waited for
# work or I/O), involuntary = it was preempted while runnable (other threads or processes wanted the core).
def load(path):
    d = {}
    for line in open(path):
        name, _, counts = line.rstrip('\\n').partition('\\t')
        v, _, i = counts.partition('/')
        if v and i:
            e = d.setdefault(name, [0, 0, 0]); e[0] += int(v); e[1] += int(i); e[2] += 1
    return d
c0, c1 = load('$work/ctx0'), load('$work/ctx1')
rows = sorted(((k, (e[0] - c0.get(k, e)[0]) / n, (e[1] - c0.get(k, e)[1]) / n, e[2]) for k, e in c1.items()), key=lambda r: -(r[1] + r[2]))
print('  context switches per stream, voluntary / involuntary: ' + ', '.join(f'{k} ({t}) {v:.2f} / {i:.2f}' for k, v, i, t in rows if v + i >= 0.01))"
if [ -n "${PERF_RECORD:-}" ]; then
  wait $ppid
  echo "  hottest functions by own time (perf report -i $PERF_RECORD):"
  perf report -i "$PERF_RECORD" --no-children --sort sym -g none --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25 | sed 's/^/  /'
  # The same samples by stage of the call (bench/cpu-phases.py; its --drill STAGE lists a stage's leaf functions).
  perf script -i "$PERF_RECORD" -F comm,ip,sym,dso 2>/dev/null > "$PERF_RECORD.stacks"
  python3 "$root/bench/cpu-phases.py" "$PERF_RECORD.stacks" --us-per-stream "$cpu" | sed 's/^/  /'
fi
