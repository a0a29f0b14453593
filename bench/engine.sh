#!/usr/bin/env bash
# Sluice's engine against llama.cpp (node-llama-cpp 3.22.1 from npm, installed by scripts/test-llama-ref.sh) on
# random-weight GGUF files of real shapes, single stream, interleaved run by run (bench/Sluice.EngineBench).
# The model files are written once into .bench-cache/models (Qwen2.5-0.5B-like 0.25–0.75 GiB, TinyLlama-1.1B-like
# 0.6–2.1 GiB); each thread count writes <out>-t<N>.md (the table), .json (every run) and .log, where <out> is
# $SLUICE_ENGINE_OUT (default .bench-cache/engine).
# Usage: bash bench/engine.sh [--threads "1 2"] [other Sluice.EngineBench options, e.g. --reps 3 --shapes qwen --types Q8_0,F16,
#        --no-mmap to read the files into memory in both engines]
set -euo pipefail
cd "$(dirname "$0")/.."

threads="1 2"
if [ "${1:-}" = "--threads" ]; then
  threads="$2"
  shift 2
fi

# shellcheck source=scripts/test-llama-ref.sh
. scripts/test-llama-ref.sh
sluice_llama_ref_ensure

dotnet build bench/Sluice.EngineBench -c Release -nologo -clp:NoSummary -v quiet
out="${SLUICE_ENGINE_OUT:-.bench-cache/engine}"
mkdir -p "$(dirname "$out")"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; avx512f: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no), avx_vnni: $(grep -q avx_vnni /proc/cpuinfo && echo yes || echo no)"
for t in $threads; do
  # One thread: both engines on the same core (the last, or $SLUICE_ENGINE_CPU). On a shared virtual machine the two
  # vCPUs ran the same process 20-30 % apart for minutes at a time; unpinned, the engine and llama.cpp (separate
  # processes) could each land on either and the ratio measured the cores.
  pin=()
  if [ "$t" = 1 ] && command -v taskset >/dev/null 2>&1; then
    cpu="${SLUICE_ENGINE_CPU:-$(($(nproc) - 1))}"
    pin=(taskset -c "$cpu")
    echo "pinned to CPU $cpu (SLUICE_ENGINE_CPU to choose another)"
  fi
  # Scheduler streams are a different question (1 skips them); one stream here, as llama-bench measures.
  "${pin[@]}" dotnet bench/Sluice.EngineBench/bin/Release/net10.0/Sluice.EngineBench.dll --threads "$t" --streams 1 \
    --json "$out-t$t.json" "$@" | tee "$out-t$t.log"
  # The table is what follows the last "load average at end" line.
  sed -n '/^load average at end/,$p' "$out-t$t.log" | tail -n +3 | grep -v '^wrote ' > "$out-t$t.md"
done
