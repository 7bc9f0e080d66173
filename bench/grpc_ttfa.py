"""Time to first audio over CosyVoice's gRPC protocol vs. HTTP streaming, on one real server.

One ``voiceforge serve --grpc-port`` subprocess; the same two-sentence text (made unique per run so
nothing is cached) is asked for in turns as ``sft_request`` over gRPC (the committed stubs) and as a
streamed ``POST /v1/audio/speech`` with ``response_format: pcm``. Each run records the time from
sending to the first audio bytes and to the end of the audio; the runs alternate so both sides see
the same machine load. Prints JSON.

    python bench/grpc_ttfa.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx

from common import Server
from voiceforge.grpc import cosyvoice_pb2 as pb
from voiceforge.grpc import cosyvoice_pb2_grpc as pb_grpc

TEXT = "The first sentence leaves before the second is made. The second one follows while you listen."
VOICE = "jf_gongitsune"


def _grpc_run(stub: Any, text: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, size = None, 0
    request = pb.Request(sft_request=pb.sftRequest(spk_id=VOICE, tts_text=text))
    for response in stub.Inference(request, timeout=300):
        if response.tts_audio and first is None:
            first = time.perf_counter() - started
        size += len(response.tts_audio)
    assert first is not None, "no audio came back over gRPC"
    return first, time.perf_counter() - started, size


def _http_run(client: httpx.Client, text: str) -> tuple[float, float, int]:
    body = {"model": "tts-1", "input": text, "voice": VOICE, "response_format": "pcm"}
    started = time.perf_counter()
    first, size = None, 0
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    assert first is not None, "no audio came back over HTTP"
    return first, time.perf_counter() - started, size


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="requests per protocol")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "text": TEXT,
        "runs": args.runs,
    }
    home = Path(tempfile.mkdtemp(prefix="voiceforge-bench-grpc-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server(home, {"VOICEFORGE_UI": "0", "VOICEFORGE_GRPC_PORT": str(port)})
    times: dict[str, dict[str, list[float]]] = {p: {"first": [], "total": []} for p in ("grpc", "http")}
    sizes: dict[str, int] = {}
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            httpx.Client(base_url=server.url, timeout=300) as client,
        ):
            stub = pb_grpc.CosyVoiceStub(channel)
            _grpc_run(stub, "Warm up.")  # the channel's connection, outside the timing
            for i in range(args.runs):
                for protocol in ("grpc", "http") if i % 2 == 0 else ("http", "grpc"):
                    text = f"{TEXT} ({protocol} {i})"
                    run = _grpc_run(stub, text) if protocol == "grpc" else _http_run(client, text)
                    times[protocol]["first"].append(run[0])
                    times[protocol]["total"].append(run[1])
                    sizes[protocol] = run[2]
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    for protocol, measured in times.items():
        report[protocol] = {
            "first_audio_s": _stats(measured["first"]),
            "all_audio_s": _stats(measured["total"]),
            "pcm_bytes_last_run": sizes.get(protocol, 0),
        }
    report["grpc_minus_http_first_audio_median_s"] = round(
        report["grpc"]["first_audio_s"]["median"] - report["http"]["first_audio_s"]["median"], 4
    )
    report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
