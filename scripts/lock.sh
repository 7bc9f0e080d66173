#!/usr/bin/env bash
# Refresh requirements.lock: the newest releases that pyproject.toml's ranges admit, pinned with
# hashes (pip-tools), then run the whole suite on them. `bash scripts/lock.sh fast` runs the fast
# tier instead; commit the lock only when the suite passes.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet "pip-tools==7.7.0"
"$tools/bin/pip-compile" --quiet --upgrade --generate-hashes --allow-unsafe --all-build-deps \
  --extra dev --extra learn --strip-extras --no-emit-index-url --no-emit-find-links \
  --constraint scripts/lock-constraints.txt --output-file requirements.lock pyproject.toml
bash test.sh "$@"
