"""PoolStream: engine-thread iterators handed to async code item by item, cancellable, bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from voiceforge.errors import EngineFailure, InvalidInput, Overloaded, Timeout
from voiceforge.service.pool import WorkerPool
from voiceforge.service.streaming import BUFFERED, PoolStream

T = TypeVar("T")


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(workers=1, max_queue=1)
    yield p
    p.shutdown()


def run(coro_fn: Callable[[], object]) -> object:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def occupy(pool: WorkerPool) -> threading.Event:
    """Keep the pool's one worker busy until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    assert started.wait(5)
    return release


def test_each_item_arrives_while_the_producer_is_still_working(pool: WorkerPool) -> None:
    release = threading.Event()

    def produce(cancelled: threading.Event) -> Iterator[int]:
        yield 1
        assert release.wait(5)  # the reader must have item 1 before item 2 is even started
        yield 2

    async def main() -> list[int]:
        stream = PoolStream(pool, produce)
        got = [await stream.next(5)]
        release.set()
        got += [item async for item in stream]
        assert stream.finished
        return got

    assert run(main) == [1, 2]


def test_producer_errors_reach_the_reader(pool: WorkerPool) -> None:
    def bad_input(cancelled: threading.Event) -> Iterator[int]:
        yield 1
        raise InvalidInput("sentence 2 is not speakable")

    def bug(cancelled: threading.Event) -> Iterator[int]:
        raise RuntimeError("boom")
        yield 0

    async def main() -> None:
        stream = PoolStream(pool, bad_input)
        assert await stream.next(5) == 1
        with pytest.raises(InvalidInput, match="not speakable"):
            await stream.next(5)
        with pytest.raises(EngineFailure, match="RuntimeError: boom"):
            await PoolStream(pool, bug).next(5)

    run(main)


def test_close_stops_a_running_producer_at_its_next_check(pool: WorkerPool) -> None:
    made: list[int] = []
    stopped = threading.Event()

    def produce(cancelled: threading.Event) -> Iterator[int]:
        try:
            for i in range(1000):
                if cancelled.is_set():
                    return
                made.append(i)
                time.sleep(0.01)
                yield i
        finally:
            stopped.set()

    async def main() -> None:
        stream = PoolStream(pool, produce, task_id="t1")
        assert await stream.next(5) == 0
        stream.close("ended by the client")
        assert stream.cancelled.is_set()

    run(main)
    assert stopped.wait(5)
    assert len(made) < 20
    assert pool.submit(lambda: "free").result(5) == "free"  # the worker is back


def test_close_drops_a_queued_stream_before_it_runs(pool: WorkerPool) -> None:
    blocker = occupy(pool)
    ran = threading.Event()

    def produce(cancelled: threading.Event) -> Iterator[int]:
        ran.set()
        yield 1

    async def main() -> None:
        stream = PoolStream(pool, produce)
        stream.close("ended by the client")
        with pytest.raises(StopAsyncIteration):
            await stream.next(5)

    run(main)
    blocker.set()
    deadline = time.monotonic() + 5
    while (pool.depth or pool.busy) and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker takes the cancelled task off the queue and skips it
    assert not pool.depth and not pool.busy
    assert not ran.is_set()


def test_a_full_queue_refuses_the_stream_at_once(pool: WorkerPool) -> None:
    blocker = occupy(pool)
    pool.submit(lambda: None)  # the queue (1) is full

    async def main() -> None:
        with pytest.raises(Overloaded, match="busy"):
            PoolStream(pool, lambda cancelled: iter([1]))

    try:
        run(main)
    finally:
        blocker.set()


def test_a_reader_that_takes_nothing_holds_the_producer_to_the_buffer(pool: WorkerPool) -> None:
    made: list[int] = []

    def produce(cancelled: threading.Event) -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    async def main() -> None:
        stream = PoolStream(pool, produce, stall_s=0.5)
        await asyncio.sleep(1.0)  # read nothing: the producer waits, then gives up
        assert len(made) <= BUFFERED + 1
        assert stream.cancelled.is_set()

    run(main)


def test_no_item_within_the_timeout_is_a_timeout_and_cancels(pool: WorkerPool) -> None:
    def produce(cancelled: threading.Event) -> Iterator[int]:
        cancelled.wait(5)
        yield from ()

    async def main() -> None:
        stream = PoolStream(pool, produce)
        with pytest.raises(Timeout, match="no audio came within"):
            await stream.next(0.2)
        assert stream.cancelled.is_set()

    run(main)
    assert pool.submit(lambda: "free").result(5) == "free"
