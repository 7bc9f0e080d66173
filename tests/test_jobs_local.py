"""The local backend on a real worker pool and a real SQLite file.

The kinds here are small step counters instead of speech, so the dispatching, queueing,
cancelling, stopping and resuming run in milliseconds; the speech kinds themselves run in
tests/integration/test_jobs.py against a real server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voiceforge.breaker import CircuitBreaker
from voiceforge.db import Database
from voiceforge.errors import EngineFailure, Overloaded
from voiceforge.jobs.base import Job, JobSpec
from voiceforge.jobs.kinds import Kind, Work
from voiceforge.jobs.local import LocalBackend
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.webhooks import WebhookSender
from voiceforge.service.pool import WorkerPool


def steps(work: Work) -> dict[str, Any]:
    """Counts to params["steps"], pausing params["pause"] s per step; waits on a gate if given."""
    n = work.job.params["steps"]
    for i in range(n):
        time.sleep(work.job.params.get("pause", 0.005))
        work.report((i + 1) / n, f"step {i + 1}/{n}")
    return {
        "steps": n,
        "input": work.input("blob").read_bytes().decode() if "blob" in work.job.params else None,
    }


def broken(work: Work) -> dict[str, Any]:
    raise EngineFailure("the engine fell over")


KINDS: dict[str, Kind] = {"steps": steps, "broken": broken}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path)
    yield database
    database.close()


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(2, 4)
    yield workers
    workers.shutdown()


def backend(db: Database, pool: WorkerPool, tmp_path: Path, **options: Any) -> LocalBackend:
    store = JobStore(db)
    return LocalBackend(store, pool, KINDS, tmp_path / "inputs", WebhookSender(store, None), **options)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def until(jobs: LocalBackend, job_id: str, check: Callable[[Job], bool]) -> Job:
    while not check(job := await jobs.get(job_id)):
        await asyncio.sleep(0.01)
    return job


def spec(kind: str = "steps", **params: Any) -> JobSpec:
    return JobSpec(kind, {"steps": 3, **params}, fingerprint=str(sorted(params.items())))


async def submit(jobs: LocalBackend, s: JobSpec) -> Job:
    job, created = await jobs.submit(s, owner="k", idempotency_key=None, base_url="http://h")
    assert created
    return job


def test_jobs_run_in_order_with_progress_events(db: Database, pool: WorkerPool, tmp_path: Path) -> None:
    async def test() -> None:
        jobs = backend(db, pool, tmp_path, concurrency=1)
        await jobs.start()
        first = await submit(jobs, spec(steps=4, pause=0.02))
        second = await submit(jobs, spec(steps=2))
        seen = [j async for j in jobs.events(first.id)]
        assert seen[-1].state == "succeeded" and seen[-1].result == {"steps": 4, "input": None}
        assert [j.progress for j in seen if j.state == "running"] == sorted(
            j.progress for j in seen if j.state == "running"
        )
        assert "step 2/4" in [j.stage for j in seen]
        done = await until(jobs, second.id, lambda j: j.finished)
        assert done.started_at is not None and first.created_at <= done.started_at
        late = [j async for j in jobs.events(first.id)]
        assert [j.state for j in late] == ["succeeded"]
        assert await jobs.counts() == {"succeeded": 2}
        await jobs.stop()

    run(test)


def test_a_full_pool_keeps_jobs_queued_instead_of_refusing(db: Database, tmp_path: Path) -> None:
    small = WorkerPool(1, 1)
    gate = threading.Event()
    small.submit(gate.wait)  # the only worker is busy
    while small.busy == 0:
        time.sleep(0.001)
    small.submit(lambda: None)  # and the queue is full

    async def test() -> None:
        jobs = backend(db, small, tmp_path, concurrency=2, max_queued=3)
        await jobs.start()
        waiting = [await submit(jobs, spec()) for _ in range(3)]
        with pytest.raises(Overloaded, match="3 jobs are already waiting"):
            await submit(jobs, spec())
        await asyncio.sleep(0.2)
        assert [(await jobs.get(j.id)).state for j in waiting] == ["queued"] * 3
        gate.set()
        for job in waiting:
            assert (await until(jobs, job.id, lambda j: j.finished)).state == "succeeded"
        await jobs.stop()

    try:
        run(test)
    finally:
        gate.set()
        small.shutdown()


def test_cancel_queued_and_running(db: Database, pool: WorkerPool, tmp_path: Path) -> None:
    async def test() -> None:
        jobs = backend(db, pool, tmp_path, concurrency=1)
        await jobs.start()
        running = await submit(jobs, spec(steps=200, pause=0.01))
        queued = await submit(jobs, spec(steps=1))
        assert (await jobs.cancel(queued.id)).state == "cancelled"
        await until(jobs, running.id, lambda j: j.progress > 0)
        asked = await jobs.cancel(running.id)
        assert asked.state == "running" and asked.cancel_requested
        done = await until(jobs, running.id, lambda j: j.finished)
        assert done.state == "cancelled" and 0 < done.progress < 0.5
        assert (await jobs.get(queued.id)).started_at is None
        await jobs.stop()

    run(test)


def test_engine_failures_fail_the_job_and_reach_the_breaker(db: Database, tmp_path: Path) -> None:
    pool = WorkerPool(1, 4, CircuitBreaker(min_calls=1, failure_rate=0.5))

    async def test() -> None:
        jobs = backend(db, pool, tmp_path)
        await jobs.start()
        job = await submit(jobs, spec("broken"))
        done = await until(jobs, job.id, lambda j: j.finished)
        assert done.state == "failed" and done.error is not None
        assert (done.error.code, done.error.message) == ("engine_failure", "the engine fell over")
        await jobs.stop()

    try:
        run(test)
        assert pool.breaker.state == "open"
    finally:
        pool.shutdown()


def test_stop_requeues_a_running_job_and_start_runs_it_again(
    db: Database, pool: WorkerPool, tmp_path: Path
) -> None:
    async def test() -> None:
        jobs = backend(db, pool, tmp_path)
        await jobs.start()
        job = await submit(
            jobs, JobSpec("steps", {"steps": 100, "pause": 0.01, "blob": 1}, "x", inputs={"blob": b"hi"})
        )
        await until(jobs, job.id, lambda j: j.progress > 0)
        await jobs.stop()
        stopped = await jobs.get(job.id)
        assert stopped.state == "queued" and stopped.attempts == 0 and 0 < stopped.progress < 1

        again = backend(db, pool, tmp_path)
        await again.start()
        done = await until(again, job.id, lambda j: j.finished)
        assert (
            done.state == "succeeded" and done.attempts == 1 and done.result == {"steps": 100, "input": "hi"}
        )
        while (tmp_path / "inputs" / job.id).exists():  # inputs go once the job is done
            await asyncio.sleep(0.01)
        await again.stop()

    run(test)


def test_a_crash_left_running_job_resumes_at_start(db: Database, pool: WorkerPool, tmp_path: Path) -> None:
    store = JobStore(db)
    job, _ = store.create(
        spec(), job_id="0" * 32, owner="k", idempotency_key=None, base_url="h", max_queued=9
    )
    store.claim(job.id)  # the process died here

    async def test() -> None:
        jobs = backend(db, pool, tmp_path, max_attempts=2)
        await jobs.start()
        done = await until(jobs, job.id, lambda j: j.finished)
        assert done.state == "succeeded" and done.attempts == 2
        await jobs.stop()

    run(test)
