"""The SDK's error mapping and retry rules, against a scripted HTTP peer (httpx.MockTransport).

The real server is exercised in tests/integration/test_batch.py; here the peer answers exactly
what a test needs (a 503 then a 200, a Retry-After, a dropped connection) to pin down which
requests are retried, how long the client waits, and that a retried create keeps its key.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import httpx
import pytest

from voiceforge import errors
from voiceforge.client import AsyncClient, Client, ConnectionFailed, RetryPolicy, from_response
from voiceforge.client.retry import retry_error, retry_status

FAST = RetryPolicy(attempts=4, base_s=0.001, cap_s=0.01)


def _response(
    status: int, body: object, headers: dict[str, str] | None = None, path: str = "/tts"
) -> httpx.Response:
    request = httpx.Request("POST", f"http://vf{path}")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_tts_style_errors_map_to_the_server_classes() -> None:
    error = from_response(
        _response(400, {"success": False, "error": "text is empty", "code": "invalid_input"})
    )
    assert type(error) is errors.InvalidInput and error.message == "text is empty"
    limited = from_response(
        _response(429, {"success": False, "error": "slow down", "code": "rate_limited"}, {"Retry-After": "3"})
    )
    assert isinstance(limited, errors.RateLimited) and limited.retry_after == 3
    assert limited.status_code == 429  # type: ignore[attr-defined]
    busy = from_response(_response(503, {"success": False, "error": "queue full", "code": "overloaded"}))
    assert type(busy) is errors.Overloaded


def test_openai_style_errors_map_too() -> None:
    body = {
        "error": {
            "message": "unknown voice",
            "type": "invalid_request_error",
            "code": "invalid_input",
            "param": "voice",
        }
    }
    error = from_response(_response(400, body, path="/v1/audio/speech"))
    assert type(error) is errors.InvalidInput and error.detail == {"param": "voice"}


def test_unknown_codes_and_bodies_fall_back_to_the_status() -> None:
    assert (
        type(from_response(_response(404, {"success": False, "error": "x", "code": "brand_new"})))
        is errors.NotFound
    )
    request = httpx.Request("GET", "http://vf/x")
    plain = from_response(httpx.Response(502, text="bad gateway", request=request))
    assert isinstance(plain, errors.EngineUnavailable) and "502" in plain.message


def test_only_safe_requests_are_retried() -> None:
    post = httpx.Request("POST", "http://vf/v1/audio/speech")
    keyed = httpx.Request("POST", "http://vf/v1/jobs", headers={"Idempotency-Key": "k"})
    get = httpx.Request("GET", "http://vf/v1/jobs/x")
    assert retry_status(post, 429) and retry_status(post, 503)  # refused before any work
    assert not retry_status(post, 504) and retry_status(keyed, 504) and retry_status(get, 502)
    assert not retry_status(get, 400) and not retry_status(get, 500)
    # 409 + Retry-After: the key's first request still runs on another node; only a keyed call waits
    assert retry_status(keyed, 409, 2.0) and not retry_status(keyed, 409) and not retry_status(post, 409, 2.0)
    assert retry_error(post, httpx.ConnectError("refused"))  # never reached the server
    assert not retry_error(post, httpx.ReadTimeout("slow")) and retry_error(keyed, httpx.ReadTimeout("slow"))


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after() -> None:
    policy = RetryPolicy(attempts=6, base_s=0.5, cap_s=4.0)
    rng = random.Random(1)
    for attempt in range(1, 7):
        waits = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= min(4.0, 0.5 * 2 ** (attempt - 1))
        assert len(set(waits)) > 100  # jittered
    assert all(3.0 <= policy.delay(1, 3.0, rng=rng) <= 4.0 for _ in range(100))
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


def _scripted(
    answers: list[Callable[[httpx.Request], httpx.Response]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1](request)

    return httpx.MockTransport(handler)


def _ok(request: httpx.Request) -> httpx.Response:
    body = {"success": True, "audio_url": "http://vf/outputs/a.wav", "task_id": "a", "duration": 1.0,
            "sample_rate": 24000, "cached": False}  # fmt: skip
    return httpx.Response(200, json=body)


def _busy(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"success": False, "error": "queue full", "code": "overloaded"},
                          headers={"Retry-After": "0"})  # fmt: skip


def _timeout(request: httpx.Request) -> httpx.Response:
    return httpx.Response(504, json={"success": False, "error": "took too long", "code": "timeout"})


def test_a_retried_create_keeps_its_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(base_url="http://vf", transport=_scripted([_busy, _timeout, _ok], seen))
    with Client("http://vf", retry=FAST, http=http) as client:
        result = client.tts("你好。")
    assert result.task_id == "a" and len(seen) == 3
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(keys) == 1 and len(next(iter(keys))) >= 16
    assert json.loads(seen[0].content) == json.loads(seen[2].content)


def test_a_request_without_a_key_is_not_retried_after_a_timeout() -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(base_url="http://vf", transport=_scripted([_timeout, _ok], seen))
    with Client("http://vf", retry=FAST, http=http) as client, pytest.raises(errors.Timeout):
        client.speech("hello")
    assert len(seen) == 1


def test_errors_that_are_not_transient_are_raised_at_once() -> None:
    seen: list[httpx.Request] = []
    bad = httpx.Response(
        400, json={"success": False, "error": "seed 0 is out of range", "code": "invalid_input"}
    )
    http = httpx.Client(base_url="http://vf", transport=_scripted([lambda r: bad], seen))
    with (
        Client("http://vf", retry=FAST, http=http) as client,
        pytest.raises(errors.InvalidInput, match="seed 0"),
    ):
        client.tts("x", seed=1)
    assert len(seen) == 1


def test_the_last_answer_is_raised_when_retries_run_out() -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(base_url="http://vf", transport=_scripted([_busy], seen))
    with Client("http://vf", retry=FAST, http=http) as client, pytest.raises(errors.Overloaded):
        client.tts("x")
    assert len(seen) == FAST.attempts


def test_async_client_retries_connection_failures() -> None:
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def main() -> None:
        http = httpx.AsyncClient(base_url="http://vf", transport=_scripted([refuse, refuse, _ok], seen))
        async with AsyncClient("http://vf", retry=FAST, http=http) as client:
            assert (await client.tts("hi")).task_id == "a"
        http = httpx.AsyncClient(base_url="http://vf", transport=_scripted([refuse], []))
        async with AsyncClient("http://vf", retry=FAST, http=http) as client:
            with pytest.raises(ConnectionFailed, match="connection refused"):
                await client.tts("hi")

    asyncio.run(main())
    assert len(seen) == 3
