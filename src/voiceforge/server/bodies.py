"""Request bodies, bounded once for every route: how big, and how fast they arrive.

:class:`BodyGuard` is the ASGI middleware every request passes (the web UI's Gradio routes too):

- **Size.** A body may be at most its route's limit: ``max_body_bytes`` for JSON and forms, and for
  the routes a :class:`BodyRule` names (uploads, transcriptions, voice import, Gradio's upload) their
  own limit plus room for the form around the file. A Content-Length past it is answered 413 before
  a byte is read; a body without one (chunked) is counted as it arrives and refused the moment it
  passes the limit, so no route ever holds more than its limit in memory.
- **Pace.** A body must keep arriving (``body_idle_s`` at most between parts) and be complete within
  ``body_min_s`` plus a second per ``body_min_rate`` bytes it announces; a slower sender gets 408
  (:class:`~voiceforge.errors.SlowRequest`), so a slow-loris connection holds nothing for long.
  Slow *headers* are the reverse proxy's to cut (SECURITY.md).

Whatever a route or a library makes of the failed read (FastAPI's body parsing answers its own 400,
Gradio's parser a 500), the answer is this middleware's 413 or 408, with ``Connection: close`` so the
rest of the body is never read. Routes read bodies with Starlette's ``request.body()``, or with
:func:`read_form` and :func:`json_object`, which turn malformed input into a 400 naming the fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.errors import InvalidInput, RateLimited, SlowRequest, TooLarge, VoiceforgeError
from voiceforge.server.errors import error_response, status_of
from voiceforge.server.limits import client_ip

log = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around an uploaded file
_MIB = 1 << 20


@dataclass(frozen=True)
class BodyRule:
    """A route whose body may differ from ``max_body_bytes``: ``path`` is its template
    (``/v1/uploads/{upload_id}``), ``limit`` the bytes it accepts, ``allowance`` room for the form
    around a file (not named in messages), ``category`` a rate limit each request counts against
    (for routes the app does not own, such as Gradio's upload, where no dependency can count it)."""

    path: str
    limit: int
    allowance: int = 0
    category: str | None = None
    hint: str = "send a shorter recording, or compress it (Opus or MP3)"


def size(n: int) -> str:
    """``n`` bytes as a person reads it: MiB from 1 MiB up (a decimal unless whole), else KiB."""
    if n < _MIB:
        return f"{n // 1024} KiB"
    return f"{n // _MIB} MiB" if n % _MIB == 0 else f"{n / _MIB:.1f} MiB"


class BodyGuard:
    """ASGI middleware: each request body within its route's size and time limits (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        rules: Sequence[BodyRule] = (),
        idle_s: float = 20.0,
        min_s: float = 30.0,
        min_rate: int = 50_000,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.rules = [(compile_path(rule.path)[0], rule) for rule in rules]
        self.idle_s = idle_s
        self.min_s = min_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = next((r for pattern, r in self.rules if pattern.match(scope["path"])), None)
        if rule is not None and rule.category is not None and not await self._admitted(scope, rule, send):
            return
        length = -1  # no body announced
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else 0
            elif name == b"transfer-encoding":
                length = max(length, 0)
        if length < 0:
            await self.app(scope, receive, send)
            return
        limit = rule.limit if rule is not None else self.max_body_bytes
        allowed = limit + (rule.allowance if rule is not None else 0)
        hint = rule.hint if rule is not None else "send less; large recordings go through /v1/uploads"
        where = f"{scope['method']} {scope['path']}"
        if length > allowed:
            error = TooLarge(
                f"the request body is {size(length)}; {where} accepts at most {size(limit)} ({hint})",
                detail={"max_bytes": limit},
            )
            await _answer(scope, send, error)
            return
        over = TooLarge(
            f"the request body is over {size(limit)}; {where} accepts at most {size(limit)} ({hint})",
            detail={"max_bytes": limit},
        )
        failed: list[VoiceforgeError] = []
        bounded = self._bounded(receive, length, allowed, over, failed)
        answered = False

        async def send_checked(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            if failed and message["type"] == "http.response.start":
                answered = True  # the route's own answer to the failed read, whatever it is, is replaced
                await _answer(scope, send, failed[0])
                return
            await send(message)

        try:
            await self.app(scope, bounded, send_checked)
        except Exception:
            if not failed:
                raise
            # What a library raised on the failed read (Gradio lets it through): the refusal says it.
            log.debug("%s failed after its body was refused", where, exc_info=True)
            if not answered:
                answered = True
                await _answer(scope, send, failed[0])

    async def _admitted(self, scope: Scope, rule: BodyRule, send: Send) -> bool:
        """Count the request against the rule's rate limit; False (answered 429) when over it."""
        principal = scope.get("state", {}).get("principal")
        services = getattr(scope["app"].state, "services", None)
        if principal is None or services is None or rule.category is None:
            return True
        try:
            await services.limiter.hit(rule.category, principal, client_ip(scope))
        except RateLimited as e:
            await _answer(scope, send, e)
            return False
        return True

    def _bounded(
        self,
        receive: Receive,
        length: int,
        allowed: int,
        over: TooLarge,
        failed: list[VoiceforgeError],
    ) -> Receive:
        """``receive`` that raises ``over`` past ``allowed`` bytes and SlowRequest when the body
        stalls or drags on (each noted in ``failed``); past the body's end it is ``receive`` itself."""
        limit_s = self.min_s + length / self.min_rate
        deadline = time.monotonic() + limit_s
        received = 0
        done = False

        async def bounded() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            wait = min(self.idle_s, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                failed.append(
                    SlowRequest(
                        f"the request body stopped arriving ({received} of {length or '?'} bytes after "
                        f"{limit_s - (deadline - time.monotonic()):.0f} s); send it without pauses, or "
                        "upload large files in parts with /v1/uploads"
                    )
                )
                raise failed[-1] from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    failed.append(over)
                    raise over
                done = not message.get("more_body", False)
            return message

        return bounded


async def _answer(scope: Scope, send: Send, error: VoiceforgeError) -> None:
    """``error`` as the path's error body, closing the connection: what is left unread stays so."""
    status = status_of(error)
    headers = {"Connection": "close"}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    log.info("%s %s -> %d %s: %s", scope["method"], scope["path"], status, error.code, error.message)
    response = error_response(Request(scope), status, error.code, error.message, error.detail, headers)

    async def nothing() -> Message:  # the body is not read again
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)


async def read_form(
    request: Request, *, max_files: int = 2, max_fields: int = 16, max_part_size: int = 64 * 1024
) -> FormData:
    """The request's form (multipart or url-encoded); a malformed one is a 400 naming the fix.

    Its size is :class:`BodyGuard`'s to bound; ``max_part_size`` bounds one text field. Close the
    form when done (files spool to disk)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise InvalidInput(f"send multipart/form-data, not {kind or 'no content type'!r}")
    try:
        return await request.form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
    except (MultiPartException, HTTPException) as e:
        detail = getattr(e, "message", None) or getattr(e, "detail", "")
        raise InvalidInput(f"the form cannot be read ({detail}); send a well-formed form") from e


async def json_object(request: Request, example: str) -> dict[str, Any]:
    """The request's body as a JSON object; anything else is a 400 that shows ``example``."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"the body is not valid JSON ({e}); send a JSON object such as {example}") from e
    except RecursionError as e:
        raise InvalidInput("the body's JSON is nested too deeply; send a flat object") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"the body must be a JSON object such as {example}")
    return data
