"""Scale-out, one run: job throughput with 1 and 2 `voiceforge worker` processes, and enqueue cost.

    python bench/scale.py [--jobs 12] [--threads 1]

Starts a real redis-server on a free loopback port, a `voiceforge serve` API node configured for
the Celery backend and, in turn, 1 and 2 workers (each with ``--threads`` onnxruntime threads and
one job at a time). Prints JSON:
(a) throughput: ``--jobs`` short tts jobs (distinct texts, so no cache hits) submitted over HTTP at
    once, jobs/s from the first submit to the last success, per worker count, and the speed-up;
(b) the same jobs on the best single-node configuration: one `voiceforge serve` with its local
    job backend and default threads (no Redis, no workers), and 2 workers' throughput over it —
    the figure that says whether scale-out pays on this machine, beside (a)'s 2-vs-1 worker;
(c) enqueue overhead per job: POST /v1/jobs latency against the API node (mean, P50, P99), and
    in this process the backend's submit (job row + broker publish) and the publish alone.
Run it on an otherwise idle machine: with 2 cores, 2 workers can at best double 1 worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
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
from voiceforge.db import Database
from voiceforge.jobs import webhook_sender
from voiceforge.jobs.base import JobSpec
from voiceforge.jobs.celery_backend import TASK, CeleryBackend, queue_name
from voiceforge.jobs.store import JobStore

SENTENCES = [
    "The quick brown fox jumps over the lazy dog number {i}.",
    "Workers share the queue and take job {i} as soon as they are free.",
    "今天是第{i}个任务，语音合成正在后台运行。",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found; install it with: apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_worker(home: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = home / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voiceforge", "worker", "--hostname", name],
            cwd=home, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while f"celery@{name} ready" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return process


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def throughput(server: Server, n: int, run: int) -> dict[str, Any]:
    """Submit ``n`` jobs at once; jobs/s until the last one succeeded."""
    texts = [SENTENCES[i % len(SENTENCES)].format(i=f"{run}-{i}") for i in range(n)]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        started = time.perf_counter()
        ids = []
        for text in texts:
            r = c.post("/v1/jobs", json={"kind": "tts", "text": text})
            r.raise_for_status()
            ids.append(r.json()["id"])
        pending, audio_s = set(ids), 0.0
        while pending:
            time.sleep(0.05)
            for job_id in list(pending):
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["status"] == "succeeded":
                    pending.discard(job_id)
                    audio_s += job["result"]["duration"]
                elif job["status"] in ("failed", "cancelled"):
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
        elapsed = time.perf_counter() - started
    return {
        "jobs": n,
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(n / elapsed, 3),
        "audio_s_per_s": round(audio_s / elapsed, 3),
    }


def post_latency(server: Server, n: int) -> dict[str, float]:
    """POST /v1/jobs round trips on a keep-alive connection (the jobs run afterwards)."""
    times = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for i in range(n):
            started = time.perf_counter()
            c.post("/v1/jobs", json={"kind": "tts", "text": f"Latency probe {i}."}).raise_for_status()
            times.append(time.perf_counter() - started)
    return _summary(times)


def in_process_enqueue(home: Path, redis_url: str, n: int) -> dict[str, Any]:
    """The backend's submit (row + publish) and the publish alone, on a broker nobody consumes."""
    settings = Settings(
        data_dir=home / "enqueue", jobs_backend="celery", broker_url=redis_url.replace("/0", "/1")
    )
    db = Database(settings.data_dir)
    store = JobStore(db)
    backend = CeleryBackend(
        settings, store, settings.data_dir / "job_inputs", webhook_sender(settings, store)
    )

    async def submit_all() -> list[float]:
        times = []
        for i in range(n):
            spec = JobSpec(kind="tts", params={"text": f"enqueue {i}"}, fingerprint=f"{i:064x}")
            started = time.perf_counter()
            await backend.submit(spec, owner="bench", idempotency_key=None, base_url="http://x")
            times.append(time.perf_counter() - started)
        return times

    submit = asyncio.run(submit_all())
    publish = []
    for i in range(n):
        started = time.perf_counter()
        backend.app.send_task(TASK, args=[f"{i:032x}"], queue=queue_name("kokoro"))
        publish.append(time.perf_counter() - started)
    backend.app.close()
    db.close()
    return {"submit_ms": _summary(submit), "publish_ms": _summary(publish)}


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "mean": round(statistics.fmean(ms), 2),
        "p50": round(ms[len(ms) // 2], 2),
        "p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
    }


def single_node(home: Path, jobs: int) -> dict[str, Any]:
    """One API node running its own jobs (local backend, default threads): the baseline to beat."""
    home.mkdir(parents=True)
    env = {"HF_HUB_OFFLINE": "1", "VOICEFORGE_RATE_LIMITS": "off", "VOICEFORGE_MAX_QUEUED_JOBS": "10000"}
    server = Server(home, env)
    try:
        throughput(server, 2, run=-3)  # warm-up, as for the workers
        return {"threads": "default", **throughput(server, jobs, run=3)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12, help="jobs per throughput run")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker")
    parser.add_argument("--probes", type=int, default=50, help="enqueue measurements")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="voiceforge-scale-"))
    redis = Redis(home)
    env = {
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "VOICEFORGE_JOBS_BACKEND": "celery",
        "VOICEFORGE_BROKER_URL": redis.url,
        "VOICEFORGE_THREADS": str(args.threads),
        "VOICEFORGE_RATE_LIMITS": "off",
        "VOICEFORGE_MAX_QUEUED_JOBS": "10000",
    }
    server: Server | None = None
    report: dict[str, Any] = {"cores": os.cpu_count(), "threads_per_worker": args.threads}
    try:
        server = Server(home, env)
        for workers in (1, 2):
            started = [start_worker(home, env, f"bench{workers}-{i}") for i in range(workers)]
            try:
                throughput(server, 2, run=-workers)  # warm-up: first jobs pay for lazy loads
                report[f"workers_{workers}"] = throughput(server, args.jobs, run=workers)
            finally:
                stop(started)
        one, two = report["workers_1"]["jobs_per_s"], report["workers_2"]["jobs_per_s"]
        report["speedup_2_vs_1"] = round(two / one, 2)
        report["single_node"] = single_node(home / "single", args.jobs)
        report["speedup_2_workers_vs_single_node"] = round(two / report["single_node"]["jobs_per_s"], 2)
        report["enqueue_http_ms"] = post_latency(server, args.probes)
        report["enqueue_in_process"] = in_process_enqueue(home, redis.url, args.probes)
    finally:
        if server is not None:
            server.stop()
        redis.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
