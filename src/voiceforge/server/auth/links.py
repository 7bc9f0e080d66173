"""Signed links to generated audio: ``/outputs/<task>.<ext>?expires=<unix time>&signature=<HMAC>``.

Valid for ``output_url_ttl_s`` and for that one file only, so a mini-program or an ``<audio src>``
plays them without holding a key. The signing key (:func:`url_key`) also signs UI sessions.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.types import Scope

from voiceforge.config import Settings
from voiceforge.errors import Unauthorized
from voiceforge.server.auth.credential import OUTPUTS
from voiceforge.server.auth.principal import SIGNED_LINK, Principal


class Links:
    """Signs /outputs links (when ``required``) and checks a signed link's request."""

    def __init__(self, key: bytes, ttl_s: int, *, required: bool) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self.required = required

    def link(self, base_url: str, path: str) -> str:
        """The absolute URL of ``path``; an /outputs link is signed when auth is required."""
        url = base_url.rstrip("/") + path
        if not self.required or not path.startswith(OUTPUTS):
            return url
        expires = int(time.time()) + self.ttl_s
        return f"{url}?expires={expires}&signature={self._signature(path, expires)}"

    def _signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def principal(self, scope: Scope) -> Principal | None:
        """The principal of a signed /outputs link; None if the request carries no signature."""
        path: str = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if not path.startswith(OUTPUTS) or "signature" not in query or scope.get("method") != "GET":
            return None
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise Unauthorized(f"the link to {path} has no valid expires; request the audio again") from None
        if not hmac.compare_digest(self._signature(path, expires), query["signature"]):
            raise Unauthorized(f"the link to {path} has a bad signature; use the audio_url exactly as given")
        if expires < time.time():
            when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S")
            raise Unauthorized(f"the link to {path} expired at {when} UTC; request the audio again")
        return SIGNED_LINK


def url_key(settings: Settings) -> bytes:
    """The key that signs /outputs links: url_secret, else a random one kept in the data folder."""
    if settings.url_secret:
        return settings.url_secret.encode()
    path = settings.data_dir / "url-signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another node made it first: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
