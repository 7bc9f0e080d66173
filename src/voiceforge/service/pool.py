"""The engine worker pool: a bounded queue in front of a few threads that run engine work.

Inference never runs on the event loop: routes ``await pool.run(fn)`` and a worker thread calls
``fn``. A full queue raises :class:`Overloaded` (HTTP 503) at once instead of letting latency grow
without bound. Every call goes through the circuit breaker; failures that are the engine's (not
the caller's bad input) are counted. ``pause``/``resume`` let a restart swap the engine while
queued work waits in the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from voiceforge.breaker import CircuitBreaker
from voiceforge.errors import EngineFailure, Overloaded, Timeout, VoiceforgeError

log = logging.getLogger(__name__)

T = TypeVar("T")
_STOP = object()


class WorkerPool:
    def __init__(self, workers: int, max_queue: int, breaker: CircuitBreaker | None = None) -> None:
        self.workers = max(1, workers)
        self.max_queue = max_queue
        self.breaker = breaker or CircuitBreaker()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._running = 0
        self._lock = threading.Condition()
        self._paused = False
        self._threads = [
            threading.Thread(target=self._work, name=f"engine-{i}", daemon=True) for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, fn: Callable[[], T], *, breaker: bool = True) -> concurrent.futures.Future[T]:
        """Queue ``fn``; raise Overloaded when the queue is full, EngineUnavailable when open."""
        if breaker:
            self.breaker.before_call()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            # The caller's context (trace id, key id) travels with the task onto the worker thread.
            self._queue.put_nowait((contextvars.copy_context(), fn, future, breaker))
        except queue.Full:
            raise Overloaded(
                f"the server is busy ({self.max_queue} requests waiting); retry in a few seconds",
                retry_after=2,
            ) from None
        return future

    async def run(self, fn: Callable[[], T], *, timeout: float | None = None, breaker: bool = True) -> T:
        """Run ``fn`` on a worker and await it; Timeout (504) after ``timeout`` seconds."""
        future = self.submit(fn, breaker=breaker)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            started = not future.cancel()  # not yet started: it never runs
            raise Timeout(
                f"the request took longer than {timeout:.0f} s"
                + (
                    "; it keeps running and a retry of the same request will find its result"
                    if started
                    else ""
                )
            ) from None

    # -- state -----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Tasks waiting for a worker."""
        return self._queue.qsize()

    @property
    def busy(self) -> int:
        with self._lock:
            return self._running

    @property
    def saturated(self) -> bool:
        return self._queue.full()

    def pause(self, timeout: float | None = None) -> bool:
        """Stop taking new tasks and wait for running ones; queued tasks stay queued."""
        with self._lock:
            self._paused = True
            return self._lock.wait_for(lambda: self._running == 0, timeout)

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def shutdown(self, timeout: float = 5.0) -> None:
        """Finish running tasks, fail queued ones, stop the threads."""
        self.resume()
        while True:
            try:
                _ctx, _fn, future, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future.set_running_or_notify_cancel():
                future.set_exception(Overloaded("the server is shutting down; retry shortly"))
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)

    # -- workers ---------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            ctx, fn, future, breaker = item
            with self._lock:
                self._lock.wait_for(lambda: not self._paused)
                self._running += 1
            try:
                if future.set_running_or_notify_cancel():
                    ctx.run(self._call, fn, future, breaker)
            finally:
                with self._lock:
                    self._running -= 1
                    self._lock.notify_all()

    def _call(self, fn: Callable[[], Any], future: concurrent.futures.Future[Any], breaker: bool) -> None:
        try:
            result = fn()
        except VoiceforgeError as e:
            if breaker:
                self.breaker.record(failed=isinstance(e, EngineFailure))
            future.set_exception(e)
        except Exception as e:  # an engine bug: count it, log it whole, hand the caller a clean error
            log.exception("engine task failed")
            if breaker:
                self.breaker.record(failed=True)
            failure = EngineFailure(f"the engine failed: {type(e).__name__}: {e}"[:300])
            failure.__cause__ = e
            future.set_exception(failure)
        else:
            if breaker:
                self.breaker.record(failed=False)
            future.set_result(result)
