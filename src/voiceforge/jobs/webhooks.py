"""Webhooks: a signed POST of the finished job to the URL its submitter gave.

The body is the job as ``GET /v1/jobs/{id}`` shows it. ``X-Voiceforge-Signature`` is
``sha256=<hex HMAC-SHA256 of the raw body>`` keyed with ``webhook_secret``; receivers recompute
it over the bytes they received and compare in constant time (:func:`verify`). Delivery is at
least once: retried with backoff on network errors, 5xx, 408 and 429, recorded in the job row, and
picked up again after a restart, so receivers should treat the job id as the dedupe key.

Targets are checked against SSRF twice: at submit and again before each attempt (DNS may have
changed). Every address the host resolves to must be public, in every form it can take: an IPv6
address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) is judged by that IPv4 address too. Loopback,
private, link-local and other non-global addresses are refused unless ``webhook_allow_private``
is set. Each attempt connects to the address it just checked (the URL's host is replaced by it;
``Host`` and the TLS server name stay the URL's), so DNS cannot answer differently between the
check and the connection (rebinding). Redirects are never followed.
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
from dataclasses import dataclass
from typing import Any
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
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291); never a real target
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): site-internal
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """Where one delivery attempt goes: ``connect_url`` is the URL with its host replaced by the
    address that was checked; ``host`` (the Host header) and ``server_name`` (TLS) stay the URL's."""

    url: str
    connect_url: str
    host: str
    server_name: str


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature over the raw body, compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` when it is an http(s) URL whose host resolves only to public addresses."""
    host, port = _parse(url)
    if not allow_private:
        _resolve(host, port, allow_private=False)
    return url


def pin(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host once, check every address, and aim at the first one."""
    host, port = _parse(url)
    address = _resolve(host, port, allow_private=allow_private)[0]
    parsed = httpx.URL(url)
    return Target(
        url=url,
        connect_url=str(parsed.copy_with(host=str(address))),
        host=parsed.netloc.decode("ascii"),
        server_name=parsed.raw_host.decode("ascii"),
    )


def refused(address: IPAddress) -> IPAddress | None:
    """The address (``address`` or an IPv4 address inside it) that makes it no public target."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refused(address.ipv4_mapped)
        if address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL:
            return address
        inside: list[IPAddress] = [
            *(address.teredo or ()),
            *([address.sixtofour] if address.sixtofour else []),
        ]
        if address in _NAT64:
            inside.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
        for v4 in inside:
            if refused(v4) is not None:
                return v4
    if not address.is_global or address.is_multicast:
        return address
    return None


def _parse(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidInput(f"webhook_url {url[:100]!r} is not a valid URL ({e})") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook_url {url[:100]!r} must be an http:// or https:// URL with a host name")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Every address ``host`` resolves to, each checked unless ``allow_private``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve ({e}); check the spelling") from e
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses if not allow_private else ():
        bad = refused(address)
        if bad is not None:
            shown = str(address) if bad == address else f"{address} (that is {bad})"
            raise InvalidInput(
                f"webhook_url host {host!r} resolves to {shown}, a loopback, private or link-local "
                "address; webhooks go to public addresses only (an operator can allow private "
                "targets with VOICEFORGE_WEBHOOK_ALLOW_PRIVATE=1)"
            )
    if not addresses:
        raise InvalidInput(f"webhook_url host {host!r} has no address; check the spelling")
    return addresses


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
                target = pin(job.webhook_url, allow_private=self.allow_private)
                response = self._client.post(
                    target.connect_url,  # the checked address: no second DNS answer to trust
                    content=body,
                    headers={
                        "Host": target.host,
                        SIGNATURE_HEADER: sign(self.secret, body),
                        TIMESTAMP_HEADER: str(int(time.time())),
                        "X-Voiceforge-Job": job.id,
                        "X-Voiceforge-Event": f"job.{job.state}",
                    },
                    extensions=_tls_name(target),
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


def _tls_name(target: Target) -> dict[str, Any]:
    """The certificate is checked against the URL's host name, not the address connected to."""
    return {"sni_hostname": target.server_name} if target.connect_url.startswith("https:") else {}
