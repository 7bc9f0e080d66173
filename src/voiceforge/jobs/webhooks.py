"""Webhooks: a signed POST of the finished job to the URL its submitter gave.

The body is the job as ``GET /v1/jobs/{id}`` shows it. ``X-Voiceforge-Signature`` is
``sha256=<hex HMAC-SHA256 of the raw body>`` keyed with ``webhook_secret``; receivers recompute
it over the bytes they received and compare in constant time (:func:`verify`). Delivery is at
least once: retried with backoff on network errors, 5xx, 408 and 429, recorded in the job row, and
picked up again after a restart, so receivers should treat the job id as the dedupe key.

Targets are checked against SSRF twice: at submit and again before each attempt (DNS may have
changed). Loopback, private, link-local and other non-global addresses are refused unless
``webhook_allow_private`` is set; redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from voiceforge import __version__
from voiceforge.errors import InvalidInput
from voiceforge.jobs.base import Job, JobView
from voiceforge.jobs.store import JobStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Voiceforge-Signature"
TIMESTAMP_HEADER = "X-Voiceforge-Timestamp"
_RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature over the raw body, compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` when it is an http(s) URL whose host resolves only to public addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidInput(f"webhook_url {url[:100]!r} is not a valid URL ({e})") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook_url {url[:100]!r} must be an http:// or https:// URL with a host name")
    if allow_private:
        return url
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as e:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve ({e}); check the spelling") from e
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise InvalidInput(
                f"webhook_url host {host!r} resolves to {address}, a loopback, private or link-local "
                "address; webhooks go to public addresses only (an operator can allow private "
                "targets with VOICEFORGE_WEBHOOK_ALLOW_PRIVATE=1)"
            )
    return url


class WebhookSender:
    """Delivers webhooks on its own threads, never on the event loop or an engine worker."""

    def __init__(
        self,
        store: JobStore,
        secret: str | None,
        *,
        allow_private: bool = False,
        timeout_s: float = 10.0,
        attempts: int = 5,
        backoff_s: float = 1.0,
    ) -> None:
        self.store = store
        self.secret = secret
        self.allow_private = allow_private
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address check
            headers={"User-Agent": f"voiceforge/{__version__}", "Content-Type": "application/json"},
        )
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        self._closing = threading.Event()

    def deliver(self, job: Job) -> None:
        """Send ``job``'s webhook in the background (no-op for a job without one)."""
        if job.webhook_url and not self._closing.is_set():
            self._executor.submit(self._deliver, job)

    def close(self) -> None:
        """Stop retrying; undelivered webhooks stay pending in the database for the next start."""
        self._closing.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _deliver(self, job: Job) -> None:
        assert job.webhook_url is not None
        if not self.secret:
            log.warning("[%s] webhook not sent: no webhook_secret is configured", job.id)
            self.store.webhook_done(job.id, delivered=False)
            return
        body = JobView.of(job, job.base_url).model_dump_json().encode()
        for attempt in range(1, self.attempts + 1):
            if self._closing.is_set():
                return
            try:
                check_url(job.webhook_url, allow_private=self.allow_private)
                response = self._client.post(
                    job.webhook_url,
                    content=body,
                    headers={
                        SIGNATURE_HEADER: sign(self.secret, body),
                        TIMESTAMP_HEADER: str(int(time.time())),
                        "X-Voiceforge-Job": job.id,
                        "X-Voiceforge-Event": f"job.{job.state}",
                    },
                )
            except InvalidInput as e:
                log.warning("[%s] webhook refused: %s", job.id, e.message)
                break
            except httpx.HTTPError as e:
                why = f"{type(e).__name__}: {e}"[:200]
            else:
                if response.is_success:
                    log.info(
                        "[%s] webhook delivered (HTTP %d, attempt %d)", job.id, response.status_code, attempt
                    )
                    self.store.webhook_done(job.id, delivered=True)
                    return
                why = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUSES:
                    log.warning("[%s] webhook rejected by the receiver (%s); not retried", job.id, why)
                    break
            if attempt < self.attempts:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "[%s] webhook attempt %d/%d failed (%s); retrying in %.0f s",
                    job.id, attempt, self.attempts, why, delay,
                )  # fmt: skip
                if self._closing.wait(delay):
                    return
            else:
                log.warning("[%s] webhook failed after %d attempts (%s)", job.id, attempt, why)
        self.store.webhook_done(job.id, delivered=False)
