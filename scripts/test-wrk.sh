# Sourced by scripts/test.sh: provides Debian's wrk, the load generator of bench/overhead-wrk.sh, bench/cpu-per-stream.sh
# and bench/cold-start.sh, for their smoke runs (tests/Sluice.Cli.Tests/Bench).
#   sluice_wrk_ensure  installs wrk if it is missing (as root; otherwise says how).

sluice_wrk_ensure() {
  if command -v wrk >/dev/null 2>&1; then
    echo "== wrk: $(wrk --version 2>&1 | head -n 1) =="
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: wrk not found; install it with 'sudo apt-get install -y wrk' and run again." >&2
    return 1
  fi
  echo "== wrk not found: apt-get install -y wrk =="
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
  if ! command -v wrk >/dev/null 2>&1; then
    echo "error: installed wrk but found no wrk on the PATH." >&2
    return 1
  fi
  echo "== wrk: $(wrk --version 2>&1 | head -n 1) =="
}
