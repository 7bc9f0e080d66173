"""Soak: mixed traffic at and beyond saturation against a real `voiceforge serve` on loopback.

    python bench/soak.py [--minutes 5] [--concurrency 16] [--sample-s 5]

Traffic (weights in MIX): cached and uncached POST /tts, streamed POST /v1/audio/speech, resumable
uploads (create, PUT, complete), POST /v1/jobs then polling to the end, transcriptions. Every
loop is bounded by the deadline and the run stops by itself; only 127.0.0.1 is contacted.

Prints JSON: requests served per operation, latency P50/P95/P99, the 503/429 share, non-503 5xx
(target 0), jobs lost or duplicated (target 0: each job is sent with an Idempotency-Key and
re-sent with the same key after a 503; jobs still queued when the settle window closes are
counted apart as unfinished), the server's RSS and open file descriptors sampled over time with
their growth from the second minute to the last (target: none), and temporary files left behind
once the traffic stops (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from common import Server

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
CLIP = "en_ljspeech_LJ001-0002_short.wav"  # 2 s: short enough to keep transcription cheap
TEXTS = [
    "今天天气很好，我们一起去公园散步吧。",
    "The weather is lovely today, so we are going to walk in the park.",
    "今天天气很好, let's go to the park.",
]
MIX = {
    "tts_cached": 40,
    "tts": 15,
    "speech_stream": 10,
    "upload": 10,
    "job": 10,
    "transcribe": 5,
    "health": 10,
}
TEMP_SUFFIXES = (".tmp", ".part")


class Soak:
    def __init__(self, server: Server, deadline: float, clip: bytes) -> None:
        self.server = server
        self.deadline = deadline
        self.clip = clip
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter[int]] = defaultdict(Counter)
        self.jobs: dict[str, set[str]] = {}  # idempotency key -> job ids the server answered with
        self.seed = 10_000

    async def worker(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        ops, weights = zip(*MIX.items(), strict=True)
        while time.monotonic() < self.deadline:
            op = rng.choices(ops, weights)[0]
            started = time.perf_counter()
            try:
                code = await getattr(self, op)(client, rng)
            except httpx.TransportError:
                code = 0  # counted: the server dropped or refused the connection
            self.latency[op].append(time.perf_counter() - started)
            self.status[op][code] += 1
            if code in (429, 503):
                await asyncio.sleep(0.2)  # what a client does with Retry-After, shortened

    async def tts_cached(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        r = await client.post("/tts", json={"text": rng.choice(TEXTS), "seed": 1})
        return r.status_code

    async def tts(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        self.seed += 1  # a new number each time: a cache miss (kokoro's cache key has no seed)
        r = await client.post("/tts", json={"text": f"{rng.choice(TEXTS)} {self.seed}."})
        return r.status_code

    async def speech_stream(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        body = {"model": "tts-1", "input": rng.choice(TEXTS), "voice": "alloy", "response_format": "pcm"}
        async with client.stream("POST", "/v1/audio/speech", json=body) as r:
            async for _ in r.aiter_bytes():
                pass
            return r.status_code

    async def upload(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        digest = hashlib.sha256(self.clip).hexdigest()
        r = await client.post("/v1/uploads", json={"size": len(self.clip), "sha256": digest})
        if r.status_code != 201:
            return r.status_code
        upload_id = r.json()["upload_id"]
        half = len(self.clip) // 2
        for start, part in ((0, self.clip[:half]), (half, self.clip[half:])):
            end = start + len(part) - 1
            headers = {"Content-Range": f"bytes {start}-{end}/{len(self.clip)}"}
            r = await client.put(f"/v1/uploads/{upload_id}", content=part, headers=headers)
            if r.status_code != 200:
                return r.status_code
        r = await client.post(f"/v1/uploads/{upload_id}/complete")
        await client.delete(f"/v1/uploads/{upload_id}")
        return r.status_code

    async def job(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        key = uuid.uuid4().hex
        self.jobs[key] = set()
        body = {"kind": "tts", "text": f"{rng.choice(TEXTS)} {rng.randint(1, 10**8)}."}
        while time.monotonic() < self.deadline:
            r = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            if r.status_code != 503:
                break
            await asyncio.sleep(0.5)
        if r.status_code == 202:
            self.jobs[key].add(r.json()["id"])
        return r.status_code

    async def transcribe(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        files = {"file": ("clip.wav", self.clip, "audio/wav")}
        r = await client.post("/v1/audio/transcriptions", files=files, data={"model": "whisper-1"})
        return r.status_code

    async def health(self, client: httpx.AsyncClient, rng: random.Random) -> int:
        return (await client.get("/readyz")).status_code

    async def settle_jobs(self, client: httpx.AsyncClient, limit_s: float) -> dict[str, int]:
        """Wait (bounded) for every accepted job to end; count lost and duplicated ones."""
        ids = {job_id for found in self.jobs.values() for job_id in found}
        states: dict[str, str] = {}
        give_up = time.monotonic() + limit_s
        ended = ("succeeded", "failed", "cancelled")
        while True:
            for job_id in sorted(i for i in ids if states.get(i) not in ended):
                r = await client.get(f"/v1/jobs/{job_id}")
                states[job_id] = r.json()["status"] if r.status_code == 200 else f"http {r.status_code}"
            if all(states[i] in ended for i in ids) or time.monotonic() >= give_up:
                break
            await asyncio.sleep(1.0)
        return {
            "accepted": len(ids),
            "succeeded": sum(s == "succeeded" for s in states.values()),
            "failed": sum(s == "failed" for s in states.values()),
            # Still queued or running when the window closed: slow, not lost (the server has them).
            "unfinished": sum(s in ("queued", "running") for s in states.values()),
            "lost": sum(s.startswith("http") for s in states.values()),  # the server lost the job
            "duplicated": sum(len(found) > 1 for found in self.jobs.values()),
        }


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50_ms": round(1000 * values[0], 1)} if values else {}
    q = statistics.quantiles(values, n=100)
    return {f"p{p}_ms": round(1000 * q[p - 1], 1) for p in (50, 95, 99)}


def temp_files(home: Path) -> list[str]:
    return [
        str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.name.endswith(TEMP_SUFFIXES)
    ]


async def sample(server: Server, every_s: float, deadline: float, out: list[dict[str, float]]) -> None:
    started = time.monotonic()
    while time.monotonic() < deadline:
        rss, _ = server.rss_mb()
        out.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": rss, "fds": server.ps.num_fds()})
        await asyncio.sleep(every_s)


def growth(samples: list[dict[str, float]], key: str, window_s: float = 60.0) -> float:
    """Mean over the last minute minus mean over the second (the first is warm-up: caches fill)."""
    end = samples[-1]["t_s"] if samples else 0.0
    first = [s[key] for s in samples if window_s <= s["t_s"] <= 2 * window_s]
    last = [s[key] for s in samples if s["t_s"] >= end - window_s]
    return round(statistics.fmean(last) - statistics.fmean(first), 1) if first and last else 0.0


async def run(
    server: Server, minutes: float, concurrency: int, sample_s: float, clip: bytes
) -> dict[str, Any]:
    deadline = time.monotonic() + minutes * 60
    soak = Soak(server, deadline, clip)
    samples: list[dict[str, float]] = []
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=server.url, timeout=180, limits=limits) as client:
        await client.post("/tts", json={"text": TEXTS[0], "seed": 1})  # the cached answers exist
        sampler = asyncio.create_task(sample(server, sample_s, deadline, samples))
        await asyncio.gather(*(soak.worker(client, random.Random(i)) for i in range(concurrency)))
        await sampler
        jobs = await soak.settle_jobs(client, limit_s=180)
    await asyncio.sleep(2)  # in-flight cleanup (spooled bodies) finishes
    total = sum(sum(c.values()) for c in soak.status.values())
    codes: Counter[int] = Counter()
    for c in soak.status.values():
        codes.update(c)
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "requests": total,
        "per_second": round(total / (minutes * 60), 1),
        "by_operation": {
            op: {"count": sum(soak.status[op].values()), "status": dict(soak.status[op]), **percentiles(lat)}
            for op, lat in sorted(soak.latency.items())
        },
        "share_503": round(codes[503] / total, 4) if total else 0.0,
        "share_429": round(codes[429] / total, 4) if total else 0.0,
        "server_errors_not_503": sum(n for code, n in codes.items() if code >= 500 and code != 503),
        "connection_failures": codes[0],
        "jobs": jobs,
        "rss_mb": {
            "first": samples[0]["rss_mb"],
            "last": samples[-1]["rss_mb"],
            "growth": growth(samples, "rss_mb"),
        },
        "open_fds": {
            "first": samples[0]["fds"],
            "last": samples[-1]["fds"],
            "growth": growth(samples, "fds"),
        },
        "temp_files_left": temp_files(server.home),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="clients at once (beyond saturation)")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--audio", type=Path, default=SHARED_AUDIO)
    args = parser.parse_args()
    clip = (args.audio / CLIP).read_bytes()
    with tempfile.TemporaryDirectory(prefix="voiceforge-soak-") as tmp:
        # Limits as a busy deployment would set them; the soak measures queueing, not the limiter.
        server = Server(Path(tmp), env={"VOICEFORGE_RATE_LIMITS": "off", "VOICEFORGE_MAX_QUEUE": "32"})
        try:
            result = asyncio.run(run(server, args.minutes, args.concurrency, args.sample_s, clip))
        finally:
            server.stop()
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
