#!/usr/bin/env bash
# Scale-out figures (BENCHMARKS.md, "Scale-out: three instances behind nginx"): three `sluice serve` processes on one
# throwaway PostgreSQL, nginx round-robin in front of them (docs/deploy.md's configuration, on loopback), then
#   (a) `sluice bench cluster` through nginx: a team's rpm_limit (600) offered at twice the limit, admitted counted per
#       clock minute (pass: within 5 %), and 1,000 jobs each completed twice at once (pass: exactly 1,000 credits
#       charged, balance 0);
#   (b) throughput of 3 instances against 1: plain `sluice bench` (sim-fast, 64 tokens, C=32, bounded by requests and
#       seconds, called with a team's virtual key so authentication, admission and the usage ledger run) through nginx
#       and against one instance directly, alternated twice (ABBA).
# Prints a summary with the load average. Everything binds 127.0.0.1; processes, nginx, PostgreSQL and temp dirs are
# removed on exit (also on failure and Ctrl+C).
#
# Usage: bench/cluster.sh [--quick] [--no-build]
#   --quick     a smoke check: rate limit offered for 15 s (no whole clock minute, so no verdict), 100 jobs,
#               2,000 streams per throughput run
#   --no-build  use the existing Release build (default: `dotnet build -c Release src/Sluice.Cli` first)
# Environment:
#   SLUICE_TEST_POSTGRES  an admin connection string (Host=…;Port=…;Username=…): a database is created in it and
#                         dropped at exit; unset = a throwaway cluster (scripts/test-postgres.sh; installs postgresql
#                         when missing and running as root)
#   SLUICE_TEST_NGINX     the nginx binary (default: found by scripts/test-nginx.sh, installed when missing as root)
#   SLUICE_DLL            the CLI (default src/Sluice.Cli/bin/Release/net10.0/sluice.dll)
#   RPM RPM_SECONDS JOBS  bench cluster's --rpm, --seconds, --jobs (default 600, 125, 1000; quick: 600, 15, 100)
#   STREAMS CONCURRENCY DURATION WARMUP ROUNDS
#                         the throughput runs: -n, -c, -d (seconds, warm-up included), -w, and how many times each
#                         target runs (default 40000, 32, 30, 1000, 2; quick: 2000, 32, 10, 100, 2)
# Exit code 0 when bench cluster passed and no stream failed, 1 otherwise (setup failures included).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
quick=0; build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "cluster.sh: unknown option '$1'; see --help." >&2; exit 2 ;;
  esac
  shift
done

if [[ $quick == 1 ]]; then
  RPM="${RPM:-600}"; SECONDS_RPM="${RPM_SECONDS:-15}"; JOBS="${JOBS:-100}"
  STREAMS="${STREAMS:-2000}"; CONCURRENCY="${CONCURRENCY:-32}"; DURATION="${DURATION:-10}"; WARMUP="${WARMUP:-100}"
else
  RPM="${RPM:-600}"; SECONDS_RPM="${RPM_SECONDS:-125}"; JOBS="${JOBS:-1000}"
  STREAMS="${STREAMS:-40000}"; CONCURRENCY="${CONCURRENCY:-32}"; DURATION="${DURATION:-30}"; WARMUP="${WARMUP:-1000}"
fi
ROUNDS="${ROUNDS:-2}"
SIZE=3

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is needed; install it and run again." >&2; exit 3; }
done

dll="${SLUICE_DLL:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
if [[ $build == 1 && -z "${SLUICE_DLL:-}" ]]; then
  echo "== building sluice (Release) ==" >&2
  dotnet build -c Release -nologo -clp:NoSummary -v quiet "$root/src/Sluice.Cli" >/dev/null
fi
[[ -f "$dll" ]] || { echo "cluster.sh: $dll not found; build it (dotnet build -c Release src/Sluice.Cli) or drop --no-build." >&2; exit 3; }

# The children are configured by their config files only; SLUICE_ variables of this shell would change them.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^SLUICE_' | grep -v '^SLUICE_TEST_' || true)

# shellcheck source=../scripts/test-postgres.sh
source "$root/scripts/test-postgres.sh"
# shellcheck source=../scripts/test-nginx.sh
source "$root/scripts/test-nginx.sh"

work="$(mktemp -d /tmp/sluice-cluster-XXXXXX)"
pids=()         # sluice serve instances
nginx_pid=""
database=""
admin_conn=""   # psql arguments for the admin connection, when the database must be dropped at exit
psql_bin=""

