#!/usr/bin/env bash
# Rewrites constraints.txt from a fresh virtual environment holding the newest releases that
# pyproject.toml allows. Run the tests in that environment before committing the new lock:
#   bash scripts/lock.sh && .venv-lock/bin/python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-lock
rm -rf "$venv" && python3 -m venv "$venv"
PYTHON="$venv/bin/python" bash scripts/install.sh --newest --served
head -n 4 constraints.txt | grep '^#' > constraints.new || true
"$venv/bin/python" -m pip freeze --exclude-editable | grep -v -e '^torch==' -e '^#' | sed 's/+cpu$//' >> constraints.new
mv constraints.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
