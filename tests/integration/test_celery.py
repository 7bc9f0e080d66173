"""The Celery backend end to end: a real redis-server, real `voiceforge worker` processes and a real
`voiceforge serve` API node, all sharing one folder (database, voices, outputs) on loopback.

Covers: jobs spread over two workers, a worker killed with SIGKILL mid-synthesis (the job completes
exactly once: one output, one webhook), Redis killed and restarted empty mid-run (nothing lost),
SIGTERM requeueing a running job, and the admin restart and live log view reaching the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import system_binary
from tests.integration.conftest import Server, free_port, launch
from tests.integration.jobs import finished, wait_for
from tests.integration.pg import postgres

pytestmark = pytest.mark.slow

SECRET = "celery-test-secret"
WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
LONG = " ".join(f"Sentence {w} is short." for w in WORDS)  # ~6 s of work: long enough to interrupt
WORKER_START_S = 90.0


# -- real services -------------------------------------------------------------------------------
@dataclass
class Redis:
    binary: str
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ran(self, job_id: str) -> bool:
        return f"[{job_id}] job started" in self.log


@dataclass
class Cluster:
    home: Path
    redis: Redis
    env: dict[str, str]
    api: Server | None = None
    workers: list[Worker] = field(default_factory=list)

    def worker(self, name: str, **env: str) -> Worker:
        """Start `voiceforge worker` and wait until Celery says it is ready."""
        return self.ready(self.spawn(name, **env))

    def spawn(self, name: str, **env: str) -> Worker:
        log_path = self.home / f"{name}.log"
        environ = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", **env}
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "voiceforge", "worker", "--hostname", name],
                cwd=self.home, env=environ, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        return worker

    def ready(self, worker: Worker) -> Worker:
        deadline = time.monotonic() + WORKER_START_S
        while f"celery@{worker.name} ready" not in worker.log:
            if worker.process.poll() is not None or time.monotonic() > deadline:
                worker.process.kill()
                raise RuntimeError(f"worker {worker.name} did not start:\n{worker.log[-3000:]}")
            time.sleep(0.2)
        return worker

    def running(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def outputs(self, job_id: str) -> list[str]:
        return sorted(p.name for p in (self.home / "outputs").glob(f"{job_id}*"))


@contextlib.contextmanager
def running_cluster(home: Path, workers: int = 2, **env: str) -> Iterator[Cluster]:
    """redis-server, ``workers`` workers and one API node sharing ``home``; all stopped after."""
    redis = Redis(system_binary("redis-server", "redis-server"), home / "redis")
    redis.start()
    env = {
        "HF_HUB_OFFLINE": "1",
        "VOICEFORGE_JOBS_BACKEND": "celery",
        "VOICEFORGE_BROKER_URL": redis.url,
        "VOICEFORGE_JOB_LEASE_S": "3",  # a killed worker's job runs again after ~3 s, not 30
        "VOICEFORGE_WEBHOOK_SECRET": SECRET,
        "VOICEFORGE_WEBHOOK_ALLOW_PRIVATE": "1",
        "VOICEFORGE_WORKER_DRAIN_S": "0",  # SIGTERM requeues at once (the finishing path: drain_s > 0)
        **env,
    }
    c = Cluster(home, redis, env)
    try:
        started = [c.spawn(f"w{i + 1}") for i in range(workers)]  # all start at once
        c.api = launch(home, env)
        for w in started:
            c.ready(w)
        yield c
    finally:
        if c.api is not None:
            c.api.stop()
        for w in c.workers:
            if w.process.poll() is None:
                w.process.terminate()
        for w in c.workers:
            try:
                w.process.wait(30)
            except subprocess.TimeoutExpired:
                w.process.kill()
        redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("celery")) as c:
        yield c


# -- helpers -------------------------------------------------------------------------------------
def client(c: Cluster) -> httpx.Client:
    assert c.api is not None
    return c.api.client(timeout=30)


def submit(h: httpx.Client, body: dict[str, Any]) -> str:
    r = h.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def running_on(c: Cluster, job_id: str, timeout: float = 60.0) -> Worker:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in c.running():
            if w.ran(job_id):
                return w
        time.sleep(0.1)
    raise AssertionError(f"no worker started job {job_id}")


class _Receiver(BaseHTTPRequestHandler):
    calls: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        self.calls.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhooks() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    calls: queue.Queue[dict[str, Any]] = queue.Queue()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"calls": calls}))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{receiver.server_address[1]}/hook", calls
    receiver.shutdown()
    receiver.server_close()


# -- tests ---------------------------------------------------------------------------------------
def test_jobs_complete_across_two_workers_and_their_logs_reach_the_api(cluster: Cluster) -> None:
    with client(cluster) as h:
        ids = [
            submit(h, {"kind": "tts", "text": f"Job number {i} is done by a worker.", "seed": i + 1})
            for i in range(4)
        ]
        for job_id in ids:
            done = wait_for(h, job_id, finished)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            audio = h.get(done["result"]["audio_url"])
            assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        by_worker = {w.name: [i for i in ids if w.ran(i)] for w in cluster.workers}
        assert all(by_worker.values()), f"one worker did all the work: {by_worker}"
        assert sum(map(len, by_worker.values())) == len(ids)  # each job ran once

        # The worker's stage lines are in the API node's live log stream.
        lines = []
        with h.stream("GET", "/admin/logs/stream", params={"task": ids[0], "backlog": 200}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:") and "line" in (data := json.loads(line[5:])):
                    lines.append(data["line"])
                    if "job succeeded" in data["line"]:
                        break
        assert any("@w1" in ln or "@w2" in ln for ln in lines), lines


def test_events_stream_progress_from_a_worker_and_a_cancel_reaches_it(cluster: Cluster) -> None:
    with client(cluster) as h:
        job_id = submit(h, {"kind": "tts", "text": f"{LONG} Take 3.", "seed": 3})
        seen: list[tuple[str, dict[str, Any]]] = []
        kind, cancelled = "", False
        with h.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    seen.append((kind, json.loads(line[5:])))
                    if kind == "progress" and seen[-1][1]["progress"] > 0 and not cancelled:
                        cancelled = h.delete(f"/v1/jobs/{job_id}").status_code == 202
        assert cancelled and seen[-1][0] == "state" and seen[-1][1]["status"] == "cancelled", seen[-1]
        assert any(k == "progress" and e["stage"].startswith("synthesising") for k, e in seen)
        assert cluster.outputs(job_id) == []  # no partial audio


def test_a_worker_killed_mid_synthesis_leaves_a_job_that_completes_exactly_once(
    cluster: Cluster, webhooks: tuple[str, queue.Queue[dict[str, Any]]]
) -> None:
    url, calls = webhooks
    with client(cluster) as h:
        job_id = submit(h, {"kind": "tts", "text": f"{LONG} Take 7.", "seed": 7, "webhook_url": url})
        wait_for(h, job_id, lambda j: j["progress"] > 0)
        victim = running_on(cluster, job_id)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        done = wait_for(h, job_id, finished)
        assert done["status"] == "succeeded" and done["attempts"] == 2, done
        survivor = next(w for w in cluster.running() if w.ran(job_id))
        assert "job succeeded" in survivor.log.split(f"[{job_id}] job started")[-1]
        assert cluster.outputs(job_id) == [f"{job_id}.wav"]
        assert calls.get(timeout=30)["status"] == "succeeded"
        time.sleep(2)
        assert calls.empty(), "the webhook was called twice"
    assert cluster.api is not None and "stopped renewing its lease" in cluster.api.log
    cluster.worker("w3")  # back to two workers


def test_redis_restarted_mid_run_loses_no_job(cluster: Cluster) -> None:
    with client(cluster) as h:
        ids = [
            submit(h, {"kind": "tts", "text": f"Before the outage, job {i}. A second sentence."})
            for i in range(3)
        ]
        wait_for(h, ids[0], lambda j: j["status"] == "running")
        cluster.redis.stop(signal.SIGKILL)  # queued messages and all, gone
        during = submit(h, {"kind": "tts", "text": "Submitted while Redis was down."})  # the row is the job
        time.sleep(1)
        cluster.redis.start()  # empty: no queues, no unacknowledged messages
        after = submit(h, {"kind": "tts", "text": "Submitted after Redis came back."})
        for job_id in [*ids, during, after]:
            done = wait_for(h, job_id, finished, timeout=150)
            assert done["status"] == "succeeded", done
            assert cluster.outputs(job_id) == [f"{job_id}.wav"]
    assert cluster.api is not None and "sent again" in cluster.api.log


def test_sigterm_requeues_the_running_job_and_another_worker_finishes_it(cluster: Cluster) -> None:
    with client(cluster) as h:
        job_id = submit(h, {"kind": "tts", "text": f"{LONG} Take 9.", "seed": 9})
        wait_for(h, job_id, lambda j: j["progress"] > 0)
        leaving = running_on(cluster, job_id)
        leaving.process.send_signal(signal.SIGTERM)
        assert leaving.process.wait(30) == 0, leaving.log[-2000:]
        assert "go back to the queue" in leaving.log and "job succeeded" not in leaving.log.split(job_id)[-1]
        done = wait_for(h, job_id, finished)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done  # the stopped run does not count
        assert any(w.ran(job_id) for w in cluster.running())
        assert cluster.outputs(job_id) == [f"{job_id}.wav"]


def test_admin_restart_reaches_the_workers(cluster: Cluster) -> None:
    with client(cluster) as h:
        r = h.post("/admin/restart", params={"wait": "true"}, timeout=120)
        assert r.status_code == 200, r.text
        stage = next(s for s in r.json()["stages"] if s["stage"] == "workers")
        alive = [w.name for w in cluster.running()]
        assert all(name in stage["detail"] for name in alive), stage
    deadline = time.monotonic() + 60
    while not all("restart done" in w.log for w in cluster.running()):
        assert time.monotonic() < deadline, "a worker did not reload its engine"
        time.sleep(0.2)


def test_postgresql_as_the_shared_database(tmp_path: Path) -> None:
    with postgres() as pg, running_cluster(tmp_path, VOICEFORGE_DATABASE_URL=pg.url) as c, client(c) as h:
        ids = [submit(h, {"kind": "tts", "text": f"Stored in PostgreSQL, job {i}."}) for i in range(4)]
        for job_id in ids:
            done = wait_for(h, job_id, finished)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert sum(w.ran(i) for w in c.workers for i in ids) == len(ids)  # each ran once
        assert not (c.home / "data" / "voiceforge.db").exists()  # nothing went to SQLite


def test_sigterm_with_a_drain_period_lets_the_running_job_finish(cluster: Cluster) -> None:
    for w in cluster.running():  # the last test of the module: only the draining worker is left
        w.process.send_signal(signal.SIGTERM)
        w.process.wait(30)
    patient = cluster.worker("w9", VOICEFORGE_WORKER_DRAIN_S="120")
    with client(cluster) as h:
        job_id = submit(h, {"kind": "tts", "text": f"{LONG} Take 21.", "seed": 21})
        wait_for(h, job_id, lambda j: j["progress"] > 0)
        patient.process.send_signal(signal.SIGTERM)
        done = wait_for(h, job_id, finished)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert patient.process.wait(30) == 0
        assert "1 running jobs get 120 s to finish" in patient.log
        assert "go back to the queue" not in patient.log
