"""Who is calling: API keys and JWT bearer tokens, and the scope each route needs.

Routes declare ``Depends(require("tts"))`` (:mod:`voiceforge.server.admission`, which also holds
the :class:`Guard` middleware and the UI's way in). When auth is off (a loopback bind, or
``--insecure-no-auth``) every caller is the local anonymous principal with every scope.

When auth is required, :class:`Guard` (ASGI middleware) authenticates every request before any
route runs, so a route that forgets ``require`` is still closed; ``require`` then checks the scope
(403) and counts the request against its category's rate limit. Open without a credential:
``/healthz`` and ``/readyz`` (probes), and ``/docs``, ``/redoc`` and ``/openapi.json`` only when
``public_docs`` is set (the API description names every endpoint; closed by default). ``/metrics``
needs a key with the admin scope (scrapers send it as ``bearer_token``).

Credentials: ``Authorization: Bearer <key or JWT>`` or ``X-API-Key: <key>``. Browsers cannot set
headers on EventSource or ``<audio src>`` requests, so ``?api_key=`` (or ``?access_token=``) is
accepted too, but only on GET requests to the event streams named in ``QUERY_CREDENTIAL_ROUTES``
(``/v1/jobs/{id}/events``, ``/admin/logs/stream``), to ``/outputs/`` and on the live-transcription
WebSocket (``/v1/audio/live``); anywhere else (a voice
named "stream", say) a query credential would end up in proxies' logs and browser history for
nothing. Prefer a short-lived JWT there.

One module per kind of credential, composed by :class:`Authenticator` (:mod:`.authenticator`):

- :mod:`.keys`: API keys, their verified-key cache and the first admin key;
- :mod:`.tokens`: JWT bearer tokens;
- :mod:`.links`: signed links to generated audio (``/outputs/<task>.<ext>?expires=…&signature=…``);
- :mod:`.sessions`: the web UI's signed session cookie and its revocation;
- :mod:`.credential`: where a request carries a key or token; :mod:`.principal`: who it names.

``/``, ``/login`` and the mobile page ``/m`` (which sends its key in a header) are open; a browser
that opens ``/ui`` without a valid session is sent to ``/login``.
"""

from voiceforge.server.auth.authenticator import DOCS_PATHS, PUBLIC_PATHS, Authenticator
from voiceforge.server.auth.credential import HOW, OUTPUTS, QUERY_CREDENTIAL_ROUTES, QUERY_CREDENTIAL_SOCKETS
from voiceforge.server.auth.principal import ANONYMOUS, SCOPES, SIGNED_LINK, Principal
from voiceforge.server.auth.sessions import SESSION_COOKIE, SESSION_PATHS, clear_session, set_session

__all__ = [
    "ANONYMOUS",
    "DOCS_PATHS",
    "HOW",
    "OUTPUTS",
    "PUBLIC_PATHS",
    "QUERY_CREDENTIAL_ROUTES",
    "QUERY_CREDENTIAL_SOCKETS",
    "SCOPES",
    "SESSION_COOKIE",
    "SESSION_PATHS",
    "SIGNED_LINK",
    "Authenticator",
    "Principal",
    "clear_session",
    "set_session",
]
