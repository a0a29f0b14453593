#!/usr/bin/env bash
# What a blocking collection's pause (gen 0, gen 1, blocking gen 2, each on its own) is made of in the gateway under the load of bench/cpu-per-stream.sh (virtual key,
# ledger, 64-chunk mock upstream): suspending threads, collecting, restarting, and the marking by root kind (stacks,
# handles, older generations through the card table, …) with the bytes each kept alive — from the runtime's own GC
# events, read in-process by the startup hook in bench/alloc-hook after the warm-up.
#   bash bench/gc-phases.sh [SLUICE_DLL]
# Environment: CONNECTIONS (wrk connections, default 32; 1 for the one-client tail), WARMUP (s, default 20), and
# cpu-per-stream.sh's ACCESS_LOG and EXTRA_CONFIG (e.g. EXTRA_CONFIG='"Streaming":{"ReplayTtlSeconds":0},').
set -eu
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dll="${1:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
hook="$root/bench/alloc-hook/bin/Release/net10.0/Sluice.AllocHook.dll"
dotnet build "$root/bench/alloc-hook" -c Release -v q -nologo >/dev/null \
  || { echo "gc-phases.sh: could not build bench/alloc-hook; run 'dotnet build bench/alloc-hook -c Release' to see why." >&2; exit 1; }
out=$(mktemp)
warm=${WARMUP:-20}
DOTNET_STARTUP_HOOKS="$hook" SLUICE_GC_OUT="$out" SLUICE_ALLOC_START="$((warm + 3))" \
  WARMUP=$warm bash "$root/bench/cpu-per-stream.sh" "$dll"
cat "$out"; rm -f "$out"
