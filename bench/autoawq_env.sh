#!/usr/bin/env bash
# .venv-autoawq: AutoAWQ 0.2.9 beside (never inside) awqguard's environment, for bench/autoawq_reference.py.
#
# Why a separate venv: AutoAWQ 0.2.9 (its last release) needs transformers 4.51.x, while awqguard runs
# on transformers 5. autoawq goes in with --no-deps because its metadata asks for triton (a GPU-only
# compiler) and CUDA builds of torch; what it imports on CPU is listed and pinned below instead.
# datasets is only needed because awq/utils/calib_data.py imports it at module level.
# Every version is pinned: this is the set the reference run used (CPU torch 2.13.0 works). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AUTOAWQ_VENV:-.venv-autoawq}
PY=${PYTHON:-python}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

"${PIP[@]}" torch==2.13.0
"${PIP[@]}" \
  transformers==4.51.3 tokenizers==0.21.4 huggingface_hub==0.36.2 hf-xet==1.8.0 safetensors==0.8.0 \
  accelerate==1.6.0 datasets==3.5.0 zstandard==0.25.0 typing_extensions==4.16.0 \
  numpy==2.4.6 packaging==26.4 PyYAML==6.0.4 regex==2026.11.19 requests==2.34.2 tqdm==4.70.1 \
  filelock==4.3.1 fsspec==2024.12.0 psutil==7.2.2 pyarrow==26.0.1 pandas==3.1.1 dill==0.3.8 \
  multiprocess==0.70.16 xxhash==4.1.0 aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 \
  attrs==26.1.0 frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 yarl==1.25.1 \
  python-dateutil==4.0.0 tzdata==2026.6 certifi==2026.10.19.post1 charset-normalizer==3.5.3 \
  idna==3.20 urllib3==2.8.0 Jinja2==3.1.6 MarkupSafe==3.0.4 networkx==3.6.1 sympy==1.14.0 mpmath==1.3.0
"${PIP[@]}" --no-deps autoawq==0.2.9

"$VENV/bin/python" -W ignore -c 'import awq, torch, transformers; print("autoawq", awq.__version__, "| transformers", transformers.__version__, "| torch", torch.__version__)'
