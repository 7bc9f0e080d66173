"""Live log fan-out for ``GET /admin/logs/stream``: the UI's view of the backend as it works.

A :class:`LogStream` is a logging handler on the root logger. It keeps the last few records (the
backlog a new client sees first) and hands every new one to each subscriber's bounded asyncio
queue with ``loop.call_soon_threadsafe``, so engine threads that log never wait for a client.
A client too slow to keep up loses lines (counted, and told how many) rather than slowing the
server or growing its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from voiceforge.config import Settings
from voiceforge.errors import InvalidInput
from voiceforge.logs import ContextFilter, make_formatter

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LogLine:
    seq: int  # increases by one per record; the SSE event id, so a client can resume
    level: str
    time: float
    text: str  # formatted as in runtime.log


def parse_level(name: str) -> int:
    level = name.strip().upper()
    if level not in LEVELS:
        raise InvalidInput(f"log level {name[:20]!r} is unknown; use one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(level))


class Subscription:
    """One client: the lines it asked for, queued on its event loop."""

    def __init__(
        self, stream: LogStream, loop: asyncio.AbstractEventLoop, level: int, task: str | None, size: int
    ) -> None:
        self.stream = stream
        self.loop = loop
        self.level = level
        self.task = task or None
        self.queue: asyncio.Queue[LogLine] = asyncio.Queue(size)
        self.dropped = 0  # lines lost since the client was last told
        self.backlog: list[LogLine] = []
        self._loop_thread = threading.get_ident()

    def offer(self, line: LogLine) -> None:
        """Called on any thread; never blocks."""
        if threading.get_ident() == self._loop_thread:
            self._put(line)
            return
        try:
            self.loop.call_soon_threadsafe(self._put, line)
        except RuntimeError:  # the client's loop is closed: it is going away
            self.stream.unsubscribe(self)

    def _put(self, line: LogLine) -> None:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1
            self.stream.dropped += 1

    async def next(self) -> LogLine:
        return await self.queue.get()

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class LogStream(logging.Handler):
    def __init__(self, *, backlog: int = 200, queue_size: int = 1000) -> None:
        super().__init__(logging.NOTSET)
        self.queue_size = queue_size
        # Records, formatted only when a client wants them: the common case is nobody watching.
        self._backlog: deque[tuple[int, logging.LogRecord]] = deque(maxlen=max(1, backlog))
        self._seq = itertools.count(1)
        self._subscribers: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()  # the backlog and the subscriber list change together
        self.dropped = 0  # lines lost for slow clients, all clients together (a metric)

    @classmethod
    def install(cls, settings: Settings) -> LogStream:
        """Attach a stream to the root logger, formatting lines as runtime.log does."""
        stream = cls(backlog=settings.log_stream_backlog, queue_size=settings.log_stream_queue)
        stream.setFormatter(make_formatter(settings))
        stream.addFilter(ContextFilter())
        logging.getLogger().addHandler(stream)
        return stream

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
        self._subscribers = ()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # -- the logging side (any thread) ----------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self._lock:
                seq = next(self._seq)
                self._backlog.append((seq, record))
                subscribers = self._subscribers
            if not subscribers:
                return
            line: LogLine | None = None
            for sub in subscribers:
                if record.levelno < sub.level:
                    continue
                line = line or self._line(seq, record)
                if sub.task is None or sub.task in line.text:
                    sub.offer(line)
        except Exception:
            self.handleError(record)

    def _line(self, seq: int, record: logging.LogRecord) -> LogLine:
        return LogLine(seq, record.levelname, record.created, self.format(record))

    # -- the client side (an event loop) ----------------------------------------------------------
    @contextlib.contextmanager
    def subscribe(
        self, *, level: int = logging.INFO, task: str | None = None, backlog: int = 100, after: int = 0
    ) -> Iterator[Subscription]:
        """A live subscription whose ``backlog`` holds up to ``backlog`` earlier matching lines
        (only those after event id ``after``); no line is missed or repeated between the two."""
        sub = Subscription(self, asyncio.get_running_loop(), level, task, self.queue_size)
        with self._lock:  # a record lands in the snapshot or reaches the subscriber, never both
            records = list(self._backlog)
            self._subscribers = (*self._subscribers, sub)
        try:
            wanted: list[LogLine] = []
            for seq, record in reversed(records):
                if len(wanted) >= backlog or seq <= after:
                    break
                if record.levelno >= sub.level:
                    line = self._line(seq, record)
                    if sub.task is None or sub.task in line.text:
                        wanted.append(line)
            sub.backlog = wanted[::-1]
            yield sub
        finally:
            self.unsubscribe(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