stop_pid() { # pid: SIGTERM (graceful), bounded wait 15 s, then SIGKILL
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  [[ -n "$nginx_pid" ]] && stop_pid "$nginx_pid"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  if [[ -n "$database" && -n "$admin_conn" ]]; then
    # shellcheck disable=SC2086
    "$psql_bin" $admin_conn -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 \
      || echo "cluster.sh: could not drop database $database" >&2
  fi
  sluice_pg_stop >&2
  rm -rf "$work"
  echo "== cleaned up (instances, nginx, PostgreSQL, $work) ==" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_start="$(loadavg)"

# --- PostgreSQL ---------------------------------------------------------------------------------------------------
external_pg=0
[[ -n "${SLUICE_TEST_POSTGRES:-}" ]] && external_pg=1
sluice_pg_start >&2

# Host/Port/Username/Password of the admin connection string, for psql.
pg_field() { # key names (alternatives)…
  local part key value want
  IFS=';' read -r -a parts <<<"$SLUICE_TEST_POSTGRES"
  for part in "${parts[@]}"; do
    key="${part%%=*}"; value="${part#*=}"
    key="$(tr -d ' ' <<<"${key,,}")"
    for want in "$@"; do [[ "$key" == "$want" ]] && { echo "$value"; return 0; }; done
  done
  return 0
}
pg_host="$(pg_field host server)"; pg_port="$(pg_field port)"; pg_user="$(pg_field username userid user)"
pg_password="$(pg_field password)"
[[ -n "$pg_password" ]] && export PGPASSWORD="$pg_password"
if [[ -n "${SLUICE_PG_BIN:-}" && -x "$SLUICE_PG_BIN/psql" ]]; then psql_bin="$SLUICE_PG_BIN/psql"; else psql_bin="$(command -v psql || true)"; fi
[[ -n "$psql_bin" ]] || { echo "cluster.sh: psql not found (apt-get install postgresql-client)." >&2; exit 3; }
conn="-h ${pg_host:-127.0.0.1} -p ${pg_port:-5432} -U ${pg_user:-postgres} -d postgres"

database="sluice_cluster_$(date +%s)_$$"
# shellcheck disable=SC2086
"$psql_bin" $conn -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database" >/dev/null
[[ $external_pg == 1 ]] && admin_conn="$conn"
# The instances' store: the same server, the new database, a pool of 40 per instance (docs/deploy.md).
store="$(python3 - "$SLUICE_TEST_POSTGRES" "$database" <<'EOF'
import sys
conn, db = sys.argv[1:]
parts = [p for p in conn.split(";") if p.strip() and p.split("=", 1)[0].strip().lower() not in ("database", "maximum pool size")]
print(";".join(parts + ["Database=" + db, "Maximum Pool Size=40"]))
EOF
)"
pg_version="$("$psql_bin" $conn -At -c 'SHOW server_version' 2>/dev/null || echo '?')"
echo "== database $database on ${pg_host:-127.0.0.1}:${pg_port:-5432} (PostgreSQL $pg_version) ==" >&2

# --- nginx --------------------------------------------------------------------------------------------------------
sluice_nginx_ensure >&2

