"""One admission for every door: who → scope → rate limit → text (word filter, quota) → audit row.

The HTTP routes and the web UI's actions ask the same questions here, so they cannot drift apart:

1. **who**: :class:`Guard` (ASGI middleware) authenticates every request before a route runs
   (:mod:`voiceforge.server.auth` turns the key, JWT, signed link or UI session into a
   :class:`~voiceforge.server.auth.Principal`); a UI action reads the session of its Gradio request
   with :func:`ui_principal`.
2. **scope** and **rate limit**: :func:`enter` — 403 naming the scope, then the scope's rate limit
   (429 with Retry-After). Routes declare ``Depends(require("tts"))``; UI actions open :func:`door`.
3. **text**: :func:`check_text` — the sensitive-word filter, then the caller's daily character
   quota (charged here, cached answers too). Routes call :func:`admit`; UI actions ``ticket.text``.
4. **audit row**: one per request or UI action — key id, address, endpoint, status, characters
   charged and the SHA-256 of the text. :class:`Guard` writes it after a route; :func:`door` after a
   UI action (method ``UI``, endpoint ``/ui/<action>``), so the quota rebuilt from the audit table at
   start-up counts what the UI charged too.

What a principal made belongs to it (:mod:`voiceforge.service.owners`): :func:`reader` says whose
things a caller may read (None: anyone's — an admin, or the one local user without auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceforge.errors import Forbidden, NotFound, RateLimited, Unauthorized, VoiceforgeError
from voiceforge.jobs.store import JOB_ID
from voiceforge.logs import key_id, trace_id
from voiceforge.server.auth import ANONYMOUS, SCOPES, SESSION_COOKIE, SIGNED_LINK, Principal
from voiceforge.server.errors import error_response, status_of
from voiceforge.server.limits import client_ip
from voiceforge.service.owners import Owners
from voiceforge.service.owners import output as output_resource
from voiceforge.service.transcribe import flags as speech_flags

if TYPE_CHECKING:
    from voiceforge.server.state import Services

log = logging.getLogger(__name__)

TICKET = "admission"  # where a request's Ticket lives in the ASGI scope's state


@dataclass
class Ticket:
    """One request's (or UI action's) way through admission: who, from where, what it was charged."""

    principal: Principal
    ip: str
    chars: int = 0  # characters charged to the daily quota
    text_sha256: str | None = None


# -- the checks ----------------------------------------------------------------------------------
def allows(principal: Principal, scope: str) -> bool:
    """Whether ``principal`` holds ``scope``: for what a page only shows or hides (the UI's voice
    picker), where a refusal would be noise; actions go through :func:`enter`."""
    return scope in principal.scopes


async def enter(svc: Services, ticket: Ticket, scope: str, what: str, *, limit: bool = True) -> None:
    """The scope (Forbidden names it), then one request against the scope's rate limit."""
    principal = ticket.principal
    if not allows(principal, scope):
        held = ", ".join(sorted(principal.scopes)) or "none"
        raise Forbidden(
            f"{what} needs the {scope!r} scope; {principal.id} has {held} "
            f"(an admin can create a key with --scopes {scope}; in the UI, sign in with such a key)",
            detail={"scope": scope},
        )
    if limit:
        await svc.limiter.hit(scope, principal, ticket.ip)


async def check_text(
    svc: Services, ticket: Ticket, text: str, *, field: str = "text", prompt_text: str | None = None
) -> None:
    """Text to be spoken: its hash for the audit row (first, so a refused text is traceable too),
    the word filter, then the daily quota. Call it once per request with the whole text."""
    if svc.audit.enabled:
        ticket.text_sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if svc.words is not None:
        svc.words.check(text, field)
        if prompt_text and svc.settings.filter_prompt_text:
            svc.words.check(prompt_text, "prompt_text")
    if ticket.principal.quota_chars > 0:
        await svc.limiter.charge(ticket.principal, len(text))
    ticket.chars = len(text)  # admitted: the row's count (what a restart rebuilds the quota from)


