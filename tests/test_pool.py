"""WorkerPool with plain callables: results, errors, backpressure, timeouts, pause/resume, shutdown.

Blocking tasks wait on threading.Events the test controls, so nothing depends on timing luck.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from voiceforge.breaker import CircuitBreaker
from voiceforge.errors import EngineFailure, EngineUnavailable, InvalidInput, Overloaded, Timeout
from voiceforge.logs import trace_id
from voiceforge.service.pool import WorkerPool

WAIT = 10.0  # upper bound for anything that should happen at once


@pytest.fixture
def make_pool() -> Iterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(workers: int = 1, max_queue: int = 4, breaker: CircuitBreaker | None = None) -> WorkerPool:
        pool = WorkerPool(workers, max_queue, breaker)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(timeout=2)


def blocker(pool: WorkerPool) -> tuple[threading.Event, concurrent.futures.Future[str]]:
    """Occupy a worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def task() -> str:
        started.set()
        release.wait(WAIT)
        return "blocker done"

    future = pool.submit(task)
    assert started.wait(WAIT)
    return release, future


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_run_returns_the_result_from_a_worker_thread(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=2)

    async def main() -> tuple[str, str]:
        loop_thread = threading.current_thread().name
        result = await pool.run(lambda: threading.current_thread().name)
        return loop_thread, result

    loop_thread, worker = asyncio.run(main())
    assert worker.startswith("engine-") and worker != loop_thread


def test_the_callers_context_travels_to_the_worker(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool()

    async def main() -> str:
        trace_id.set("trace-42")
        return await pool.run(trace_id.get)

    assert asyncio.run(main()) == "trace-42"


def test_a_bug_becomes_engine_failure_with_its_cause_and_counts(make_pool: Callable[..., WorkerPool]) -> None:
    breaker = CircuitBreaker(min_calls=1, failure_rate=0.5)
    pool = make_pool(breaker=breaker)

    def broken() -> None:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(EngineFailure) as failed:
        asyncio.run(pool.run(broken))
    assert "ZeroDivisionError: division by zero" in failed.value.message
    assert isinstance(failed.value.__cause__, ZeroDivisionError)
    assert breaker.state == "open"


def test_the_callers_mistake_passes_through_and_is_not_an_engine_failure(
    make_pool: Callable[..., WorkerPool],
) -> None:
    breaker = CircuitBreaker(min_calls=1, failure_rate=0.5)
    pool = make_pool(breaker=breaker)

    def bad_input() -> None:
        raise InvalidInput("speed 9 is out of range")

    for _ in range(3):
        with pytest.raises(InvalidInput, match="speed 9"):
            asyncio.run(pool.run(bad_input))
    assert breaker.state == "closed"


def test_open_breaker_refuses_at_submit_unless_bypassed(make_pool: Callable[..., WorkerPool]) -> None:
    breaker = CircuitBreaker(min_calls=1, failure_rate=0.5, open_s=60)
    pool = make_pool(breaker=breaker)
    breaker.record(failed=True)
    ran: list[int] = []
    with pytest.raises(EngineUnavailable) as refused:
        pool.submit(lambda: ran.append(1))
    assert refused.value.retry_after >= 1
    assert pool.submit(lambda: ran.append(2), breaker=False).result(WAIT) is None
    assert ran == [2]


def test_full_queue_is_overloaded_at_once(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1, max_queue=2)
    release, first = blocker(pool)
    queued = [pool.submit(lambda i=i: i) for i in range(2)]
    assert pool.depth == 2 and pool.busy == 1 and pool.saturated
    started = time.perf_counter()
    with pytest.raises(Overloaded) as busy:
        pool.submit(lambda: -1)
    assert time.perf_counter() - started < 0.1
    assert busy.value.retry_after >= 1 and "2 requests waiting" in busy.value.message
    release.set()
    assert first.result(WAIT) == "blocker done"
    assert [f.result(WAIT) for f in queued] == [0, 1]
    wait_until(lambda: pool.busy == 0)
    assert pool.depth == 0


def test_timeout_of_a_queued_task_cancels_it(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1)
    release, _first = blocker(pool)
    ran = threading.Event()
    with pytest.raises(Timeout) as late:
        asyncio.run(pool.run(ran.set, timeout=0.05))
    assert "longer than" in late.value.message and "keeps running" not in late.value.message
    release.set()
    wait_until(lambda: pool.busy == 0 and pool.depth == 0)
    assert not ran.is_set()


def test_timeout_of_a_running_task_says_it_keeps_running(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1)
    release, finished = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(WAIT)
        finished.set()

    async def main() -> None:
        future = asyncio.ensure_future(pool.run(slow, timeout=0.3))
        await asyncio.to_thread(wait_until, lambda: pool.busy == 1)
        await future

    with pytest.raises(Timeout, match="keeps running"):
        asyncio.run(main())
    release.set()
    assert finished.wait(WAIT)


def test_pause_lets_running_work_finish_and_keeps_queued_work(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1)
    release, first = blocker(pool)
    order: list[str] = []
    queued = [pool.submit(lambda i=i: order.append(f"queued {i}")) for i in range(3)]
    paused: list[bool] = []
    pausing = threading.Thread(target=lambda: paused.append(pool.pause(timeout=WAIT)))
    pausing.start()
    time.sleep(0.05)
    assert pausing.is_alive(), "pause() must wait for the running task"
    release.set()
    pausing.join(WAIT)
    assert paused == [True] and first.result(WAIT) == "blocker done"
    assert pool.paused and pool.busy == 0
    time.sleep(0.1)
    assert order == [] and not any(f.done() for f in queued), "nothing runs while paused"
    pool.resume()
    for f in queued:
        f.result(WAIT)
    assert order == ["queued 0", "queued 1", "queued 2"]


def test_pause_times_out_while_a_task_is_stuck(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1)
    release, _first = blocker(pool)
    assert pool.pause(timeout=0.05) is False
    release.set()
    pool.resume()


def test_shutdown_fails_queued_work_and_stops(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(workers=1)
    release, first = blocker(pool)
    queued = pool.submit(lambda: "never")
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    wait_until(queued.done)
    with pytest.raises(Overloaded, match="shutting down"):
        queued.result()
    release.set()
    stopper.join(WAIT)
    assert first.result(WAIT) == "blocker done"
    assert not stopper.is_alive()
