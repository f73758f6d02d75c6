#!/usr/bin/env bash
# Set up the virtual environment if needed, then serve the released model on 127.0.0.1:8000.
# Extra arguments go to `nmt serve` (e.g. --host 0.0.0.0 --port 8080 --model DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/nmt" serve "$@"
