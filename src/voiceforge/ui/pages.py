"""Plain pages next to the Gradio UI: ``/`` (to ``/ui``), the login page, and the mobile page ``/m``.

No build step: the pages are static files in ``ui/static`` served as they are.
"""

from __future__ import annotations

import html
import logging
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from voiceforge.errors import Unauthorized
from voiceforge.server.auth import clear_session, set_session
from voiceforge.server.limits import client_ip
from voiceforge.server.state import Services, services

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
SCRIPTS = frozenset({"live", "pcm-worklet"})  # /m/<name>.js


def static(name: str) -> str:
    return resources.files("voiceforge.ui").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/m", response_class=HTMLResponse)
async def mobile() -> HTMLResponse:
    """The phone page: record, type, send to POST /tts, play."""
    return HTMLResponse(static("mobile.html"), headers={"Cache-Control": "no-cache"})


@router.get("/m/{name}.js")
async def mobile_script(name: str) -> Response:
    """The phone page's scripts: the live transcript and its microphone worklet."""
    if name not in SCRIPTS:
        return Response(status_code=404)
    return Response(static(f"{name}.js"), media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/login", response_class=HTMLResponse)
async def login_page(svc: Annotated[Services, Depends(services)]) -> Response:
    if not svc.auth.required:
        return RedirectResponse("/ui/", status_code=303)
    return _login(error="")


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, svc: Annotated[Services, Depends(services)], key: Annotated[str, Form()] = ""
) -> Response:
    """Check a pasted API key or JWT with the same code as every request, then give the browser a
    signed session cookie (server/auth/; never the key itself) and go to the UI."""
    try:
        principal = await svc.auth.verify(key)
    except Unauthorized as e:
        await svc.limiter.failed_auth(client_ip(request.scope))  # guessing keys here is limited too
        log.info("UI login refused: %s", e.message)
        return _login(error=e.message, status=401)
    log.info("UI login by %s (scopes %s)", principal.id, " ".join(sorted(principal.scopes)))
    response = RedirectResponse("/ui/", status_code=303)
    set_session(response, svc.auth.session_token(principal, key), secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response


def _login(*, error: str, status: int = 200) -> HTMLResponse:
    page = static("login.html").replace("{{error}}", html.escape(error))
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
