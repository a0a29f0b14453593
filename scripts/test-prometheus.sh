# Sourced by scripts/test.sh: provides Debian's Prometheus server and promtool for the tests that scrape the gateway
# with a real Prometheus and run every query of docs/grafana-dashboard.json against it
# (tests/Sluice.Gateway.Tests/Observability/PrometheusServerTests.cs). The tests start their own throwaway server.
#   sluice_prometheus_ensure  installs the prometheus package if prometheus or promtool is missing (as root; otherwise says how).

sluice_prometheus_ensure() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "== prometheus: $(prometheus --version 2>&1 | head -n 1) =="
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: prometheus/promtool not found; install them with 'sudo apt-get install -y prometheus' and run again." >&2
    return 1
  fi
  echo "== prometheus not found: apt-get install -y prometheus =="
  apt-get update -qq
  # The package's own service is not wanted (the tests run their own server): policy-rc.d keeps it from starting.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
  [ "$created" = 1 ] && rm -f "$policy"
  if [ "$status" -ne 0 ] || ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "error: installing the prometheus package failed (apt-get install -y prometheus); install it and run again." >&2
    return 1
  fi
  echo "== prometheus: $(prometheus --version 2>&1 | head -n 1) =="
}
