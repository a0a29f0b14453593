#!/usr/bin/env bash
# Where a type's allocations come from, by allocating stack, under the load of bench/cpu-per-stream.sh (virtual key,
# ledger, 64-chunk mock upstream, wrk -c32): dotnet-trace records the runtime's randomized allocation sampling
# (AllocationSampled, .NET 9+, with stacks; the JIT and loader keywords make the rundown name the methods) for DURATION seconds after the warm-up, and bench/alloc-stacks prints the
# heaviest stacks. Pair it with bench/alloc-profile.sh, which names the types and sizes.
#   bash bench/alloc-stacks.sh [TYPE] [SIZE] [SLUICE_DLL]    e.g. bash bench/alloc-stacks.sh System.Byte[] 16584
# Environment: WARMUP (s, default 20), DURATION (s, default 6), FRAMES (default 14), TOP (stacks shown, default 12).
# Needs dotnet-trace ('dotnet tool install -g dotnet-trace'; it restores from the NuGet mirror).
set -eu
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
type="${1:-}"; size="${2:-0}"; dll="${3:-$root/src/Sluice.Cli/bin/Release/net10.0/sluice.dll}"
trace=$(command -v dotnet-trace || echo "$HOME/.dotnet/tools/dotnet-trace")
[ -x "$trace" ] || { echo "alloc-stacks.sh: dotnet-trace not found; install it with 'dotnet tool install -g dotnet-trace'." >&2; exit 1; }
tool="$root/bench/alloc-stacks/bin/Release/net10.0/Sluice.AllocStacks.dll"
[ -f "$tool" ] || dotnet build "$root/bench/alloc-stacks" -c Release -v q -nologo >/dev/null \
  || { echo "alloc-stacks.sh: could not build bench/alloc-stacks; run 'dotnet build bench/alloc-stacks -c Release' to see why." >&2; exit 1; }
out=$(mktemp -d)
warm=${WARMUP:-20}
WARMUP=$warm bash "$root/bench/cpu-per-stream.sh" "$dll" > "$out/load.txt" 2>&1 & load=$!
sleep $((warm + 4))
pid=$(pgrep -n -f "$(basename "$dll") serve --config" || true)
[ -n "$pid" ] || { echo "alloc-stacks.sh: the gateway did not start; see bench/cpu-per-stream.sh" >&2; kill $load; exit 1; }
"$trace" collect -p "$pid" --providers "Microsoft-Windows-DotNETRuntime:0x80000000018:5" \
  --duration "00:00:$(printf %02d "${DURATION:-6}")" -o "$out/alloc.nettrace" > /dev/null
wait $load || true
cat "$out/load.txt"
dotnet "$tool" "$out/alloc.nettrace" "$type" "$size" "${FRAMES:-14}"
[ -n "${KEEP:-}" ] && cp "$out/alloc.nettrace" "$KEEP"; rm -rf "$out"
