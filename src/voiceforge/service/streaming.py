"""Streaming engine work to async code: an iterator runs on a pool worker, each item is awaited as
soon as it is made.

``PoolStream`` is the bridge: it takes a slot in the pool's bounded queue like any other engine
task (a full queue raises :class:`Overloaded`, an open breaker :class:`EngineUnavailable`, both
before anything is sent), runs the producer on the worker thread and hands its items to the event
loop one by one. Closing it (the client went away) sets the ``cancelled`` event the producer
checks between sentences; a producer that gets ahead of a slow reader waits in a small buffer, so
memory stays bounded and a reader that stops reading stops the work.

``encoded_speech`` is the producer for speech: one request's sentences, encoded as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from voiceforge.audio.encode import AudioFormat
from voiceforge.audio.stream import StreamEncoder
from voiceforge.engines.base import SynthesisRequest
from voiceforge.errors import Timeout
from voiceforge.service.pool import WorkerPool
from voiceforge.service.speech import SpeechService

log = logging.getLogger(__name__)

T = TypeVar("T")

BUFFERED = 4  # items made but not yet taken before the producer waits
_POLL_S = 0.1  # how often a waiting producer looks at the cancel event


class _End:
    """Marks the end of the items (the producer returned, failed or never ran)."""


_END = _End()


class PoolStream(Generic[T]):
    """Items of ``produce(cancelled)``, made on a pool worker, awaited one at a time.

    Construct it inside a running event loop; construction queues the work and raises what
    ``WorkerPool.submit`` raises. ``next(timeout)`` gives the next item, ``StopAsyncIteration`` at
    the end, or re-raises the producer's error. ``close()`` cancels: a queued task never runs, a
    running one stops at the producer's next check of ``cancelled``. A producer kept waiting
    longer than ``stall_s`` by a reader that takes nothing is stopped the same way.
    """

    def __init__(
        self,
        pool: WorkerPool,
        produce: Callable[[threading.Event], Iterable[T]],
        *,
        task_id: str = "-",
        buffered: int = BUFFERED,
        stall_s: float = 120.0,
    ) -> None:
        self.task_id = task_id
        self.cancelled = threading.Event()
        self.finished = False  # every item was taken and the producer returned
        self._produce = produce
        self._stall_s = stall_s
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[T | _End] = asyncio.Queue()
        self._room = threading.Semaphore(buffered)
        self._future = pool.submit(self._run)
        self._future.add_done_callback(lambda _f: self._deliver(_END))

    # -- the reader's side (event loop) ------------------------------------------------------------
    async def next(self, timeout: float | None = None) -> T:
        """The next item; Timeout (504) when none comes within ``timeout`` seconds."""
        if self.finished:
            raise StopAsyncIteration
        try:
            item = await asyncio.wait_for(self._items.get(), timeout)
        except TimeoutError:
            self.close("timed out waiting for audio")
            raise Timeout(
                f"no audio came within {timeout:.0f} s (the server is busy or the input is very long); "
                "retry, or send shorter input"
            ) from None
        if isinstance(item, _End):
            self.finished = True
            error = None if self._future.cancelled() else self._future.exception()
            if error is not None:
                raise error
            raise StopAsyncIteration
        self._room.release()
        return item

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self.next(self._stall_s)

    def close(self, reason: str = "closed") -> None:
        """Stop the work: a queued task never starts, a running one stops at its next check."""
        if self.finished or self.cancelled.is_set():
            return
        self.cancelled.set()
        if self._future.done():
            outcome = "the work had already ended"
        elif self._future.cancel():
            outcome = "dropped from the queue"
        else:
            outcome = "stopping after the current sentence"
        log.info("[%s] stream %s; %s", self.task_id, reason, outcome)

    # -- the producer's side (worker thread) -----------------------------------------------------
    def _run(self) -> None:
        if self.cancelled.is_set():
            return
        items = iter(self._produce(self.cancelled))
        try:
            for item in items:
                if not self._wait_for_room():
                    break
                self._deliver(item)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's finally blocks run here, on this thread
        if self.cancelled.is_set():
            log.info("[%s] stream stopped", self.task_id)

    def _wait_for_room(self) -> bool:
        waited = 0.0
        while not self._room.acquire(timeout=_POLL_S):
            if self.cancelled.is_set():
                return False
            waited += _POLL_S
            if waited >= self._stall_s:
                log.warning("[%s] nobody read the stream for %.0f s; stopping it", self.task_id, waited)
                self.cancelled.set()
                return False
        return not self.cancelled.is_set()

    def _deliver(self, item: T | _End) -> None:
        # The loop is gone when the server stopped mid-stream; nobody is left to hand items to.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)


# -- speech --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedPiece:
    """Encoded bytes that became ready after a sentence (or at the end, ``sentence == total``)."""

    data: bytes
    sentence: int  # sentences done, 1-based
    total: int
    audio_s: float  # audio made so far
    compute_s: float  # engine time for this sentence (0 for the closing flush)


def encoded_speech(
    speech: SpeechService,
    task_id: str,
    request: SynthesisRequest,
    fmt: AudioFormat,
    cancelled: threading.Event,
    *,
    pcm_rate: int | None = None,
) -> Iterator[EncodedPiece]:
    """``speech.stream`` encoded in ``fmt`` sentence by sentence; blocking (run it on a worker).

    ``pcm_rate``: WAV or PCM resampled to this rate (default: the engine's)."""
    encoder: StreamEncoder | None = None
    done = total = 0
    audio_s = 0.0
    started = time.perf_counter()
    for chunk in speech.stream(task_id, request, cancelled=cancelled):
        if encoder is None:
            encoder = StreamEncoder(fmt, chunk.sample_rate, pcm_rate=pcm_rate)
        done, total = chunk.index + 1, chunk.total
        audio_s += chunk.duration_s
        data = encoder.write(chunk.samples)
        if data:
            yield EncodedPiece(data, done, total, audio_s, chunk.compute_s)
    if encoder is None or cancelled.is_set():
        return
    tail = encoder.close()
    log.info(
        "[%s] encoded %s stream: %.2f s of audio in %.2f s",
        task_id,
        fmt.value,
        audio_s,
        time.perf_counter() - started,
    )
    if tail:
        yield EncodedPiece(tail, done, total, audio_s, 0.0)
