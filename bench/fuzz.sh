#!/usr/bin/env bash
# Runs the gateway fuzzer (tests/Sluice.Fuzz.Tests) with any number of cases, without the sluice CLI.
#
#   bash bench/fuzz.sh                      # the default run of the test suite: 2400 cases, seed 20261205
#   bash bench/fuzz.sh --cases 20000        # more cases from the same seed (the first 2400 are the default run's)
#   bash bench/fuzz.sh --seed 7 --cases 5000
#   bash bench/fuzz.sh --seed S --case N    # one case again, as printed by a failure ("reproduce: …")
#
# Every case is checked: no 5xx, every error body JSON in the endpoint's dialect, nothing stored for a refused
# request, the gateway healthy every 250 cases and at the end. The summary (statuses, per endpoint) is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=""; seed=""; one=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) cases="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --case) one="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown option '$1' (use --cases N, --seed S, --case N)" >&2; exit 2 ;;
  esac
done

export SLUICE_FUZZ_CASES="${cases:-2400}"
[ -n "$seed" ] && export SLUICE_FUZZ_SEED="$seed"
[ -n "$one" ] && export SLUICE_FUZZ_CASE="$one"

dotnet build tests/Sluice.Fuzz.Tests -c Release -nologo -clp:NoSummary -v quiet
dotnet test tests/Sluice.Fuzz.Tests -c Release --no-build -nologo \
  --filter "FullyQualifiedName~Malformed_and_hostile_requests" \
  --logger "console;verbosity=detailed" 2>&1 \
  | grep -E "^\s+(fuzz:|statuses:|5xx:|per endpoint:|case [0-9]+ |    )|Passed!|Failed!|Total tests|Passed:|Failed:" \
  | sed -e 's/^[[:space:]]*//'
