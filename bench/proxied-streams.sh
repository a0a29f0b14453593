#!/usr/bin/env bash
# Many slow streams held open at once through one gateway, proxied to a paced mock upstream.
#
#   bash bench/proxied-streams.sh [--streams 8000] [--chunks 60] [--pace-ms 1000] [--ramp 1000] [--ramp-step-ms 1] [--no-replay] [--direct] [--client c|node] [--upstream-http2] [--upstream-client sluice|dotnet] [--settle S] [--mock c|dotnet] [--mock-pacing precise|timer] [--capture S]
#
# Starts a paced mock upstream (--chunks content chunks, --pace-ms apart, each carrying its send time): by default
# bench/paced-mock.c (one epoll loop in C, built here with cc: each chunk at its own time, and next to no CPU taken
# from the gateway on a small machine); --mock dotnet is `sluice mock-upstream --timestamp-chunks`, with
# --mock-pacing precise (one pacing thread, ~1 ms) or timer (Task.Delay, whose coarse timers send thousands of
# streams' chunks in bursts of hundreds: the mock of the sessions before the twentieth) and `sluice serve` with a master key (SQLite in a temp folder), creates a team and its virtual key, warms the
# gateway up with 2,000 fast streams (a second, unpaced mock), samples its resident memory, open file descriptors and
# threads (the baseline), then opens --streams streams at once with bench/hold-streams.c (one epoll loop in C, built
# here with cc; --client node uses bench/hold-streams.mjs instead, whose own event loop adds hundreds of ms per chunk
# at thousands of streams on two cores; --ramp new connections per second, opened every --ramp-step-ms: 1 ms by default, 50 before the twentieth session — lockstep batches whose paced chunks then come due together) and holds them to the end. Samples the gateway every second; prints errors, the peak RSS
# (target ≤ 1.5 GB for 8,000), peak fds and threads, the delay the gateway adds per chunk (receive time minus the
# mock's send time: target p99 ≤ 5 ms — for the chunks received while all streams are held, from --settle S seconds
# (default 5) after the last one opened, and over the whole run with the ramp of new connections, each judged) and RSS/fds/threads 5 s, 30 s and 90 s after the streams end against the
# baseline (idle upstream connections close after 60 s). --no-replay runs the gateway with Streaming:Resumable false
# (no replay buffer) to measure what the buffer costs. --direct sends the same streams straight to the mock, no
# gateway: the delay the client and the mock add on their own on this machine, to subtract.
# A proxied stream holds two sockets in the gateway, so it needs ~2 × streams + 300 open files: the script raises
# `ulimit -n` to the hard limit and stops with a message if that is not enough.
# Also prints what the kernel's TCP counters did during the streams (loss probes, retransmission time-outs, dropped SYNs,
# accept-queue overflows, pruned queues), so a run the kernel slowed down shows as one.
# --upstream-client dotnet makes the gateway talk to the mocks through .NET's HttpClient instead of Sluice's own
# HTTP/1.1 client (the default for http:// upstreams), to compare the two.
# --upstream-http2 runs the mocks HTTP/2-only and the gateway's models with "HttpVersion": "2" (streams share upstream
# connections: one socket per stream in the gateway instead of two).
# --capture S records both legs of the gateway with tcpdump for S seconds while every stream is held and reads them with
# bench/relay-delay.py: the time from the mock's send to the gateway's send of the same chunk (packet timestamps), the
# gateway's part alone, without the client's and the mock's own scheduling; judged as well (needs tcpdump).
# --quick skips the 30 s and 90 s samples after the streams end and the heap dump (for comparing latency only).
# Environment: KEEP_LOGS=DIR keeps the gateway's and the mocks' logs (and the --capture file); SLUICE_DLL (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll); DOTNET_* reach every process;
# GATEWAY_ENV='NAME=VALUE …' reaches the gateway only (to compare runtime settings without changing the mocks).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
streams=8000; chunks=60; pace=1000; pacing=precise; mock=c; ramp=1000; rampstep=1; resumable=true; direct=0; client=c; quick=0; h2=0; uclient=sluice; settle=5; capture=0
while [ $# -gt 0 ]; do
  case "$1" in
    --streams) streams="$2"; shift 2 ;;
    --chunks) chunks="$2"; shift 2 ;;
    --pace-ms) pace="$2"; shift 2 ;;
    --mock) mock="$2"; shift 2 ;;
    --mock-pacing) pacing="$2"; shift 2 ;;
    --ramp) ramp="$2"; shift 2 ;;
    --ramp-step-ms) rampstep="$2"; shift 2 ;;
    --no-replay) resumable=false; shift ;;
    --direct) direct=1; shift ;;
    --client) client="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --settle) settle="$2"; shift 2 ;;
    --capture) capture="$2"; shift 2 ;;
    --upstream-http2) h2=1; shift ;;
    --upstream-client) uclient="$2"; shift 2 ;;
    -h|--help) sed -n "2,$(( $(grep -n '^set -u' "$0" | cut -d: -f1) - 1 ))p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "proxied-streams.sh: unknown argument '$1'; see 'bash bench/proxied-streams.sh --help'." >&2; exit 2 ;;
  esac
