#!/usr/bin/env bash
# Set up (once) and start voiceforge on http://127.0.0.1:7860 (HOST=0.0.0.0 PORT=… to change).
# Output goes to the terminal and to logs/runtime.log.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
export HF_HUB_OFFLINE=1
exec voiceforge serve "$@"
