#!/usr/bin/env bash
# Regenerate the committed gRPC stubs from src/voiceforge/grpc/cosyvoice.proto (needs the dev extra's
# grpcio-tools). tests/test_grpc_proto.py fails when the committed stubs differ from what this makes.
set -euo pipefail
cd "$(dirname "$0")/../src"
python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. voiceforge/grpc/cosyvoice.proto
