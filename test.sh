#!/usr/bin/env bash
# The test command (README, CI): lint, types, then the test suite.
#   bash test.sh            everything (the real model, subprocesses; ~minutes)
#   bash test.sh fast       only the fast tier (seconds)
#   bash test.sh -- ARGS    pass ARGS to pytest
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0

markers=()
if [ "${1:-}" = "fast" ]; then
  markers=(-m "not slow"); shift
fi
[ "${1:-}" = "--" ] && shift

ruff check src tests bench
ruff format --check src tests bench
mypy
pytest "${markers[@]}" "$@"
