"""CircuitBreaker: failure rate over a sliding window, open for a while, one half-open probe.

A fake clock drives time, so every transition is exact and the tests take no time.
"""

from __future__ import annotations

import pytest

from voiceforge.breaker import CircuitBreaker
from voiceforge.errors import EngineUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, **kwargs: float) -> CircuitBreaker:
    options: dict[str, float] = {"failure_rate": 0.05, "window_s": 30, "min_calls": 5, "open_s": 60}
    options.update(kwargs)
    return CircuitBreaker(clock=clock, **options)  # type: ignore[arg-type]


def calls(b: CircuitBreaker, *outcomes: bool) -> None:
    """One call per outcome (True = failed), each let through first as the pool does."""
    for failed in outcomes:
        b.before_call()
        b.record(failed=failed)


def test_closed_until_enough_calls_fail(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, True, True, True, True)  # 4 < min_calls: not judged yet
    assert b.state == "closed"
    calls(b, True)
    assert b.state == "open"


def test_rate_at_or_below_the_threshold_keeps_it_closed(clock: Clock) -> None:
    b = breaker(clock, failure_rate=0.25)
    calls(b, *([False] * 6), True, True)  # 2 of 8 = 25 %: not above
    assert b.state == "closed"
    calls(b, True)  # 3 of 9
    assert b.state == "open"


def test_successes_alone_never_open(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, *([False] * 100))
    assert b.state == "closed"


def test_open_refuses_with_retry_after_counting_down(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, *([True] * 5))
    with pytest.raises(EngineUnavailable) as refused:
        b.before_call()
    assert refused.value.retry_after == 60
    assert "paused for 60 s" in refused.value.message and "retry" in refused.value.message
    clock.advance(45.5)
    with pytest.raises(EngineUnavailable) as later:
        b.before_call()
    assert later.value.retry_after == 15


def test_old_failures_leave_the_window(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, True, True, True, True)
    clock.advance(31)  # those four are now outside the 30 s window
    calls(b, True, False, False, False)
    assert b.state == "closed"  # only 4 calls in the window: too few to judge
    calls(b, False)  # 1 of 5 failed = 20 % > 5 %
    assert b.state == "open"


def test_half_open_lets_one_probe_through_and_success_closes(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, *([True] * 5))
    clock.advance(60)
    assert b.state == "half_open"
    b.before_call()  # the probe
    with pytest.raises(EngineUnavailable):
        b.before_call()  # everyone else still waits for the probe's outcome
    b.record(failed=False)
    assert b.state == "closed"
    calls(b, False, False, False, False, True)  # the window was cleared: 1 of 5 opens it again
    assert b.state == "open"


def test_failed_probe_reopens_for_a_full_period(clock: Clock) -> None:
    b = breaker(clock)
    calls(b, *([True] * 5))
    clock.advance(61)
    b.before_call()
    b.record(failed=True)
    assert b.state == "open"
    clock.advance(59)
    assert b.state == "open"
    clock.advance(1)
    assert b.state == "half_open"


def test_no_call_is_counted_twice_across_opening(clock: Clock) -> None:
    b = breaker(clock, open_s=10)
    calls(b, *([True] * 5))
    clock.advance(10)
    calls(b, False)  # probe succeeds: closed with an empty window
    calls(b, False, False, False)
    assert b.state == "closed"
