"""Service speed, one run: a real `voiceforge serve` on loopback against the raw engine in-process.

    python bench/service.py [--duration 10] [--connections 32] [--repeats 3]

Prints JSON:
(a) real-time factor of POST /tts (client wall time / audio seconds, every request a cache miss)
    vs. the raw engine in this process on the same texts, sequentially; their ratio (target: the
    service adds <= 5 %);
(b) time to first audio of a 2-sentence streamed POST /v1/audio/speech (target <= 400 ms on 2
    cores), beside the raw engine's first sentence;
(c) cached POST /tts requests/s, P50 and P99 under a loopback load generator (wrk when installed,
    else a small asyncio keep-alive client), and the server's CPU per request (target >= 1500 RPS
    with P99 <= 50 ms on 2 cores);
(d) the server's resident memory, now and at its peak (target <= 1.5 GB);
(e) (c) again against a second server with auth on and a `tts` key, so each request also looks up
    the key, checks its scope and rate limit (raised so that it refuses nothing) and writes an
    audit row; and its RPS over (c)'s.
Run it on an otherwise idle machine: other load on the cores shows up in every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common import Server
from voiceforge.config import Settings
from voiceforge.engines.base import SynthesisRequest, synthesize
from voiceforge.engines.kokoro import KokoroEngine

# /tts texts (the contract allows 200 characters): Chinese, English, mixed, numbers.
TEXTS = [
    "今天天气很好，我们一起去公园散步吧。",
    "The weather is lovely today, so we are going to walk in the park.",
    "今天天气很好, let's go to the park and have a picnic.",
    "2024年3月5日上午10:30，会议在北京召开，预计有120人参加。",
    "Dr. Smith paid $3.50 for a coffee at 10:30, which was 3.5% more than last week.",
    "语音合成技术让机器能够像人一样说话，它在导航、客服和有声读物中都有广泛的应用。",
]
TWO_SENTENCES = (
    "The first sentence leaves before the second is made. The second one follows while you listen."
)
CACHED_BODY = {"text": "Cached answers cost no synthesis at all.", "seed": 7}
TARGETS = {"overhead": 0.05, "ttfa_s": 0.4, "rps": 1500, "p99_ms": 50, "rss_mb": 1536}


# -- (a) RTF --------------------------------------------------------------------------------------
def rtf(server: Server, engine: KokoroEngine, repeats: int) -> dict[str, Any]:
    """Per text, the best RTF of ``repeats`` for each side; raw and service runs interleave.

    Each repeat speaks the text with its repeat number appended, on both sides, so that every
    service request misses the cache (kokoro's cache key has no seed to vary)."""
    raw: dict[str, float] = {}
    service: dict[str, float] = {}
    audio_s = 0.0
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for n in range(repeats):
            for text in TEXTS:
                variant = f"{text} {n + 1}."
                result = synthesize(engine, SynthesisRequest(text=variant))
                raw[text] = min(raw.get(text, float("inf")), result.compute_s / result.duration_s)
                time.sleep(0.1)  # onnxruntime's idle threads stop spinning before the server runs
                started = time.perf_counter()
                r = client.post("/tts", json={"text": variant})
                wall = time.perf_counter() - started
                body = r.json()
                assert r.status_code == 200 and not body["cached"], body
                service[text] = min(service.get(text, float("inf")), wall / body["duration"])
                audio_s += result.duration_s
                time.sleep(0.1)
    raw_rtf, service_rtf = sum(raw.values()) / len(raw), sum(service.values()) / len(service)
    return {
        "texts": len(TEXTS),
        "repeats": repeats,
        "audio_s": round(audio_s, 2),
        "raw_engine": {"rtf": round(raw_rtf, 4)},
        "service": {"rtf": round(service_rtf, 4)},
        "overhead": round(service_rtf / raw_rtf - 1, 4),
        "target_overhead": TARGETS["overhead"],
        "ok": service_rtf / raw_rtf - 1 <= TARGETS["overhead"],
    }


# -- (b) time to first audio ----------------------------------------------------------------------
def ttfa(server: Server, engine: KokoroEngine, runs: int = 5) -> dict[str, Any]:
    raw = []
    for i in range(runs):
        started = time.perf_counter()
        chunks = engine.stream(SynthesisRequest(text=f"{TWO_SENTENCES} ({i})"))
        next(chunks)
        raw.append(time.perf_counter() - started)
        for _ in chunks:  # the rest, outside the timing (the engine finishes its sentences anyway)
            pass
    out: dict[str, Any] = {"text": TWO_SENTENCES, "runs": runs, "raw_engine_first_sentence_s": _stats(raw)}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for fmt in ("mp3", "pcm"):
            firsts: list[float] = []
            for i in range(runs):
                body = {"model": "tts-1", "input": f"{TWO_SENTENCES} [{fmt} {i}]", "voice": "alloy"}
                body["response_format"] = fmt
                started = time.perf_counter()
                with client.stream("POST", "/v1/audio/speech", json=body) as r:
                    if r.status_code == 404:
                        return {"skipped": "POST /v1/audio/speech answers 404 (route not there yet)"}
                    if r.status_code != 200:
                        return {
                            "skipped": f"POST /v1/audio/speech answers {r.status_code}: {r.read()[:300]!r}"
                        }
                    first = None
                    for chunk in r.iter_bytes():
                        if chunk and first is None:
                            first = time.perf_counter() - started
                    assert first is not None, "no audio came back"
                    firsts.append(first)
            out[fmt] = _stats(firsts)
    out["target_s"] = TARGETS["ttfa_s"]
    out["ok"] = out["mp3"]["median"] <= TARGETS["ttfa_s"]
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


# -- (c) cached /tts under load ---------------------------------------------------------------------
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def load(
    server: Server, duration: float, connections: int, work: Path, key: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        for _ in range(2):
            r = client.post("/tts", json=CACHED_BODY)
            assert r.status_code == 200, r.text
        assert r.json()["cached"] is True, r.json()
    wrk = shutil.which("wrk")
    run = _wrk if wrk else _asyncio_load
    run(server, 2.0, connections, work, key)  # warm-up: connections, caches, the allocator
    cpu_before = server.cpu_s()
    result = run(server, duration, connections, work, key)
    cpu = server.cpu_s() - cpu_before
    result["server_cpu_us_per_request"] = round(cpu / max(1, result["requests"]) * 1e6, 1)
    result["server_cpu_cores_busy"] = round(cpu / duration, 2)
    result["target"] = {"rps": TARGETS["rps"], "p99_ms": TARGETS["p99_ms"]}
    result["ok"] = (
        result["rps"] >= TARGETS["rps"] and result["p99_ms"] <= TARGETS["p99_ms"] and result["errors"] == 0
    )
    return result


def _wrk(server: Server, duration: float, connections: int, work: Path, key: str | None) -> dict[str, Any]:
    script = work / "post.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else ""
    script.write_text(WRK_SCRIPT.format(body=json.dumps(CACHED_BODY)) + auth)
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency", "-s", str(script),
        f"{server.url}/tts",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    requests = int(_find(r"(\d+) requests in", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "generator": "wrk (1 thread)",
        "command": " ".join(command).replace(key or "\0", "<key>"),
        "connections": connections,
        "duration_s": duration,
        "requests": requests,
        "rps": round(float(_find(r"Requests/sec:\s+([\d.]+)", out)), 1),
        "p50_ms": percentiles.get("50"),
        "p99_ms": percentiles.get("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
    }


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk output without {pattern!r}:\n{text}")
    return match.group(1)


def _ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def _asyncio_load(
    server: Server, duration: float, connections: int, work: Path, key: str | None
) -> dict[str, Any]:
    """Keep-alive connections on raw sockets; the generator itself costs CPU the server then lacks."""
    host, port = server.url.removeprefix("http://").split(":")
    payload = json.dumps(CACHED_BODY).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (
        f"POST /tts HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    latencies: list[float] = []
    errors = 0

    async def connection(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.I)
            assert length is not None, head
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
        writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(connection(started + duration) for _ in range(connections)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    return {
        "generator": "python asyncio keep-alive client (wrk not installed: apt-get install wrk)",
        "command": f"asyncio, {connections} connections, {duration:.0f} s",
        "connections": connections,
        "duration_s": duration,
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "errors": errors,
    }


def load_with_auth(home: Path, duration: float, connections: int) -> dict[str, Any]:
    """(c) again with auth on and a tts key: key lookup, scope, rate limit and audit row per request.

    The tts rate limit is raised so the limiter is consulted on every request but refuses none."""
    home.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    created = subprocess.run(
        [sys.executable, "-m", "voiceforge", "keys", "create", "bench", "--scopes", "tts"],
        cwd=home, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    server = Server(home, env={"VOICEFORGE_AUTH": "on", "VOICEFORGE_RATE_LIMIT_TTS": "100000000/minute"})
    try:
        return load(server, duration, connections, home, key)
    finally:
        server.stop()


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load for (c)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections for (c)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per text for (a); the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the server's folder (logs) afterwards")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
    }
    home = Path(tempfile.mkdtemp(prefix="voiceforge-bench-"))
    engine = KokoroEngine.from_settings(Settings())
    synthesize(engine, SynthesisRequest(text="你好, hello."))  # warm, as the server does at start
    server = Server(home)
    try:
        report["server_rss_mb_at_start"] = server.rss_mb()[0]
        report["rtf"] = rtf(server, engine, args.repeats)
        report["ttfa"] = ttfa(server, engine)
        report["cached_tts"] = load(server, args.duration, args.connections, home)
        now, peak = server.rss_mb()
        report["rss"] = {"now_mb": now, "peak_mb": peak, "target_mb": TARGETS["rss_mb"]}
        report["rss"]["ok"] = peak <= TARGETS["rss_mb"]
    finally:
        server.stop()
    try:
        report["cached_tts_with_auth"] = load_with_auth(home / "auth", args.duration, args.connections)
        report["auth_over_open_rps"] = round(
            report["cached_tts_with_auth"]["rps"] / report["cached_tts"]["rps"], 3
        )
    finally:
        report["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep:
            report["server_home"] = str(home)
        else:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
