#!/usr/bin/env bash
# Set up with test extras, then lint and run the test suite. Extra arguments go to pytest.
# Tests run in parallel, one pytest-xdist worker per CPU (GANTRACK_TEST_WORKERS=N sets N, 0 none),
# longest-waiting work stolen first; the slowest tests are listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest -n "${GANTRACK_TEST_WORKERS:-auto}" \
  --dist worksteal --durations=15 "$@"