def record(svc: Services, ticket: Ticket | None, *, who: str | None, ip: str, method: str, endpoint: str,
           status: int, started: float, trace: str | None = None) -> None:  # fmt: skip
    """The audit row (queued; no-op while auditing is off), flagged when recognised speech held a
    listed term and the operator lets such speech through (service/transcribe.py)."""
    flagged = speech_flags.get()
    svc.audit.record(
        flag=flagged[0] if flagged else None,
        key_id=who,
        ip=ip,
        method=method,
        endpoint=endpoint,
        status=status,
        trace_id=trace or trace_id.get(),
        cost_ms=round((time.perf_counter() - started) * 1000, 1),
        chars=ticket.chars if ticket else 0,
        text_sha256=ticket.text_sha256 if ticket else None,
    )


def creator(principal: Principal) -> str | None:
    """Whose a new upload or output becomes: the caller's, or nobody's in particular without auth."""
    return None if principal.kind == "anonymous" else principal.id


def reader(principal: Principal) -> str | None:
    """Whose things the caller may read: its own, or anyone's (None) for an admin or without auth."""
    return None if principal.kind == "anonymous" or "admin" in principal.scopes else principal.id


def owners(svc: Services) -> Owners:
    if svc.owners is None:
        raise RuntimeError("the owners table was not built; create the app with create_app()")
    return svc.owners


async def grant_output(svc: Services, principal: Principal, name: str) -> None:
    """``principal`` was handed the output ``name`` (made now or a cached one): it may fetch it."""
    who = creator(principal)
    if who is not None and not owners(svc).known(output_resource(name), who):
        await run_in_threadpool(owners(svc).grant, output_resource(name), who)


async def may_read_output(svc: Services, principal: Principal, name: str) -> bool:
    """Whether ``principal`` may fetch ``/outputs/<name>``: a signed link (checked for that very
    file), an admin or a server without auth, the key it was handed to, or the owner of the job
    that made it (``<job id>.<ext>``, ``<job id>-<item>.<ext>``)."""
    who = reader(principal)
    if principal is SIGNED_LINK or who is None:
        return True
    if await run_in_threadpool(owners(svc).owns, output_resource(name), who):
        return True
    job_id = name.split(".", 1)[0].split("-", 1)[0]
    if svc.jobs is None or not JOB_ID.fullmatch(job_id):
        return False
    try:
        return (await svc.jobs.get(job_id)).owner == who
    except NotFound:
        return False


async def may_read_file(svc: Services, principal: Principal, path: Path) -> bool:
    """Whether the UI's file route may hand ``path`` to ``principal``: a saved voice's recording and
    profile need the 'voices' scope (as GET /v1/voices/{id}/prompt does), an output the right to
    :func:`may_read_output`; anything else is Gradio's own (its cache, uploads) and its to judge."""
    target = path.resolve()
    voices = (svc.settings.data_dir / "voices").resolve()
    outputs = svc.settings.output_dir.resolve()
    if target.is_relative_to(voices):
        return "voices" in principal.scopes
    if target.is_relative_to(outputs):
        name = target.relative_to(outputs)
        return len(name.parts) == 1 and await may_read_output(svc, principal, name.parts[0])
    return True


# -- HTTP routes ---------------------------------------------------------------------------------
def ticket_of(request: Request) -> Ticket:
    """The request's ticket (made by :func:`require`; a fresh one for a route without it)."""
    state = request.scope.setdefault("state", {})
    ticket: Ticket | None = state.get(TICKET)
    if ticket is None:
        principal: Principal = state.get("principal", ANONYMOUS)
        ticket = state[TICKET] = Ticket(principal, client_ip(request.scope))
    return ticket


def require(scope: str, *, limit: bool = True) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that returns the caller or raises Unauthorized/Forbidden, then counts the
    request against ``scope``'s rate limit (``limit=False``: the route calls :func:`hit` itself)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request) -> Principal:
        svc: Services = request.app.state.services
        state = request.scope.setdefault("state", {})
        if state.get("principal") is None:  # no Guard in front (or a public path): authenticate here
            principal = await svc.auth.authenticate(request.scope) if svc.auth.required else ANONYMOUS
            state["principal"] = principal
        ticket = ticket_of(request)
        await enter(svc, ticket, scope, f"{request.method} {request.url.path}", limit=limit)
        return ticket.principal

    return dependency


async def admit(request: Request, text: str, *, field: str = "text", prompt_text: str | None = None) -> None:
    """:func:`check_text` for a route; the Guard's audit row carries the hash and the count."""
    svc: Services = request.app.state.services
    await check_text(svc, ticket_of(request), text, field=field, prompt_text=prompt_text)


