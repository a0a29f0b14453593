# Sourced by scripts/test.sh: provides a throwaway PostgreSQL for the storage tests.
#   sluice_pg_start  installs Debian's postgresql if initdb/pg_ctl are missing, initdb's a temporary cluster,
#                    starts it on a free 127.0.0.1 port and exports SLUICE_TEST_POSTGRES.
#   sluice_pg_stop   stops it and deletes the cluster (safe to call twice, and when nothing was started).
# An SLUICE_TEST_POSTGRES already set by the caller is used as it is and nothing is started.

SLUICE_PG_DIR=""
SLUICE_PG_BIN=""
SLUICE_PG_USER=""

sluice_pg_find_bin() {
  local dir
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      SLUICE_PG_BIN=$dir
      return 0
    fi
  fi
  # Debian keeps the server binaries off PATH, one directory per major version; take the newest.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      SLUICE_PG_BIN=$dir
      return 0
    fi
  done
  return 1
}

# Runs a command as the cluster's owner (PostgreSQL refuses to run as root).
sluice_pg_as_owner() {
  if [ -n "$SLUICE_PG_USER" ]; then
    runuser -u "$SLUICE_PG_USER" -- "$@"
  else
    "$@"
  fi
}

sluice_pg_start() {
  if [ -n "${SLUICE_TEST_POSTGRES:-}" ]; then
    echo "== using the PostgreSQL in SLUICE_TEST_POSTGRES =="
    return 0
  fi

  local started=$SECONDS
  if ! sluice_pg_find_bin; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found; install them with 'sudo apt-get install -y postgresql' and run again." >&2
      return 1
    fi
    echo "== PostgreSQL not found: apt-get update && apt-get install -y postgresql =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    if ! sluice_pg_find_bin; then
      echo "error: installed postgresql but found no initdb/pg_ctl under /usr/lib/postgresql/*/bin." >&2
      return 1
    fi
  fi

  if [ "$(id -u)" -eq 0 ]; then
    SLUICE_PG_USER=postgres
    if ! id -u "$SLUICE_PG_USER" >/dev/null 2>&1; then
      echo "== creating system user $SLUICE_PG_USER to own the test cluster =="
      useradd --system --no-create-home --shell /usr/sbin/nologin "$SLUICE_PG_USER"
    fi
  fi

  SLUICE_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
  mkdir -p "$SLUICE_PG_DIR/data" "$SLUICE_PG_DIR/socket"
  if [ -n "$SLUICE_PG_USER" ]; then
    chown -R "$SLUICE_PG_USER" "$SLUICE_PG_DIR"
  fi
  chmod 700 "$SLUICE_PG_DIR"

  echo "== initdb ($("$SLUICE_PG_BIN/pg_ctl" --version)) in $SLUICE_PG_DIR =="
  # Trust authentication: the server listens on 127.0.0.1 only and is deleted after the run.
  (cd "$SLUICE_PG_DIR" && sluice_pg_as_owner "$SLUICE_PG_BIN/initdb" -D "$SLUICE_PG_DIR/data" -U postgres \
    --auth=trust --encoding=UTF8 --locale=C --no-sync >"$SLUICE_PG_DIR/initdb.log" 2>&1) || {
    cat "$SLUICE_PG_DIR/initdb.log" >&2
    echo "error: initdb failed (log above)." >&2
    return 1
  }

  local attempt port
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    # Skip ports something already listens on.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      continue
    fi
    echo "== starting PostgreSQL on 127.0.0.1:$port =="
    # Durability settings off: a throwaway cluster, and the tests measure behaviour, not fsync.
    if (cd "$SLUICE_PG_DIR" && sluice_pg_as_owner "$SLUICE_PG_BIN/pg_ctl" -D "$SLUICE_PG_DIR/data" \
      -l "$SLUICE_PG_DIR/server.log" -w -t 60 \
      -o "-p $port -k $SLUICE_PG_DIR/socket -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null); then
      break
    fi
    tail -n 5 "$SLUICE_PG_DIR/server.log" >&2 || true
    port=""
  done
  if [ -z "$port" ]; then
    echo "error: PostgreSQL did not start (server log above)." >&2
    return 1
  fi

  local pg_isready=$SLUICE_PG_BIN/pg_isready
  [ -x "$pg_isready" ] || pg_isready=$(command -v pg_isready || true)
  if [ -n "$pg_isready" ]; then
    local waited=0
    until "$pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; do
      waited=$((waited + 1))
      if [ "$waited" -ge 60 ]; then
        echo "error: PostgreSQL on 127.0.0.1:$port is not ready after 30 s." >&2
        return 1
      fi
      sleep 0.5
    done
  fi

  export SLUICE_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres"
  echo "== PostgreSQL ready on 127.0.0.1:$port in $((SECONDS - started)) s =="
}

sluice_pg_stop() {
  if [ -z "$SLUICE_PG_DIR" ]; then
    return 0
  fi
  if [ -f "$SLUICE_PG_DIR/data/postmaster.pid" ]; then
    echo "== stopping PostgreSQL =="
    (cd "$SLUICE_PG_DIR" && sluice_pg_as_owner "$SLUICE_PG_BIN/pg_ctl" -D "$SLUICE_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1) || true
  fi
  rm -rf "$SLUICE_PG_DIR"
  SLUICE_PG_DIR=""
}
