"""Redis pub/sub between Celery workers and API nodes: worker log lines and job changes.

Workers publish (:class:`Publisher`, :class:`LogRelayHandler`); every API node subscribes
(:class:`Subscriber`): relayed log records go through the node's own logging, so they reach its
live log stream (``/admin/logs/stream``) and its runtime.log, and job changes wake the node's
``/v1/jobs/{id}/events`` streams at once instead of at their next database poll. Pub/sub is best
effort by design: a line published while Redis is down is dropped (and counted), never waited for,
and nothing that must survive (job state, outputs) travels this way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

LOGS = "voiceforge:logs"
JOBS = "voiceforge:jobs"
RETRY_S = 1.0  # wait between reconnection attempts


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15)


class Publisher:
    """PUBLISH on a background thread from a bounded queue: the caller never blocks or fails."""

    def __init__(self, url: str, *, size: int = 10_000) -> None:
        self._client = client(url)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(size)
        self.dropped = 0  # messages lost: queue full or Redis unreachable
        self._down_until = 0.0
        self._thread = threading.Thread(target=self._run, name="relay-publish", daemon=True)
        self._thread.start()

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((channel, json.dumps(message, ensure_ascii=False)))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (for up to ``timeout``), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if time.monotonic() < self._down_until:  # Redis is away: drop rather than pile up
                self.dropped += 1
                continue
            try:
                self._client.publish(*item)
            except redis.RedisError:
                self.dropped += 1
                self._down_until = time.monotonic() + RETRY_S


class LogRelayHandler(logging.Handler):
    """On a worker: every record at INFO or above, published for the API nodes' log streams."""

    def __init__(self, publisher: Publisher, worker: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.publisher = publisher
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.publisher.publish(
                LOGS,
                {
                    "worker": self.worker,
                    "name": record.name,
                    "level": record.levelno,
                    "created": record.created,
                    "message": text,
                },
            )
        except Exception:
            self.handleError(record)


def relayed_record(message: dict[str, Any]) -> logging.LogRecord:
    """A worker's published line as a record of this process (logger ``<name>@<worker>``)."""
    level = int(message.get("level", logging.INFO))
    return logging.makeLogRecord(
        {
            "name": f"{message.get('name', 'worker')}@{message.get('worker', '?')}",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "created": float(message.get("created", time.time())),
            "msg": str(message.get("message", "")),
            "args": None,
        }
    )


class Subscriber:
    """On an API node: relays worker logs into local logging and calls ``on_job(job_id)``.

    Reconnects by itself when Redis restarts; the lines published meanwhile are lost.
    """

    def __init__(self, url: str, on_job: Callable[[str], None]) -> None:
        self.url = url
        self.on_job = on_job
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._relay = logging.getLogger("voiceforge.workers")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relay-subscribe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        connected_once = False
        while not self._stopping.is_set():
            conn = client(self.url)
            pubsub = conn.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(LOGS, JOBS)
                if connected_once:
                    log.info("worker relay: reconnected to Redis")
                connected_once = True
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._handle(message)
            except redis.RedisError as e:
                if connected_once:
                    log.warning("worker relay: Redis unreachable (%s); retrying", e)
                    connected_once = False
                self._stopping.wait(RETRY_S)
            finally:
                pubsub.close()
                conn.close()

    def _handle(self, message: dict[str, Any]) -> None:
        try:
            data = json.loads(message["data"])
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if channel == JOBS:
                self.on_job(str(data["id"]))
            else:
                self._relay.handle(relayed_record(data))
        except Exception:  # one bad message must not end the relay
            log.exception("worker relay: cannot handle a message")
