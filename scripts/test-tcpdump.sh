# Sourced by scripts/test.sh: provides Debian's tcpdump for the smoke run of bench/proxied-streams.sh --capture (both
# legs of a gateway recorded on loopback and read by bench/relay-delay.py).
#   sluice_tcpdump_ensure  installs tcpdump if it is missing (as root; otherwise says how).

sluice_tcpdump_ensure() {
  if command -v tcpdump >/dev/null 2>&1; then
    echo "== tcpdump: $(tcpdump --version 2>&1 | head -n 1) =="
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: tcpdump not found; install it with 'sudo apt-get install -y tcpdump' and run again." >&2
    return 1
  fi
  echo "== tcpdump not found: apt-get install -y tcpdump =="
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump >/dev/null
  if ! command -v tcpdump >/dev/null 2>&1; then
    echo "error: installed tcpdump but found no tcpdump on the PATH." >&2
    return 1
  fi
  echo "== tcpdump: $(tcpdump --version 2>&1 | head -n 1) =="
}
