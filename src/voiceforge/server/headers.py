"""Response headers that keep user content from running as a page (issue 14, item 1).

Every response says ``X-Content-Type-Options: nosniff``, so a browser never guesses a type.

**Pages** (``/``, ``/ui``, ``/login``, ``/m``, ``/admin/``) carry a Content-Security-Policy: scripts
come from this origin's files or are inline scripts the page itself was served with, allowed one by
one by their SHA-256 hash (Gradio's boot scripts, the mobile page's script, and ``ui.js``, which
Gradio inserts from ``head`` at run time). There is no ``'unsafe-inline'``: a ``<script>`` or an
``onerror=`` that user content smuggles into the page does not run. Frames, plugins and other
sites' scripts are refused too. Only ``/ui`` also allows ``'unsafe-eval'``: Gradio 6's ``gr.HTML``
renders its (our, developer-written) template with ``Function()``; values reach it as arguments,
never as code.

**Files from user data** (outputs, voice prompts, uploads) leave through :func:`user_file_headers`:
their real audio type from an allow-list (anything else is ``application/octet-stream``), and
``Content-Disposition: attachment`` unless an ``<audio>``/``<video>``/``<track>`` element asked for
them (``Sec-Fetch-Dest``), plus a ``sandbox`` policy, so even a stored ``.html`` file opens as a
download, never as a page of this origin. Our routes call it; :class:`SecurityHeaders` applies it
to Gradio's file routes, which we do not write.

Pure ASGI; only HTML pages are buffered (to hash their scripts), never a stream.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_PREFIXES = ("/ui", "/admin/")
PAGE_PATHS = frozenset({"/", "/login", "/m", "/logout"})
# Where Gradio (mounted at /ui) hands out files (outputs, voice prompts, uploads, its cache) and
# streamed audio segments.
GRADIO_FILE_ROUTES = re.compile(r"/ui/gradio_api/(?:file=|file/|stream/[^/]+/[^/]+/[^/]+/)")
MEDIA_DESTINATIONS = frozenset({b"audio", b"video", b"track"})  # <audio>, <video>, <track> loads
USER_FILE_TYPES = {
    "wav": "audio/wav",
    "rf64": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "oga": "audio/ogg",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "caf": "audio/x-caf",
    "amr": "audio/amr",
    "matroska": "audio/x-matroska",
    "ts": "video/mp2t",
    "m3u8": "application/vnd.apple.mpegurl",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}  # fmt: skip; raw PCM (little-endian, so not audio/L16) and the rest: application/octet-stream
FILE_POLICY = "default-src 'none'; sandbox"  # a file opened as a document runs nothing, owns no origin
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.S | re.I)
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def page_policy(script_hashes: Iterable[str], *, eval_: bool = False) -> str:
    scripts = " ".join(["'self'", *(["'unsafe-eval'"] if eval_ else []), *sorted(set(script_hashes))])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",  # Gradio styles its components inline
            "img-src 'self' data: blob:",
            "media-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self' data: blob:",  # the UI's live player fetches each sentence's data: URL
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def script_hash(text: str | bytes) -> str:
    """The CSP source that allows exactly this inline script."""
    data = text.encode() if isinstance(text, str) else text
    return "'sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode() + "'"


def user_file_headers(name: str, fetch_dest: str | bytes | None) -> dict[str, str]:
    """Headers for a file from user data named ``name`` (only its extension counts), fetched by a
    request whose ``Sec-Fetch-Dest`` is ``fetch_dest``."""
    ext = PurePosixPath(name).suffix.lstrip(".").lower()
    dest = fetch_dest.encode() if isinstance(fetch_dest, str) else fetch_dest
    inline = dest in MEDIA_DESTINATIONS and ext in USER_FILE_TYPES
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(name).name)[-100:] or "file"
    return {
        "Content-Type": USER_FILE_TYPES.get(ext, "application/octet-stream"),
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{safe_name}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_POLICY,
    }


class SecurityHeaders:
    """ASGI middleware: nosniff everywhere, a CSP on pages, user-file headers on Gradio's file
    routes. ``scripts`` are inline scripts pages insert at run time (Gradio's ``head``)."""

    def __init__(self, app: ASGIApp, scripts: Iterable[str] = ()) -> None:
        self.app = app
        self.extra = tuple(script_hash(s) for s in scripts)
        self.plain = page_policy(self.extra).encode()
        self.ui_plain = page_policy(self.extra, eval_=True).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] in ("GET", "HEAD") and GRADIO_FILE_ROUTES.match(path):
            await self.app(scope, receive, self._user_file(scope, send))
        elif path in PAGE_PATHS or path.startswith(PAGE_PREFIXES):
            await self.app(scope, receive, self._page(path, send))
        else:
            await self.app(scope, receive, _with_nosniff(send))

    def _user_file(self, scope: Scope, send: Send) -> Send:
        dest = next((v for k, v in scope["headers"] if k == b"sec-fetch-dest"), None)
        name = unquote(scope["path"].rsplit("/", 1)[-1])
        fixed = {k.lower().encode(): v.encode() for k, v in user_file_headers(name, dest).items()}

        async def send_user_file(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in fixed]
                message["headers"] = [*kept, *fixed.items()]
            elif message["type"] == "http.response.start":
                message["headers"] = _nosniff(message.get("headers", ()))
            await send(message)

        return send_user_file

    def _page(self, path: str, send: Send) -> Send:
        """Pages get the policy; an HTML one is held until its inline scripts are hashed."""
        ui = path.startswith("/ui")
        start: Message | None = None
        body: list[bytes] = []

        async def send_page(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if kind.startswith(b"text/html"):
                    start = message  # held: the body decides the policy
                    return
                policy = self.ui_plain if ui else self.plain
                message["headers"] = [*_nosniff(headers), (b"content-security-policy", policy)]
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(body)
                hashes = [script_hash(s) for s in _INLINE_SCRIPT.findall(page)]
                policy = page_policy([*self.extra, *hashes], eval_=ui).encode()
                start["headers"] = [*_nosniff(start.get("headers", ())), (b"content-security-policy", policy)]
                await send(start)
                message = {"type": "http.response.body", "body": page, "more_body": False}
            await send(message)

        return send_page


def _with_nosniff(send: Send) -> Send:
    async def send_nosniff(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = _nosniff(message.get("headers", ()))
        await send(message)

    return send_nosniff


def _nosniff(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with nosniff, once (a route may have set it already)."""
    out = list(headers)
    if not any(k.lower() == _NOSNIFF[0] for k, _ in out):
        out.append(_NOSNIFF)
    return out
