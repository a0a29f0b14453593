#!/usr/bin/env bash
# Soak: many streams back to back through one gateway, watching for leaks.
#
#   bash bench/soak.sh [--store sqlite|postgres] [--streams 100000] [--every 10000] [--concurrency 32] [--chunks 32]
#                      [--warmup 20000]
#
# Starts `sluice mock-upstream` (--chunks chunks per answer, no delays) and `sluice serve` with a master key on the
# chosen store (SQLite in a temp folder, or a throwaway PostgreSQL cluster from scripts/test-postgres.sh; an
# SLUICE_TEST_POSTGRES connection string already set is used instead), creates a team and its virtual key through the
# admin API, then streams --streams chat completions with that key (auth, admission and the usage ledger on) using
# `sluice bench` at --concurrency, in rounds of --every streams. After each round it prints the gateway's resident
# memory (VmRSS), managed heap (/health), open file descriptors (/proc/PID/fd) and threads. At the end it compares RSS
# (each after a full GC forced with dotnet-gcdump when it is installed; as sampled otherwise) after --warmup streams (default 20,000: the replay buffer of finished streams fills its 64 MiB budget over the first
# ~10,000–20,000) with the last (target: within ±10 %), descriptors and threads (target: no growth), errors (target:
# 0), and counts the team's rows in the usage ledger (target: exactly the streams sent, warm-up included).
# Exit code 0 when every target is met, 1 when one is not, 2 on a set-up error.
# Environment: SLUICE_DLL (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll); DOTNET_* reach every process.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
store=sqlite; streams=100000; every=10000; concurrency=32; chunks=32; warmup=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --streams) streams="$2"; shift 2 ;;
    --every) every="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --chunks) chunks="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1'; see 'bash bench/soak.sh --help'." >&2; exit 2 ;;
  esac
done
case "$store" in sqlite|postgres) ;; *) echo "soak.sh: --store is sqlite or postgres, not '$store'." >&2; exit 2 ;; esac
[ $((streams % every)) -eq 0 ] || { echo "soak.sh: --streams ($streams) must be a multiple of --every ($every)." >&2; exit 2; }
dll="${SLUICE_DLL:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
[ -f "$dll" ] || { echo "soak.sh: $dll not found; build with 'dotnet build src/Sluice.Cli -c Release'." >&2; exit 2; }
command -v python3 >/dev/null || { echo "soak.sh: python3 not found (used for free ports and JSON); install it with 'apt-get install -y python3'." >&2; exit 2; }

