"""Prometheus metrics for one app: a registry of its own, built with the app, never the global one.

Counters and histograms are updated where things happen (the request middleware, the speech
service, the streaming routes, the admin restart); gauges that describe the present (queue
depth, busy workers, breaker state, jobs by state) are read from their owners at scrape time, so
nothing has to keep them in step.

Other areas report through this object, reached as ``svc.metrics``:
``observe_ttfa(seconds)`` when a stream's first audio bytes leave, ``register_jobs(fn)`` with a
coroutine function that returns ``{state: count}`` (``JobBackend.counts``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from voiceforge.server.logstream import LogStream
from voiceforge.service.models import Models
from voiceforge.service.pool import WorkerPool

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFA_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 5)
BREAKER_STATES = ("closed", "open", "half_open")

JobCounts = Callable[[], Awaitable[Mapping[str, int]]]  # JobBackend.counts


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "voiceforge_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "voiceforge_http_request_duration_seconds",
            "time from request to last response byte",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfa = Histogram(
            "voiceforge_time_to_first_audio_seconds",
            "streamed speech: request to first audio bytes",
            buckets=TTFA_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "voiceforge_synthesis_rtf",
            "real-time factor per synthesis (compute s / audio s)",
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "voiceforge_synthesis_audio_seconds", "seconds of audio synthesised", registry=r
        )
        self.compute_seconds = Counter(
            "voiceforge_synthesis_compute_seconds", "engine seconds spent synthesising", registry=r
        )
        self.cache = Counter(
            "voiceforge_cache_lookups", "output cache lookups by result (hit, miss)", ["result"], registry=r
        )
        self.restarts = Counter(
            "voiceforge_engine_restarts", "engine restarts by outcome (done, failed)", ["outcome"], registry=r
        )
        self._hit, self._miss = self.cache.labels("hit"), self.cache.labels("miss")
        # labels() takes a lock and builds a tuple; the request path looks children up here instead.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._children_lock = threading.Lock()
        self._pool: WorkerPool | None = None
        self._models: Models | None = None
        self._logs: LogStream | None = None
        self._jobs: JobCounts | None = None
        self._job_counts: Mapping[str, int] | None = None  # fetched by scrape(), shown by the collector
        r.register(_Present(self))

    # -- wiring (the app's lifespan) -----------------------------------------------------------
    def watch(
        self, *, pool: WorkerPool | None = None, models: Models | None = None, logs: LogStream | None = None
    ) -> None:
        """Read queue, worker, breaker, engine and log-stream gauges from these at scrape time."""
        self._pool = pool or self._pool
        self._models = models or self._models
        self._logs = logs or self._logs

    def register_jobs(self, counts: JobCounts) -> None:
        """``await counts()`` -> {state: number of jobs}; awaited at each scrape."""
        self._jobs = counts

    # -- observations -----------------------------------------------------------------------------
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            with self._children_lock:
                children = (
                    self.requests.labels(route, method, str(status)),
                    self.latency.labels(route, method),
                )
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_ttfa(self, seconds: float) -> None:
        """A streamed response's first audio bytes left ``seconds`` after the request arrived."""
        self.ttfa.observe(seconds)

    def synthesis(self, compute_s: float, audio_s: float) -> None:
        """One synthesis finished: ``compute_s`` of engine time made ``audio_s`` of audio."""
        if audio_s > 0:
            self.rtf.observe(compute_s / audio_s)
            self.audio_seconds.inc(audio_s)
        self.compute_seconds.inc(compute_s)

    def cache_lookup(self, hit: bool) -> None:
        (self._hit if hit else self._miss).inc()

    def engine_restarted(self, ok: bool) -> None:
        self.restarts.labels("done" if ok else "failed").inc()

    # -- exposition -------------------------------------------------------------------------------
    async def scrape(self) -> tuple[bytes, str]:
        """Fetch the asynchronous sources (jobs), then render; for ``GET /metrics``."""
        if self._jobs is not None:
            try:
                self._job_counts = dict(await self._jobs())
            except Exception:  # a scrape must not fail because one source did; the cause is logged
                log.exception("metrics: counting jobs failed")
                self._job_counts = None
        return self.render()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Present:
    """Gauges read from their owners when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        pool, models, logs = self.m._pool, self.m._models, self.m._logs
        if pool is not None:
            yield _gauge("voiceforge_queue_depth", "engine tasks waiting for a worker", pool.depth)
            yield _gauge("voiceforge_queue_capacity", "engine tasks that may wait before 503", pool.max_queue)
            yield _gauge("voiceforge_workers_busy", "engine workers running a task", pool.busy)
            yield _gauge("voiceforge_workers", "engine worker threads", pool.workers)
            yield _gauge("voiceforge_pool_paused", "1 while a restart holds the workers", int(pool.paused))
            state: str = pool.breaker.state
            breaker = GaugeMetricFamily(
                "voiceforge_breaker_state",
                "engine circuit breaker: 1 for the current state",
                labels=["state"],
            )
            for name in BREAKER_STATES:
                breaker.add_metric([name], int(state == name))
            yield breaker
        if models is not None:
            yield _gauge(
                "voiceforge_engine_generation", "engine loads so far (bumps on restart)", models.generation
            )
        if logs is not None:
            yield _gauge("voiceforge_log_stream_clients", "live log stream subscribers", logs.subscribers)
            yield _gauge(
                "voiceforge_log_stream_dropped", "log lines dropped for slow log stream clients", logs.dropped
            )
        if self.m._job_counts is not None:
            jobs = GaugeMetricFamily("voiceforge_jobs", "jobs by state", labels=["state"])
            for state, count in sorted(self.m._job_counts.items()):
                jobs.add_metric([state], count)
            yield jobs


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
