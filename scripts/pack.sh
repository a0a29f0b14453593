#!/usr/bin/env bash
# Packs what Sluice ships as NuGet packages into ./artifacts (or the directory given):
#   Sluice.Cli       the `sluice` .NET tool   → dotnet tool install --global Sluice.Cli --add-source ./artifacts
#   Sluice.Client    the .NET client library  → dotnet add package Sluice.Client --source ./artifacts
#   Sluice.Protocol  its wire-format dependency (restored with it from the same source)
# Usage: bash scripts/pack.sh [output-dir] [extra dotnet pack args, e.g. -p:VersionSuffix=dev.1]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-artifacts}
shift || true
for project in src/Sluice.Protocol src/Sluice.Client src/Sluice.Cli; do
  dotnet pack "$project" -c Release -o "$out" -nologo -clp:NoSummary "$@"
done
ls -1 "$out"/*.nupkg
