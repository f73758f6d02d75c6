#!/usr/bin/env bash
# Create the virtual environment and install the package into it, once.
# Usage: bash scripts/setup.sh [EXTRAS]   (EXTRAS e.g. "test"; default: none)
# Environment: VENV (default .venv), TORCH_SPEC (pip arguments for torch, default torch==2.13.0,
# whose CPU build some machines keep as a local wheel; elsewhere e.g.
# "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu").
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
extras=${1:-}
stamp="$venv/.installed${extras:+-$extras}"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # TORCH_SPEC holds several pip arguments
"$venv/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
"$venv/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
touch "$stamp"
