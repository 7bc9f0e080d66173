"""A circuit breaker around the engine.

Closed: calls pass and their outcomes are counted over a sliding window. When at least
``min_calls`` calls in the window failed at more than ``failure_rate``, the breaker opens for
``open_s`` seconds: calls fail at once with :class:`EngineUnavailable` instead of piling onto a
broken engine. Then it lets one probe through (half-open); success closes it, failure re-opens it.
A user's mistake (bad input) is not an engine failure and is not counted.

Written here rather than taken from pybreaker: that counts consecutive failures, not a failure
rate over a time window, which is what the service promises.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from voiceforge.config import Settings
from voiceforge.errors import EngineUnavailable

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_rate: float = 0.05,
        window_s: float = 30.0,
        min_calls: int = 5,
        open_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_rate = failure_rate
        self.window_s = window_s
        self.min_calls = min_calls
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._opened_at: float | None = None
        self._probing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CircuitBreaker:
        """A breaker with the deployment's ``breaker_*`` settings (the pool's and each remote engine's)."""
        return cls(
            failure_rate=settings.breaker_failure_rate,
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            open_s=settings.breaker_open_s,
        )

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def before_call(self) -> None:
        """Raise :class:`EngineUnavailable` while open; let one probe through when half-open."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._probing:
                self._probing = True
                log.info("circuit breaker half-open: letting one probe call through")
                return
            assert self._opened_at is not None
            wait = max(1, math.ceil(self._opened_at + self.open_s - self._clock()))
            raise EngineUnavailable(
                f"the engine failed too often recently and is paused for {wait} s to recover; "
                "retry after that",
                retry_after=wait,
            )

    def record(self, *, failed: bool) -> None:
        with self._lock:
            now = self._clock()
            if self._probing:
                self._probing = False
                if failed:
                    self._open(now, "probe failed")
                else:
                    log.info("circuit breaker closed: probe succeeded")
                    self._opened_at = None
                    self._calls.clear()
                return
            self._calls.append((now, failed))
            self._trim(now)
            failures = sum(f for _, f in self._calls)
            if (
                self._opened_at is None
                and len(self._calls) >= self.min_calls
                and failures / len(self._calls) > self.failure_rate
            ):
                self._open(now, f"{failures} of {len(self._calls)} calls failed in {self.window_s:.0f} s")

    def _open(self, now: float, why: str) -> None:
        self._opened_at = now
        self._calls.clear()
        log.warning("circuit breaker open for %.0f s: %s", self.open_s, why)

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.open_s:
            return "open"
        return "half_open"

    def _trim(self, now: float) -> None:
        while self._calls and now - self._calls[0][0] > self.window_s:
            self._calls.popleft()