done
case "$settle" in ''|*[!0-9]*) echo "proxied-streams.sh: --settle takes whole seconds (e.g. --settle 15), not '$settle'." >&2; exit 2 ;; esac
case "$rampstep" in ''|*[!0-9]*|0) echo "proxied-streams.sh: --ramp-step-ms takes whole milliseconds, 1 or more, not '$rampstep'." >&2; exit 2 ;; esac
case "$capture" in ''|*[!0-9]*) echo "proxied-streams.sh: --capture takes whole seconds (e.g. --capture 10), not '$capture'." >&2; exit 2 ;; esac
if [ "$capture" -gt 0 ]; then
  [ "$direct" = 1 ] && { echo "proxied-streams.sh: --capture measures the gateway between its two legs; with --direct there is no gateway." >&2; exit 2; }
  command -v tcpdump >/dev/null || { echo "proxied-streams.sh: --capture needs tcpdump ('apt-get install -y tcpdump')." >&2; exit 2; }
fi
case "$mock" in c|dotnet) ;; *) echo "proxied-streams.sh: --mock must be c or dotnet, not '$mock'." >&2; exit 2 ;; esac
case "$pacing" in precise|timer) ;; *) echo "proxied-streams.sh: --mock-pacing must be precise or timer, not '$pacing'." >&2; exit 2 ;; esac
if [ "$h2" = 1 ] && [ "$mock" = c ]; then
  mock=dotnet; echo "proxied-streams: --upstream-http2: the paced mock is the .NET one (bench/paced-mock.c speaks HTTP/1.1 only)"
fi
if [ "$mock" = c ]; then
  command -v cc >/dev/null || { echo "proxied-streams.sh: cc not found (the paced mock is bench/paced-mock.c); install a C compiler ('apt-get install -y gcc') or pass --mock dotnet." >&2; exit 2; }
fi
if [ "$h2" = 1 ] && [ "$direct" = 1 ]; then
  echo "proxied-streams.sh: --direct and --upstream-http2 do not go together (the client speaks HTTP/1.1; the HTTP/2-only mock refuses it)." >&2; exit 2
fi
dll="${SLUICE_DLL:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
[ -f "$dll" ] || { echo "proxied-streams.sh: $dll not found; build with 'dotnet build src/Sluice.Cli -c Release'." >&2; exit 2; }
case "$client" in
  c) command -v cc >/dev/null || { echo "proxied-streams.sh: cc not found (the client is bench/hold-streams.c); install a C compiler ('apt-get install -y gcc') or pass --client node." >&2; exit 2; } ;;
  node) command -v node >/dev/null || { echo "proxied-streams.sh: node not found (--client node is bench/hold-streams.mjs); install Node.js 18 or later, e.g. 'apt-get install -y nodejs'." >&2; exit 2; } ;;
  *) echo "proxied-streams.sh: --client must be c or node, not '$client'." >&2; exit 2 ;;