# --- ports, master key, configs -----------------------------------------------------------------------------------
read -r -a ports < <(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
nginx_port="${ports[$SIZE]}"
master="sk-bench-master-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

for (( i = 0; i < SIZE; i++ )); do
  dir="$work/instance$i"; mkdir -p "$dir/data"
  python3 - "$dir/sluice.json" "${ports[$i]}" "$store" "$master" "$dir/data" <<'EOF'
import json, sys
path, port, store, master, data = sys.argv[1:]
# No "Models": the built-in simulated models (sim-realistic, sim-fast, sim-slow, sim-embed).
config = {"Host": "127.0.0.1", "Port": int(port), "Store": store, "MasterKey": master, "DataDirectory": data,
          "Streaming": {"ShutdownGraceSeconds": 3}}
json.dump(config, open(path, "w"), indent=2)
EOF
done

# --- instances: all three at the same moment, on the empty database ------------------------------------------------
for (( i = 0; i < SIZE; i++ )); do
  dir="$work/instance$i"
  (cd "$dir" && exec dotnet "$dll" serve --config "$dir/sluice.json" >"$dir/serve.log" 2>&1) &
  pids+=("$!")
  echo "== instance $i (pid $!) on 127.0.0.1:${ports[$i]} ==" >&2
done

wait_ready() { # name, url, pid (empty for none), log
  local name="$1" url="$2" pid="$3" log="$4"
  for _ in $(seq 1200); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: $name exited before it was ready; its output:" >&2; tail -20 "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "cluster.sh: $name not ready after 120 s ($url); its output:" >&2; tail -20 "$log" >&2; exit 1
}
for (( i = 0; i < SIZE; i++ )); do
  wait_ready "instance $i" "http://127.0.0.1:${ports[$i]}/health/ready" "${pids[$i]}" "$work/instance$i/serve.log"
done
echo "== instances ready; migrations applied at this start per instance: $(grep -hoE '[0-9]+ migration\(s\) applied' "$work"/instance*/serve.log | cut -d' ' -f1 | paste -sd/ -) ==" >&2

ndir="$work/nginx"; mkdir -p "$ndir"
servers=""
for (( i = 0; i < SIZE; i++ )); do servers+="        server 127.0.0.1:${ports[$i]} max_fails=1 fail_timeout=2s;"$'\n'; done
# docs/deploy.md's configuration on a loopback port (no TLS), with paths in the temp directory.
cat >"$ndir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $ndir/nginx.pid;
error_log $ndir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $ndir/body;
    proxy_temp_path $ndir/proxy;
    fastcgi_temp_path $ndir/fastcgi;
    uwsgi_temp_path $ndir/uwsgi;
    scgi_temp_path $ndir/scgi;

    upstream sluice {
$servers        keepalive 32;
    }

    server {
        listen 127.0.0.1:$nginx_port;
        client_max_body_size 4m;

        location / {
            proxy_pass http://sluice;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_next_upstream_tries 3;
        }

        location /api/llm/ws {
            proxy_pass http://sluice;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }
    }
}
EOF
"$SLUICE_TEST_NGINX" -p "$ndir" -c "$ndir/nginx.conf" -e "$ndir/error.log" >"$ndir/stdout.log" 2>&1 &
nginx_pid=$!
balancer="http://127.0.0.1:$nginx_port"
wait_ready nginx "$balancer/health/ready" "$nginx_pid" "$ndir/error.log"
echo "== nginx (pid $nginx_pid) on $balancer in front of ports ${ports[*]:0:$SIZE} ==" >&2

# Each instance answers through the balancer (round-robin: SIZE calls reach SIZE different instances).
seen="$(for _ in $(seq $((SIZE * 2))); do curl -fsS "$balancer/health/ready" | python3 -c 'import json, sys; print(json.load(sys.stdin)["instance"])'; done | sort -u | wc -l)"
echo "== $seen distinct instances answered through nginx ==" >&2

# --- machine ------------------------------------------------------------------------------------------------------
cpu_model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
mem_gb="$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
machine="$(nproc) vCPUs ($cpu_model), $mem_gb GB RAM, Linux $(uname -r | cut -d- -f1), .NET SDK $(dotnet --version 2>/dev/null), $("$SLUICE_TEST_NGINX" -v 2>&1 | sed 's/.*: //'), PostgreSQL $pg_version"

# --- (a) bench cluster --------------------------------------------------------------------------------------------
echo >&2
echo "== (a) sluice bench cluster --url $balancer --rpm $RPM --seconds $SECONDS_RPM --jobs $JOBS (load average $(loadavg)) ==" >&2
load_a_start="$(loadavg)"
cluster_out="$work/cluster.out"
set +e
dotnet "$dll" bench cluster --url "$balancer" --master-key "$master" --rpm "$RPM" --seconds "$SECONDS_RPM" --jobs "$JOBS" 2>&1 | tee "$cluster_out" >&2
cluster_rc=${PIPESTATUS[0]}
set -e
load_a_end="$(loadavg)"

# --- (b) throughput, 3 instances (nginx) against 1 (direct) -------------------------------------------------------
admin() { curl -fsS -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2" "$balancer/$1"; }
admin api/organizations/create '{"organization_id":"org_cluster_bench","name":"Cluster bench"}' >/dev/null
team_key="$(admin api/teams/create '{"organization_id":"org_cluster_bench","team_id":"team_cluster_bench","team_alias":"Cluster bench","credits_allocated":1000000000}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual_key"])')"