async def hit(request: Request, category: str) -> None:
    """Count one request against ``category``'s rate limit, for routes that declared
    ``require(scope, limit=False)`` to count only some requests (e.g. new uploads, not chunks)."""
    svc: Services = request.app.state.services
    ticket = ticket_of(request)
    await svc.limiter.hit(category, ticket.principal, ticket.ip)


# -- the web UI ----------------------------------------------------------------------------------
async def ui_principal(svc: Services, cookies: Mapping[str, str]) -> Principal:
    """Who is using the page: the session cookie's principal when auth is on (the Guard already let
    the page's request in with it), else the local anonymous principal with every scope."""
    if not svc.auth.required:
        return ANONYMOUS
    return await svc.auth.session(cookies.get(SESSION_COOKIE, ""))


@asynccontextmanager
async def door(svc: Services, principal: Principal, ip: str, scope: str, action: str, *,
               trace: str | None = None, limit: bool = True) -> AsyncIterator[Ticket]:  # fmt: skip
    """A UI action through the same admission as the route that does the same work: the scope and
    its rate limit on entry, the audit row (``UI /ui/<action>``) on the way out, whatever happened."""
    started = time.perf_counter()
    ticket = Ticket(principal, ip)
    status = 200
    heard = speech_flags.set([])  # what the action's workers flag in recognised speech
    try:
        await enter(svc, ticket, scope, f"the UI's {action}", limit=limit)
        yield ticket
    except VoiceforgeError as e:
        status = status_of(e)
        raise
    except (GeneratorExit, asyncio.CancelledError):  # the page went away mid-action
        status = 499
        raise
    except BaseException:
        status = 500
        raise
    finally:
        record(svc, ticket, who=creator(principal), ip=ip, method="UI", endpoint=f"/ui/{action}",
               status=status, started=started, trace=trace)  # fmt: skip
        with contextlib.suppress(ValueError):  # a generator closed from another context
            speech_flags.reset(heard)


# -- the middleware ------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: authenticate before any route, then write the audit row after it.

    Pure ASGI (no BaseHTTPMiddleware) so the cached /tts path pays a dict lookup, not a task.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        svc: Services = scope["app"].state.services
        auth = svc.auth
        state = scope.setdefault("state", {})
        public = auth.public(scope["path"])
        if not auth.required:
            state["principal"] = ANONYMOUS
        audited = svc.audit.enabled and not public and scope["type"] == "http"
        if public or not (auth.required or audited):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        ip = client_ip(scope)
        principal: Principal = state.get("principal", ANONYMOUS)
        if auth.required:
            try:
                principal = await auth.authenticate(scope)
            except Unauthorized as e:
                if _wants_login(scope):
                    await RedirectResponse("/login", status_code=303)(scope, receive, send)
                    return
                error: VoiceforgeError = e
                try:
                    await svc.limiter.failed_auth(ip)
                except RateLimited as limited:
                    error = limited
                status = await _reject(scope, receive, send, error)
                if audited:
                    record(svc, None, who=None, ip=ip, method=scope["method"], endpoint=scope["path"],
                           status=status, started=started)  # fmt: skip
                return
            state["principal"] = principal
        ticket = state[TICKET] = Ticket(principal, ip)
        token = key_id.set(principal.id)
        heard = speech_flags.set([])  # what the request's workers flag in recognised speech
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key_id.reset(token)
            if audited:
                record(svc, ticket, who=principal.id, ip=ip, method=scope["method"], endpoint=scope["path"],
                       status=status, started=started)  # fmt: skip
            speech_flags.reset(heard)


def _wants_login(scope: Scope) -> bool:
    """A browser opening a UI page without a session: better sent to /login than shown JSON."""
    if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith("/ui"):
        return False
    accept = dict(scope["headers"]).get(b"accept", b"")
    return b"text/html" in accept


async def _reject(scope: Scope, receive: Receive, send: Send, error: VoiceforgeError) -> int:
    """Answer with the error in the path's body shape (the app's handlers are not reached yet)."""
    status = status_of(error)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
        return status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    log.info("%s %s -> %d %s: %s", scope["method"], scope["path"], status, error.code, error.message)
    response = error_response(Request(scope), status, error.code, error.message, error.detail, headers)
    await response(scope, receive, send)
    return status