esac
command -v python3 >/dev/null || { echo "proxied-streams.sh: python3 not found; install it with 'apt-get install -y python3'." >&2; exit 2; }

need=$((2 * streams + 300))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
have=$(ulimit -n)
if [ "$have" != unlimited ] && [ "$have" -lt "$need" ]; then
  echo "proxied-streams.sh: $streams proxied streams need ~$need open files in the gateway, but the limit is $have (hard limit $(ulimit -Hn))." >&2
  echo "  Raise the hard limit (e.g. 'ulimit -Hn $need' as root, or LimitNOFILE in systemd) or pass --streams $(((have - 300) / 2))." >&2
  exit 2
fi
echo "proxied-streams: open-file limit $have per process (a gateway with $streams proxied streams needs ~$need)"

work=$(mktemp -d); mpid=""; fpid=""; gpid=""; spid=""
cleanup() {
  for p in $spid $gpid $mpid $fpid; do kill "$p" 2>/dev/null; done; sleep 1
  for p in $gpid $mpid $fpid; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hold=(node "$root/bench/hold-streams.mjs")
if [ "$client" = c ]; then
  cc -O2 -o "$work/hold-streams" "$root/bench/hold-streams.c" || { echo "proxied-streams.sh: building bench/hold-streams.c failed (see above)." >&2; exit 2; }
  hold=("$work/hold-streams" --ramp-step-ms "$rampstep")
fi
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mp=$(port); fp=$(port); gp=$(port)
master="sk-held-master-0123456789abcdef0123456789abcdef"
version=1.1; mockh2=(); curlh2=()
[ "$h2" = 1 ] && { version=2; mockh2=(--http2); curlh2=(--http2-prior-knowledge); }
cat > "$work/sluice.json" <<J
{"Host":"127.0.0.1","Port":$gp,"DataDirectory":"$work/data","MasterKey":"$master","Streaming":{"Resumable":$resumable},
 "Models":[{"Name":"mock","Provider":"openai","BaseUrl":"http://127.0.0.1:$mp/v1","MaxAttempts":1,"HttpVersion":"$version","UpstreamClient":"$uclient"},
           {"Name":"mock-fast","Provider":"openai","BaseUrl":"http://127.0.0.1:$fp/v1","MaxAttempts":1,"HttpVersion":"$version","UpstreamClient":"$uclient"}]}
J
if [ "$mock" = c ]; then
  cc -O2 -o "$work/paced-mock" "$root/bench/paced-mock.c" || { echo "proxied-streams.sh: building bench/paced-mock.c failed (see above)." >&2; exit 2; }
  (cd "$work" && exec ./paced-mock --port "$mp" --chunks "$chunks" --pace-ms "$pace" --model mock > "$work/mock.log" 2>&1) & mpid=$!
else
  (cd "$work" && exec dotnet "$dll" mock-upstream --port "$mp" --chunks "$chunks" --chunk-delay-ms "$pace" --pacing "$pacing" --timestamp-chunks --model mock "${mockh2[@]}" > "$work/mock.log" 2>&1) & mpid=$!
fi
(cd "$work" && exec dotnet "$dll" mock-upstream --port "$fp" --chunks 32 --model mock-fast "${mockh2[@]}" > "$work/fast.log" 2>&1) & fpid=$!
(cd "$work" && exec env ${GATEWAY_ENV:-} dotnet "$dll" serve --config "$work/sluice.json" > "$work/gw.log" 2>&1) & gpid=$!
for url in "http://127.0.0.1:$gp/health" "http://127.0.0.1:$mp/v1/models" "http://127.0.0.1:$fp/v1/models"; do
  h=(); case "$url" in *":$gp/"*) ;; *) h=("${curlh2[@]}") ;; esac
  for _ in $(seq 300); do curl "${h[@]}" -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
  curl "${h[@]}" -fsS -o /dev/null "$url" || { echo "proxied-streams.sh: nothing answers $url; logs:" >&2; tail -n 20 "$work"/*.log >&2; exit 2; }
done
admin() { curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$gp/$1"; }
admin api/organizations/create '{"organization_id":"org_held","name":"Held"}' >/dev/null
key="$(admin api/teams/create '{"organization_id":"org_held","team_id":"team_held","team_alias":"Held","credits_allocated":1000000000}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])')" \
  || { echo "proxied-streams.sh: creating the team failed; gateway log:" >&2; tail -n 20 "$work/gw.log" >&2; exit 2; }

if [ "$direct" = 1 ]; then
  echo "proxied-streams: --direct: $streams streams straight to the mock, $ramp/s, $chunks chunks $pace ms apart"
  "${hold[@]}" --url "http://127.0.0.1:$mp" --streams "$streams" --ramp "$ramp" --max-tokens "$chunks" --settle-ms $(( settle * 1000 )) \
    --timeout-s $(( (chunks * pace) / 1000 + streams / ramp + 120 )) > "$work/direct.json" || true
  [ -s "$work/direct.json" ] || { echo "proxied-streams.sh: the client gave no result (see above)." >&2; exit 2; }
  python3 - "$work/direct.json" "$client" "$settle" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); d = r["added_delay_ms"] or {}; g = r["gap_ms"] or {}
print(f"\nproxied-streams --direct (client {sys.argv[2]}, {r['streams']} streams, {r['seconds']} s): {r['ok']} ok, {r['failed']} failed {r['errors']}, at most {r['max_open']} open at once")
h = r.get("held_delay_ms") or {}
print(f"  delay per chunk, mock to client, all held (ms, {h.get('count', 0)} chunks from {sys.argv[3]} s after the last stream opened): p50 {h.get('p50')}, p90 {h.get('p90')}, p99 {h.get('p99')}, p99.9 {h.get('p999')}, max {h.get('max')}")
print(f"  delay per chunk, mock to client, whole run with the ramp (ms, {d.get('count', 0)} chunks): p50 {d.get('p50')}, p90 {d.get('p90')}, p99 {d.get('p99')}, p99.9 {d.get('p999')}, max {d.get('max')}; gap p50 {g.get('p50')}, p99 {g.get('p99')}")
PY
  exit 0
fi
# Kernel TCP counters (all sockets of the machine; here that is these processes on loopback), to tell a run the kernel
# slowed down (dropped SYNs, retransmission time-outs, pruned queues) from one the gateway did.
tcpcounters() {
  python3 - "$@" <<'PY'
import json, sys
def read(path):
    lines, out = open(path).read().split("\n"), {}
    for i in range(0, len(lines) - 1, 2):
        if lines[i]:
            names, values = lines[i].split(), lines[i + 1].split()
            out.update({names[0][:-1] + "." + n: int(v) for n, v in zip(names[1:], values[1:])})
    return out
now = read("/proc/net/snmp"); now.update(read("/proc/net/netstat"))
keys = ["Tcp.RetransSegs", "TcpExt.TCPLossProbes", "TcpExt.TCPTimeouts", "TcpExt.TCPSynRetrans", "TcpExt.ListenOverflows",
        "TcpExt.ListenDrops", "TcpExt.TCPMemoryPressures", "TcpExt.PruneCalled", "TcpExt.TCPRcvQDrop", "TcpExt.TCPBacklogDrop",
        "TcpExt.TCPZeroWindowDrop", "TcpExt.TCPSpuriousRTOs"]
if len(sys.argv) == 1:
    print(json.dumps({k: now.get(k, 0) for k in keys}))
else:
    before = json.loads(sys.argv[1])
    moved = {k.split(".")[1]: now.get(k, 0) - v for k, v in before.items() if now.get(k, 0) != v}
    harmful = {k: v for k, v in moved.items() if k not in ("RetransSegs", "TCPLossProbes", "TCPSpuriousRTOs")}
    print("proxied-streams: kernel TCP counters during the streams: "
          + (", ".join(f"{k} {v:,}" for k, v in moved.items()) if moved else "no retransmissions, drops or overflows"))
    if moved and not harmful:
        print("  (loss probes only: ACKs came late and segments were sent twice; no data waited for them)")
    if harmful:
        print("  (the kernel dropped or timed out segments: a dropped SYN is sent again after 1 s, which is time to first byte;"
              " a retransmission time-out holds a chunk 200 ms or more — whatever the gateway does)")
PY
}
sample() { echo "$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$gpid/status) $(ls /proc/$gpid/fd | wc -l) $(awk '/Threads/ {print $2}' /proc/$gpid/status)"; }
echo "proxied-streams: warm-up, 2,000 fast streams"
dotnet "$dll" bench --url "http://127.0.0.1:$gp" --model mock-fast --api-key "$key" -c 32 -n 2000 --max-tokens 32 >/dev/null 2>&1 \
  || { echo "proxied-streams.sh: the warm-up streams failed; gateway log:" >&2; tail -n 20 "$work/gw.log" >&2; exit 2; }
sleep 3
read -r rss0 fd0 th0 <<< "$(sample)"
echo "proxied-streams: baseline RSS $rss0 MB, $fd0 fds, $th0 threads (Streaming:Resumable $resumable, upstream HTTP/$version, UpstreamClient $uclient); opening $streams streams, $ramp/s, $chunks chunks $pace ms apart"
(while kill -0 "$gpid" 2>/dev/null; do echo "$(date +%s) $(sample)"; sleep 1; done > "$work/samples") & spid=$!
cpu0=$(awk '{print $14+$15}' /proc/$gpid/stat); wall0=$SECONDS; tcp0=$(tcpcounters)
if [ "$capture" -gt 0 ]; then
  # Both legs of the gateway while every stream is held: from --settle s after the last stream opened, for --capture s.
  (sleep $(( (streams + ramp - 1) / ramp + settle )); timeout "$capture" tcpdump -i lo -s 0 -B 131072 -n -w "$work/cap.pcap" \
    "tcp src port $mp or tcp src port $gp" 2> "$work/tcpdump.log") & cpid=$!
fi
"${hold[@]}" --url "http://127.0.0.1:$gp" --key "$key" --streams "$streams" --ramp "$ramp" --settle-ms $(( settle * 1000 )) \
  --max-tokens "$chunks" --timeout-s $(( (chunks * pace) / 1000 + streams / ramp + 120 )) > "$work/result.json"
[ -s "$work/result.json" ] || { echo "proxied-streams.sh: the client gave no result (see above)." >&2; exit 2; }
cpu1=$(awk '{print $14+$15}' /proc/$gpid/stat)
if [ "$mock" = c ]; then
  kill -USR1 "$mpid" 2>/dev/null; sleep 0.5; grep "^paced-mock: .*chunks sent" "$work/mock.log" | tail -n 1 | sed 's/^paced-mock: /proxied-streams: the paced mock: /'
fi
tcpcounters "$tcp0"
python3 -c "import json; r=json.load(open('$work/result.json')); s=($cpu1-$cpu0)/$(getconf CLK_TCK); w=max(1,$SECONDS-$wall0)
print(f'proxied-streams: gateway CPU {s:.1f} s over {w} s ({s/w*100:.0f} % of one core; load average {open(\"/proc/loadavg\").read().split()[0]}), {s*1e6/max(1,r[\"chunks\"]):.0f} µs per chunk relayed')"
if [ "$capture" -gt 0 ]; then
  wait "$cpid"
  if [ -s "$work/cap.pcap" ]; then
    python3 "$root/bench/relay-delay.py" "$work/cap.pcap" --upstream-port "$mp" --gateway-port "$gp" --json > "$work/relay.json" \
      || echo "proxied-streams.sh: bench/relay-delay.py could not read the capture (above)." >&2
    grep -i "dropped by kernel" "$work/tcpdump.log" | sed 's/^/proxied-streams: tcpdump: /'
  else
    echo "proxied-streams.sh: tcpdump wrote no capture; its log:" >&2; cat "$work/tcpdump.log" >&2
  fi
fi
sleep 5; read -r rss5 fd5 th5 <<< "$(sample)"
if [ "$quick" = 1 ]; then
  read -r rss30 fd30 th30 <<< "$rss5 $fd5 $th5"; read -r rss90 fd90 th90 <<< "$rss5 $fd5 $th5"
  echo "proxied-streams: --quick: no 30 s / 90 s samples or heap dump (the 'after' figures below are the 5 s ones)"
else
sleep 25; read -r rss30 fd30 th30 <<< "$(sample)"
sleep 60; read -r rss90 fd90 th90 <<< "$(sample)"
heap() { curl -s -H "Authorization: Bearer $master" "http://127.0.0.1:$gp/health" | sed -n 's/.*"heap_bytes": *\([0-9]*\).*/\1/p' | awk '{printf "%.0f", $1/1048576}'; }
echo "proxied-streams: 90 s after, the gateway's managed heap is $(heap) MB (RSS $rss90 MB; the heap figure includes garbage not yet collected)"
PATH="$PATH:$HOME/.dotnet/tools"
if command -v dotnet-gcdump >/dev/null; then
  # A heap dump forces a full, compacting collection: what is left is live, and the GC may give memory back.
  timeout 120 dotnet-gcdump collect -p "$gpid" -o "$work/after.gcdump" >/dev/null 2>&1
  sleep 2
  echo "proxied-streams: after a forced full GC (dotnet-gcdump): managed heap $(heap) MB, RSS $(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$gpid/status) MB (the heap now is what is live)"
else
  echo "proxied-streams: (install dotnet-gcdump, 'dotnet tool install -g dotnet-gcdump', to see the live heap after a forced full GC)"
fi
fi
kill "$spid" 2>/dev/null; spid=""
hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$gpid/status)
read -r fdmax thmax <<< "$(awk 'BEGIN{f=0;t=0} {if ($3>f) f=$3; if ($4>t) t=$4} END{print f, t}' "$work/samples")"
warnings=$(grep -cE "^[0-9:]+ (warn|fail|crit)" "$work/gw.log")
if [ "$warnings" -gt 0 ]; then
  echo "proxied-streams: the gateway logged $warnings warnings or errors; the kinds (message lines, counted):"
  grep -E "^[0-9:]+ (warn|fail|crit)" -A1 "$work/gw.log" | grep -vE "^[0-9:]+ (warn|fail|crit)|^--" | sed -E 's/[0-9a-f]{8,}|[0-9]+(\.[0-9]+)?/N/g' | sort | uniq -c | sort -rn | head -n 8