declare -A target_url=([nginx]="$balancer" [direct]="http://127.0.0.1:${ports[0]}")
results="$work/throughput.tsv"
: >"$results"
throughput_failed=0
for (( round = 1; round <= ROUNDS; round++ )); do
  # Alternated ABBA (nginx, direct, direct, nginx, …) so neither target always runs first.
  order=(nginx direct); (( round % 2 == 0 )) && order=(direct nginx)
  for target in "${order[@]}"; do
    echo "== (b) round $round/$ROUNDS: $target (${target_url[$target]}), sim-fast, 64 tokens, -c $CONCURRENCY -n $STREAMS -d $DURATION -w $WARMUP (load average $(loadavg)) ==" >&2
    out="$work/bench-$target-$round.json"
    set +e
    dotnet "$dll" bench --url "${target_url[$target]}" --model sim-fast --max-tokens 64 -c "$CONCURRENCY" -n "$STREAMS" \
      -d "$DURATION" -w "$WARMUP" --api-key "$team_key" --json >"$out" 2>"$work/bench-$target-$round.err"
    rc=$?
    set -e
    load="$(loadavg)"
    row="$(python3 - "$out" "$target" "$round" "$rc" "$load" <<'EOF'
import json, sys
path, target, rnd, rc, load = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print("\t".join([target, rnd, "?", "?", "?", "?", "?", "?", f"rc {rc}: no result", load]))
    sys.exit(0)
errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
print("\t".join([target, rnd, str(r["succeeded"]), f'{r["duration_seconds"]:.1f}', f'{r["streams_per_second"]:.0f}',
                 f'{r["tokens_per_second"]:.0f}', f'{r["ttft_ms"]["p50"]:.2f}', f'{r["ttft_ms"]["p99"]:.2f}',
                 errors + ("" if r["stopped_by"] == "requests" else f' (stopped by {r["stopped_by"]}, cut {r["cut"]})'), load]))
EOF
)"
    echo "$row" >>"$results"
    [[ $rc == 0 ]] || throughput_failed=1
    echo "   $(cut -f3- <<<"$row" | awk -F'\t' '{ printf "%s streams in %s s: %s streams/s, TTFT p50 %s ms, p99 %s ms, errors: %s", $1, $2, $3, $5, $6, $7 }')" >&2
  done
done
load_end="$(loadavg)"

# --- summary ------------------------------------------------------------------------------------------------------
echo
echo "Scale-out: $SIZE instances behind nginx — $(date -u '+%Y-%m-%d %H:%M UTC')$([[ $quick == 1 ]] && echo ' (--quick: smoke check, not a measurement)')"
echo "Machine: $machine"
echo "Load average (1/5/15 min): at start $load_start; bench cluster $load_a_start → $load_a_end; at end $load_end"
echo
echo "(a) sluice bench cluster --url <nginx> --master-key … --rpm $RPM --seconds $SECONDS_RPM --jobs $JOBS — exit code $cluster_rc ($([[ $cluster_rc == 0 ]] && echo pass || echo FAIL))"
sed 's/^/    /' "$cluster_out"
echo
echo "(b) sluice bench --model sim-fast --max-tokens 64 -c $CONCURRENCY -n $STREAMS -d $DURATION -w $WARMUP, a team's virtual key"
echo "| target | round | streams | duration | streams/s | tokens/s | TTFT p50 | TTFT p99 | errors | load avg after |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
awk -F'\t' '{ t = ($1 == "nginx") ? "3 instances via nginx" : "1 instance direct";
              printf "| %s | %s | %s | %s s | %s | %s | %s ms | %s ms | %s | %s |\n", t, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$results"
awk -F'\t' '$5 != "?" { sum[$1] += $5; n[$1]++ }
            END { if (n["nginx"] && n["direct"]) {
                    a = sum["nginx"] / n["nginx"]; b = sum["direct"] / n["direct"];
                    printf "3 instances / 1 instance: %.0f / %.0f streams/s = %.2f (mean of %d runs each; %s cores shared by client, nginx, instances and PostgreSQL)\n", a, b, a / b, n["nginx"], cores } }' \
  cores="$(nproc)" "$results"

if [[ $cluster_rc == 0 && $throughput_failed == 0 ]]; then
  echo "Result: bench cluster passed; every throughput stream succeeded."
  exit 0
fi
echo "Result: $([[ $cluster_rc != 0 ]] && echo "bench cluster FAILED (exit code $cluster_rc); ")$([[ $throughput_failed != 0 ]] && echo 'some throughput streams failed (see errors above)')"
exit 1
