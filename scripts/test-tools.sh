# Sourced by scripts/test.sh: Debian packages some tests run as plain tools — tcpdump (the proxied-streams benchmark's
# smoke run records both legs of a gateway), wrk (the smoke runs of the wrk-driven benchmarks) and Prometheus with
# promtool (a real server scrapes the gateway and answers the Grafana dashboard's queries). The tests start what they
# need themselves.
#   sluice_tool_ensure PACKAGE COMMAND...  installs PACKAGE when one of the COMMANDs is missing (as root; otherwise says how).

sluice_tool_ensure() {
  local package=$1 command missing=0
  shift
  for command in "$@"; do command -v "$command" >/dev/null 2>&1 || missing=1; done
  if [ "$missing" = 1 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: $* not found; install them with 'sudo apt-get install -y $package' and run again." >&2
      return 1
    fi
    echo "== $package not found: apt-get install -y $package =="
    apt-get update -qq
    # A package's own service (prometheus ships one) is not wanted: policy-rc.d keeps it from starting.
    local policy=/usr/sbin/policy-rc.d created=0 status=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null || status=$?
    [ "$created" = 1 ] && rm -f "$policy"
    for command in "$@"; do command -v "$command" >/dev/null 2>&1 || status=1; done
    if [ "$status" -ne 0 ]; then
      echo "error: installing $package did not provide $*; install it (apt-get install -y $package) and run again." >&2
      return 1
    fi
  fi
  echo "== $package: $("$1" --version 2>&1 | head -n 1) =="
}
