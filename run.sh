#!/usr/bin/env bash
# Set up (once) and start voiceforge. Until the HTTP service lands this checks the install and
# speaks a demo sentence into outputs/demo.wav.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv ""

voiceforge doctor
mkdir -p outputs
voiceforge say "今天天气很好, let's go to the park." -o outputs/demo.wav
echo "demo written to outputs/demo.wav"
