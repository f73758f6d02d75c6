#!/usr/bin/env bash
# Run the linter and the test suite, after setting up the virtual environment if needed.
#
#   bash scripts/test.sh [PYTEST_ARGS...]
#
# scripts/setup.sh creates the environment (VENV, default .venv) and installs the package with
# its test extras on first use; TORCH_SPEC chooses the torch build, as described there.
# ruff runs when it is installed. The exit status is non-zero when ruff or pytest fails, and
# also when pytest collects no tests (its exit status 5).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
bash scripts/setup.sh test
python="$venv/bin/python"

lint_status=0
if "$python" -m ruff --version >/dev/null 2>&1; then
  "$python" -m ruff check nmt training service tests || lint_status=$?
else
  echo "test.sh: ruff is not installed in $venv; skipping the lint check" >&2
fi

test_status=0
"$python" -m pytest -q "$@" || test_status=$?
if [ "$test_status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
if [ "$lint_status" -ne 0 ]; then
  echo "test.sh: ruff check failed (exit status $lint_status)" >&2
  [ "$test_status" -ne 0 ] || exit "$lint_status"
fi
exit "$test_status"
