"""One upstream ``POST /v1/audio/speech``: opened with retries only while nothing was heard (a
connection that never opened, a 503 with ``Retry-After``), and the remote's errors as ours."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from voiceforge.errors import EngineFailure, EngineUnavailable, InvalidInput, Overloaded, Timeout, TooLarge

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 10.0  # a longer Retry-After is passed to our caller instead of waited out


def open_speech(
    client: httpx.Client, url: str, body: dict[str, Any], *, retries: int, timeout_s: float
) -> Closing:
    """The streaming response to ``POST /v1/audio/speech``, retried while nothing was heard."""
    attempt = 0
    while True:
        try:
            response = client.send(client.build_request("POST", "/v1/audio/speech", json=body), stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            if attempt < retries:
                attempt += 1
                log.warning("remote engine at %s: %s; retry %d", url, type(e).__name__, attempt)
                time.sleep(0.2 * 2**attempt)
                continue
            raise EngineUnavailable(
                f"the remote engine at {url} is unreachable ({type(e).__name__}: {e}); "
                "check that it is running and VOICEFORGE_REMOTE_URL is right",
                retry_after=5,
            ) from e
        except httpx.TimeoutException as e:
            raise Timeout(f"the remote engine at {url} did not answer within {timeout_s:.0f} s") from e
        except httpx.HTTPError as e:
            raise EngineUnavailable(
                f"the remote engine at {url} failed: {type(e).__name__}: {e}", retry_after=5
            ) from e
        if response.status_code == 200:
            return Closing(response)
        response.read()
        response.close()
        wait = retry_after(response)
        if response.status_code == 503 and wait is not None and attempt < retries:
            attempt += 1
            log.warning("remote engine at %s is busy; retry %d in %.1f s", url, attempt, wait)
            time.sleep(min(wait, MAX_RETRY_AFTER_S))
            continue
        raise as_error(response, url)


def as_error(response: httpx.Response, url: str) -> Exception:
    """The remote's error as ours, named after the remote (5xx and auth count on the breaker)."""
    status = response.status_code
    message = f"the remote engine at {url} answered {status}: {_message(response)}"
    wait = int(retry_after(response) or 5)
    if status in (400, 422):
        return InvalidInput(message)
    if status == 413:
        return TooLarge(message)
    if status == 429:
        return Overloaded(message, retry_after=wait)
    if status in (401, 403):
        return EngineUnavailable(message + " (check VOICEFORGE_REMOTE_API_KEY)", retry_after=wait)
    if status == 404:
        return EngineUnavailable(
            message + " (is VOICEFORGE_REMOTE_URL the server's root, without /v1?)", retry_after=wait
        )
    if status in (502, 503, 504):
        return EngineUnavailable(message, retry_after=wait)
    return EngineFailure(message)


class Closing:
    """A streamed response as a context manager that always closes it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> httpx.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """The human part of an error body: OpenAI's ``error.message``, voiceforge's ``error``, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return str(body)[:300]
