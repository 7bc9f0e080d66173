"""The web UI: Gradio at ``/ui`` (``/`` redirects there), the login page and the mobile page ``/m``.

``mount(app, settings)`` adds it to the FastAPI app the factory builds; its handlers reach the
services through ``app.state.services`` when they run, so nothing here is built at import time.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr
from fastapi import FastAPI, Request
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from voiceforge.config import Settings
from voiceforge.server.admission import may_read_file
from voiceforge.server.auth import ANONYMOUS, Principal
from voiceforge.server.bodies import FORM_OVERHEAD, BodyRule
from voiceforge.server.errors import error_response
from voiceforge.server.state import Services

UI_PATH = "/ui"
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")  # Gradio's file route and its old spelling


class FileGate:
    """In front of Gradio: its file route serves a session only what the session's scopes allow
    (:func:`voiceforge.server.admission.may_read_file`); a refused file is a 404, as if missing."""

    def __init__(self, app: ASGIApp, services: Callable[[], Services]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        marker = next((m for m in FILE_ROUTES if m in path), None) if scope["type"] == "http" else None
        if marker is not None:
            target = path.split(marker, 1)[1]
            principal: Principal = scope.get("state", {}).get("principal") or ANONYMOUS
            if not target.startswith(("http://", "https://")) and not await may_read_file(
                self.services(), principal, gr.utils.abspath(target)
            ):
                message = (
                    f"no file {target[:120]!r} here (or not for this session's key); "
                    "sign in with a key that may read it"
                )
                await error_response(Request(scope), 404, "not_found", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def upload_rule(settings: Settings) -> BodyRule:
    """Gradio's upload route holds what the API's upload routes hold, and each upload counts
    against the ``uploads`` rate limit (the route is Gradio's, so the body guard counts it)."""
    return BodyRule(
        f"{UI_PATH}/gradio_api/upload", settings.max_upload_bytes, FORM_OVERHEAD, category="uploads"
    )


def mount(app: FastAPI, settings: Settings) -> list[str]:
    """Mount the UI; return the inline scripts it inserts at run time (the page policy allows
    exactly these by hash, server/headers.py)."""
    from voiceforge.ui import pages
    from voiceforge.ui.app import CSS, build

    def services() -> Services:
        svc: Services = app.state.services
        return svc

    app.include_router(pages.router)
    theme = gr.themes.Default(
        primary_hue="orange", font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    ui_js = pages.static("ui.js")
    gr.mount_gradio_app(
        app,
        build(services),
        path=UI_PATH,
        footer_links=[],
        # Gradio serves files under these to the browser: outputs and voice prompts only, never
        # the data folder itself (the database, the link-signing key).
        allowed_paths=[str(settings.output_dir), str(settings.data_dir / "voices")],
        blocked_paths=[str(settings.data_dir / "voiceforge.db"), str(settings.data_dir / "url-signing.key")],
        max_file_size=settings.max_upload_bytes,  # Gradio's own check, per file; the body guard's is per body
        show_error=False,  # handlers turn errors into messages; nothing else should reach a person
        ssr_mode=False,
        theme=theme,
        css=CSS,
        head=f"<script>{ui_js}</script>",  # Gradio inserts it as a script with exactly this text
    )
    for route in app.router.routes:  # the file route answers to the session's scopes
        if isinstance(route, Mount) and route.path == UI_PATH:
            route.app = FileGate(route.app, services)
    return [ui_js]