fi
[ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$work"/*.log $(ls "$work"/cap.pcap 2>/dev/null) "$KEEP_LOGS"/ && echo "proxied-streams: logs (and the capture) copied to $KEEP_LOGS"
if grep -qi "too many open files" "$work/gw.log" "$work/mock.log"; then
  echo "proxied-streams: the open-file limit stopped streams (\"Too many open files\" in a log)"
fi
python3 - "$work/result.json" "$streams" "$rss0" "$hwm" "$fd0" "$fdmax" "$th0" "$thmax" "$rss5" "$fd5" "$th5" "$rss30" "$fd30" "$th30" "$resumable" "$rss90" "$fd90" "$th90" "$ramp" "$settle" "$quick" "$work/relay.json" "$capture" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
streams, rss0, hwm, fd0, fdmax, th0, thmax, rss5, fd5, th5, rss30, fd30, th30 = map(int, sys.argv[2:15])
rss90, fd90, th90 = map(int, sys.argv[16:19])
d, g = r["added_delay_ms"] or {}, r["gap_ms"] or {}
print(f"\nproxied-streams result ({streams} streams, Resumable {sys.argv[15]}, {r['seconds']} s): {r['ok']} ok, {r['failed']} failed {r['errors']}, at most {r['max_open']} open at once")
print(f"  gateway RSS {rss0} MB baseline, peak {hwm} MB ({(hwm - rss0) * 1024 / max(1, streams):.1f} KB per stream over baseline); fds {fd0} → peak {fdmax}; threads {th0} → peak {thmax}")
h = r.get("held_delay_ms") or {}
print(f"  added delay per chunk, all streams held (ms, {h.get('count', 0)} chunks from {sys.argv[20]} s after the last stream opened): p50 {h.get('p50')}, p90 {h.get('p90')}, p99 {h.get('p99')}, p99.9 {h.get('p999')}, max {h.get('max')}")
print(f"  added delay per chunk, whole run with the ramp (ms, {d.get('count', 0)} chunks): p50 {d.get('p50')}, p90 {d.get('p90')}, p99 {d.get('p99')}, p99.9 {d.get('p999')}, max {d.get('max')}")
print(f"  inter-chunk gap (ms): p50 {g.get('p50')}, p99 {g.get('p99')}, max {g.get('max')}; time to first byte p50 {r['ttfb_ms']['p50'] if r['ttfb_ms'] else None}, p99 {r['ttfb_ms']['p99'] if r['ttfb_ms'] else None}")
relay = json.load(open(sys.argv[22])) if os.path.exists(sys.argv[22]) and os.path.getsize(sys.argv[22]) else None
if relay:
    ga, ml = relay["gateway_added_ms"], relay["mock_lag_ms"]
    print(f"  between the gateway's legs (packet capture of {sys.argv[23]} s while held, {ga['n']} chunks; the mock's send to the gateway's send of the same chunk, ms): p50 {ga['p50']}, p90 {ga['p90']}, p99 {ga['p99']}, p99.9 {ga['p99.9']}, max {ga['max']}")
    print(f"  the mock's own lag in that capture, its stamp to its send (ms): p50 {ml['p50']}, p99 {ml['p99']}, max {ml['max']} — part of the client-side figures above, not the gateway's")
quick = sys.argv[21] == "1"
if quick:
    print(f"  after the streams: 5 s RSS {rss5} MB, {fd5} fds, {th5} threads (baseline {rss0} / {fd0} / {th0}; --quick: no later samples)")
else:
    print(f"  after the streams: 5 s RSS {rss5} MB, {fd5} fds, {th5} threads; 30 s RSS {rss30} MB, {fd30} fds, {th30} threads; 90 s RSS {rss90} MB, {fd90} fds, {th90} threads (baseline {rss0} / {fd0} / {th0})")
met = True
def check(ok, text):
    global met
    met = met and ok
    print(("  met: " if ok else "  NOT met: ") + text)
check(r["failed"] == 0 and r["ok"] == streams, f"0 errors ({r['ok']} of {streams} ok)")
check(hwm <= 1536, f"peak RSS {hwm} MB ≤ 1.5 GB")
check(h.get("p99") is not None and h["p99"] <= 5, f"added delay per chunk while held p99 {h.get('p99')} ms ≤ 5 ms")
if relay and relay["gateway_added_ms"]["n"]:
    check(relay["gateway_added_ms"]["p99"] <= 5, f"delay between the gateway's legs while held (packet capture) p99 {relay['gateway_added_ms']['p99']} ms ≤ 5 ms")
check(d.get("p99") is not None and d["p99"] <= 5, f"added delay per chunk over the whole run, the ramp of {sys.argv[19]} new streams/s included, p99 {d.get('p99')} ms ≤ 5 ms")
if quick:
    # Idle upstream connections stay pooled for 60 s, so 5 s after the streams the fds cannot be back yet.
    print("  not judged (--quick): fds, threads and RSS back near baseline 90 s after")
    sys.exit(0 if met else 1)
check(fd90 <= fd0 + 20 and th90 <= th0 + 5, f"fds and threads back near baseline 90 s after ({fd90} vs {fd0}, {th90} vs {th0})")
print(f"  RSS 90 s after: {rss90} MB against {rss0} MB baseline ({(rss90 - rss0):+d} MB; finished streams stay in the replay buffer for Streaming:ReplayTtlSeconds within Streaming:ReplayBudgetBytes)" if sys.argv[15] == "true" else f"  RSS 90 s after: {rss90} MB against {rss0} MB baseline ({(rss90 - rss0):+d} MB)")
sys.exit(0 if met else 1)
PY
