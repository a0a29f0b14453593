#!/usr/bin/env bash
# Where the gateway's allocations go, by type, under the load of bench/cpu-per-stream.sh (virtual key, ledger,
# 64-chunk mock upstream, wrk -c32): the runtime's allocation sampling (one event per ~100 KB, charged to the type
# that crossed the mark) read in-process by a startup hook (bench/alloc-hook), after a warm-up. Prints the top types.
#   bash bench/alloc-profile.sh [SLUICE_DLL]     Environment: WARMUP (s, default 20), DURATION (s, default 15)
set -eu
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dll="${1:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
hook="$root/bench/alloc-hook/bin/Release/net10.0/Sluice.AllocHook.dll"
[ -f "$hook" ] || dotnet build "$root/bench/alloc-hook" -c Release -v q -nologo >/dev/null \
  || { echo "alloc-profile.sh: could not build bench/alloc-hook; run 'dotnet build bench/alloc-hook -c Release' to see why." >&2; exit 1; }
out=$(mktemp)
warm=${WARMUP:-20}; dur=${DURATION:-15}
# cpu-per-stream.sh runs warm-up + 12 s; the hook counts from the end of the warm-up and writes every 2 s.
DOTNET_STARTUP_HOOKS="$hook" SLUICE_ALLOC_OUT="$out" SLUICE_ALLOC_START="$((warm + 3))" SLUICE_ALLOC_INTERVAL=2 \
  WARMUP=$warm bash "$root/bench/cpu-per-stream.sh" "$dll"
cat "$out"; rm -f "$out"