work=$(mktemp -d); mpid=""; gpid=""
cleanup() {
  [ -n "$gpid" ] && kill "$gpid" 2>/dev/null; [ -n "$mpid" ] && kill "$mpid" 2>/dev/null; sleep 1
  [ -n "$gpid" ] && kill -9 "$gpid" 2>/dev/null; [ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null
  # A database of its own (created below) goes with the run, also on a server the caller named.
  [ -n "${database:-}" ] && psql "$admin_info" -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
  [ "$store" = postgres ] && sluice_pg_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$store" = postgres ]; then
  # shellcheck source=../scripts/test-postgres.sh
  source "$root/scripts/test-postgres.sh"
  sluice_pg_start || { echo "soak.sh: no PostgreSQL (see above); or set SLUICE_TEST_POSTGRES to a connection string." >&2; exit 2; }
  command -v psql >/dev/null || { echo "soak.sh: psql not found (used to count the ledger); install it with 'apt-get install -y postgresql-client'." >&2; exit 2; }
  # The run's own database on that server (dropped at exit), so the ledger it counts holds only this run's rows and a
  # shared server's databases are left alone.
  pg_info() { echo "$1" | sed 's/;/ /g; s/Host=/host=/; s/Port=/port=/; s/Username=/user=/; s/Password=/password=/; s/Database=/dbname=/'; }
  admin_info="$(pg_info "$SLUICE_TEST_POSTGRES")"
  database="sluice_soak_$(date +%s)_$$"
  psql "$admin_info" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database" >/dev/null \
    || { echo "soak.sh: could not create database $database on the PostgreSQL in SLUICE_TEST_POSTGRES (see above)." >&2; database=""; exit 2; }
  store_conn="$(echo "$SLUICE_TEST_POSTGRES" | sed -E 's/(^|;)Database=[^;]*//');Database=$database"
  store_json="\"Store\":\"$store_conn\","
else
  command -v sqlite3 >/dev/null || { echo "soak.sh: sqlite3 not found (used to count the ledger); install it with 'apt-get install -y sqlite3'." >&2; exit 2; }
  store_json=""
fi

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mp=$(port); gp=$(port)
master="sk-soak-master-0123456789abcdef0123456789abcdef"
team="team_soak_$(date +%s)_$$"
cat > "$work/sluice.json" <<J
{"Host":"127.0.0.1","Port":$gp,"DataDirectory":"$work/data",$store_json"MasterKey":"$master","Models":[{"Name":"mock","Provider":"openai","BaseUrl":"http://127.0.0.1:$mp/v1","MaxAttempts":1}]}
J
(cd "$work" && exec dotnet "$dll" mock-upstream --host 127.0.0.1 --port "$mp" --chunks "$chunks" --model mock > "$work/mock.log" 2>&1) & mpid=$!
(cd "$work" && exec dotnet "$dll" serve --config "$work/sluice.json" > "$work/gw.log" 2>&1) & gpid=$!
for _ in $(seq 300); do curl -fsS -o /dev/null "http://127.0.0.1:$gp/health" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 300); do curl -fsS -o /dev/null "http://127.0.0.1:$mp/v1/models" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "http://127.0.0.1:$gp/health" || { echo "soak.sh: the gateway did not start; its log:" >&2; tail -n 20 "$work/gw.log" >&2; exit 2; }
curl -fsS -o /dev/null "http://127.0.0.1:$mp/v1/models" || { echo "soak.sh: the mock upstream did not start; its log:" >&2; tail -n 20 "$work/mock.log" >&2; exit 2; }
grep -m1 "Store:" "$work/gw.log" | sed 's/^/gateway: /'

admin() { curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$gp/$1"; }
admin api/organizations/create '{"organization_id":"org_soak","name":"Soak"}' >/dev/null 2>&1 || true
key="$(admin api/teams/create "{\"organization_id\":\"org_soak\",\"team_id\":\"$team\",\"team_alias\":\"Soak\",\"credits_allocated\":1000000000}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])')" \
  || { echo "soak.sh: creating the team failed; gateway log:" >&2; tail -n 20 "$work/gw.log" >&2; exit 2; }

# The ledger is written in batches after each stream ends: wait until it holds every call or stops growing.
count() {
  if [ "$store" = postgres ]; then
    psql "$(pg_info "$store_conn")" -tAc \
      "select count(*) from usage_records where team_id = '$team'"
  else
    sqlite3 "$work/data/sluice.db" "select count(*) from usage_records where team_id = '$team'"
  fi
}
sample() { # rss_mb fds threads heap_mb
  echo "$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$gpid/status) $(ls /proc/$gpid/fd | wc -l) $(awk '/Threads/ {print $2}' /proc/$gpid/status)" \
    "$(curl -s -H "Authorization: Bearer $master" "http://127.0.0.1:$gp/health" | sed -n 's/.*"heap_bytes": *\([0-9]*\).*/\1/p' | awk '{printf "%.0f", $1/1048576}')"
}
# RSS between rounds rides the GC's sawtooth (gen-2 garbage piles up for ~100,000 streams, then one collection takes
# it back: +15 % or -5 % depending on where the last round lands). For the leak verdict both the warm-up and the end
# are sampled after a forced full, compacting collection (what dotnet-gcdump does before it walks the heap).
PATH="$PATH:$HOME/.dotnet/tools"
settled() { # rss_mb heap_mb after a full GC, or the plain sample without dotnet-gcdump
  if command -v dotnet-gcdump >/dev/null; then
    timeout 120 dotnet-gcdump collect -p "$gpid" -o "$work/settle.gcdump" >/dev/null 2>&1; rm -f "$work/settle.gcdump"; sleep 1
  fi
  read -r r _ _ h <<< "$(sample)"; echo "$r $h"
}
command -v dotnet-gcdump >/dev/null && settle_note="after a forced full GC" \
  || settle_note="as sampled (no dotnet-gcdump: install it with 'dotnet tool install -g dotnet-gcdump' to compare after a full GC)"
read -r rss0 fd0 th0 heap0 <<< "$(sample)"
echo "soak: store $store, $streams streams in rounds of $every, concurrency $concurrency, $chunks chunks each; gateway pid $gpid"
echo "soak: at start: RSS $rss0 MB (heap $heap0 MB), $fd0 fds, $th0 threads"
done_n=0; errors=0; round=0; started=$SECONDS
rss_w=""; fd_w=""; th_w=""; rss_max=0; fd_max=0; th_max=0
while [ "$done_n" -lt "$streams" ]; do
  round=$((round + 1))
  json=$(dotnet "$dll" bench --url "http://127.0.0.1:$gp" --model mock --api-key "$key" -c "$concurrency" -n "$every" -d 600 \
    --max-tokens "$chunks" --json 2>"$work/bench.err")
  read -r ok failed cut rate errs <<< "$(echo "$json" | python3 -c 'import json,sys
r=json.load(sys.stdin); print(r["succeeded"], r["failed"], r["cut"], round(r["streams_per_second"]), json.dumps(r["errors"]).replace(" ",""))' 2>/dev/null)"
  if [ -z "${ok:-}" ]; then
    echo "soak.sh: sluice bench gave no result in round $round:" >&2; cat "$work/bench.err" >&2; exit 2
  fi
  done_n=$((done_n + ok + failed + cut)); errors=$((errors + failed + cut))
  read -r rss fd th heap <<< "$(sample)"
  [ "$rss" -gt "$rss_max" ] && rss_max=$rss; [ "$fd" -gt "$fd_max" ] && fd_max=$fd; [ "$th" -gt "$th_max" ] && th_max=$th
  [ -z "$rss_w" ] && [ "$done_n" -ge "$warmup" ] && { rss_w=$rss; fd_w=$fd; th_w=$th; read -r srss_w sheap_w <<< "$(settled)"; }
  [ "$round" -eq 1 ] && rss_1=$rss
  behind=$((done_n - $(count 2>/dev/null || echo 0)))
  echo "soak: $done_n streams ($((SECONDS - started)) s): round $round $ok ok, $failed failed, $cut cut, $rate streams/s$( [ "$errs" != "{}" ] && echo " errors $errs"); RSS $rss MB (heap $heap MB), $fd fds, $th threads; ledger $behind calls behind"
done
ended=$SECONDS
[ -n "$rss_w" ] || { echo "soak.sh: --warmup ($warmup) is more than the streams run ($done_n)." >&2; exit 2; }

ledger=-1; last=-2
for _ in $(seq 60); do
  ledger=$(count) || ledger=-1
  [ "$ledger" = "$done_n" ] && break
  [ "$ledger" = "$last" ] && sleep 1 && [ "$(count)" = "$ledger" ] && break
  last=$ledger; sleep 1
done
ledger_wait=$((SECONDS - ended))
read -r rss_e fd_e th_e heap_e <<< "$(sample)"
read -r srss_e sheap_e <<< "$(settled)"
change=$(python3 -c "print(f'{($srss_e-$srss_w)/$srss_w*100:+.1f}')")
echo
echo "soak result ($store, $done_n streams, $((SECONDS - started)) s): RSS $rss0 MB at start, $rss_1 MB after round 1, $rss_w MB after $warmup (warm-up), $rss_e MB at the end ($change %; heap $heap_e MB), peak $rss_max MB"
echo "  $settle_note: RSS $srss_w MB (heap $sheap_w MB) after the warm-up, $srss_e MB (heap $sheap_e MB) at the end ($change %)"
echo "  fds $fd0 / $fd_w / $fd_e (max $fd_max); threads $th0 / $th_w / $th_e (max $th_max); errors $errors; ledger rows $ledger for $done_n calls (complete ${ledger_wait} s after the last stream)"
warnings=$(grep -cE "^[0-9:]+ (warn|fail|crit)" "$work/gw.log"); [ "$warnings" -gt 0 ] && { echo "  gateway log: $warnings warnings or errors, first ones:"; grep -E "^[0-9:]+ (warn|fail|crit)" -A1 "$work/gw.log" | head -n 6 | sed 's/^/    /'; }
met=0
python3 -c "import sys; sys.exit(0 if abs($srss_e-$srss_w) <= 0.1*$srss_w else 1)" && echo "  met: RSS within ±10 % of warm-up ($settle_note)" || { echo "  NOT met: RSS moved $change % from warm-up ($settle_note)"; met=1; }
if command -v dotnet-gcdump >/dev/null; then
  # The live heap is the leak signal; RSS also holds what the GC keeps committed after its last high-water mark.
  python3 -c "import sys; sys.exit(0 if $sheap_e <= 1.1*$sheap_w else 1)" && echo "  met: live managed heap after a full GC $sheap_w → $sheap_e MB (no growth beyond 10 %)" \
    || { echo "  NOT met: live managed heap after a full GC grew $sheap_w → $sheap_e MB"; met=1; }
fi
[ "$fd_e" -le $((fd_w + 5)) ] && echo "  met: no growth in fds ($fd_w → $fd_e; up to +5 allowed for pooled connections coming and going)" || { echo "  NOT met: fds grew $fd_w → $fd_e"; met=1; }
[ "$th_e" -le $((th_w + 5)) ] && echo "  met: no growth in threads ($th_w → $th_e; up to +5 allowed: the thread pool adds and retires idle workers)" || { echo "  NOT met: threads grew $th_w → $th_e"; met=1; }
[ "$errors" -eq 0 ] && echo "  met: 0 errors" || { echo "  NOT met: $errors errors"; met=1; }
[ "$ledger" = "$done_n" ] && echo "  met: the ledger holds exactly $done_n calls" || { echo "  NOT met: the ledger holds $ledger rows for $done_n calls"; met=1; }
exit $met
