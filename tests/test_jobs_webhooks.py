"""Webhooks: signatures, the SSRF check, and delivery with retries to a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from voiceforge.db import Database
from voiceforge.errors import InvalidInput
from voiceforge.jobs.base import Job, JobSpec, new_job_id
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    check_url,
    pin,
    sign,
    verify,
)


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id": "x"}'
    expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert sign("secret", body) == f"sha256={expected}"
    assert verify("secret", body, f"sha256={expected}")
    assert not verify("secret", body + b" ", f"sha256={expected}")
    assert not verify("other", body, f"sha256={expected}")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.5/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "http://224.0.0.1/hook",
        "http://[::127.0.0.1]/hook",  # IPv4-compatible loopback
        "http://[::a9fe:a9fe]/latest/meta-data",  # IPv4-compatible metadata address
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 (well-known prefix) of 127.0.0.1
        "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of the metadata address
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
    ],
)
def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="public addresses only"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https:///nohost", "http:// or https://"),
        ("http://example.com:99999/x", "not a valid URL"),
        ("http://no-such-host.invalid/x", "does not resolve"),
    ],
)
def test_malformed_targets_are_refused(url: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        check_url(url, allow_private=False)


def test_public_address_is_allowed() -> None:
    assert check_url("https://8.8.8.8/hook", allow_private=False) == "https://8.8.8.8/hook"
    for public in ("http://[64:ff9b::808:808]/hook", "http://[2002:808:808::1]/hook"):  # NAT64, 6to4
        assert check_url(public, allow_private=False) == public


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """One private address among public ones is enough to refuse (the resolver is the system's,
    answering for a name we made up)."""
    answers = ["8.8.8.8", "64:ff9b::7f00:1"]

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert host == "two.example"
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, port)) for a in answers]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidInput, match=r"64:ff9b::7f00:1 \(that is 127.0.0.1\)"):
        check_url("https://two.example/hook", allow_private=False)
    answers.pop()
    target = pin("https://two.example:8443/hook?x=1", allow_private=False)
    assert target.connect_url == "https://8.8.8.8:8443/hook?x=1"
    assert (target.host, target.server_name) == ("two.example:8443", "two.example")


class _Receiver(BaseHTTPRequestHandler):
    statuses: list[int]
    calls: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.put((dict(self.headers), body))
        self.send_response(self.statuses.pop(0) if self.statuses else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


Receiver = tuple[
    str, list[int], "queue.Queue[tuple[dict[str, str], bytes]]"
]  # url, statuses to answer, calls


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    statuses: list[int] = []
    calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), type("R", (_Receiver,), {"statuses": statuses, "calls": calls})
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", statuses, calls
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    db = Database(tmp_path)
    yield JobStore(db)
    db.close()


def finished_job(store: JobStore, url: str) -> Job:
    job, _ = store.create(
        JobSpec("tts", {"text": "x"}, "f" * 64, url),
        job_id=new_job_id(),
        owner="k",
        idempotency_key=None,
        base_url="http://api.example",
        max_queued=10,
    )
    store.claim(job.id)
    final = store.finish(job.id, "succeeded", result={"audio_url": f"/outputs/{job.id}.wav"})
    assert final is not None and final.webhook_state == "pending"
    return final


def wait_state(store: JobStore, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while store.get(job_id).webhook_state != state:
        assert time.monotonic() < deadline, store.get(job_id).webhook_state
        time.sleep(0.02)


def test_delivery_retries_server_errors_then_succeeds(store: JobStore, receiver: Receiver) -> None:
    url, statuses, calls = receiver
    statuses.extend([500, 503])
    sender = WebhookSender(store, "secret", allow_private=True, attempts=4, backoff_s=0.01)
    job = finished_job(store, url)
    sender.deliver(job)
    wait_state(store, job.id, "delivered")
    sender.close()
    bodies = [calls.get_nowait() for _ in range(3)]
    assert calls.empty()
    headers, body = bodies[-1]
    assert verify("secret", body, headers[SIGNATURE_HEADER])
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
    payload = json.loads(body)
    assert payload["id"] == job.id and payload["status"] == "succeeded"
    assert payload["result"]["audio_url"] == f"http://api.example/outputs/{job.id}.wav"
    assert {b for _, b in bodies} == {body}  # every attempt sends the same bytes


def test_a_client_error_is_not_retried(store: JobStore, receiver: Receiver) -> None:
    url, statuses, calls = receiver
    statuses.append(410)
    sender = WebhookSender(store, "secret", allow_private=True, attempts=4, backoff_s=0.01)
    job = finished_job(store, url)
    sender.deliver(job)
    wait_state(store, job.id, "failed")
    sender.close()
    assert calls.qsize() == 1


def test_delivery_connects_to_the_address_it_checked(
    store: JobStore, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name answers a public address for the check, then a private one. The
    attempt must connect to the address it checked, never look the name up again. The "network"
    here carries every connection to the local receiver and notes the address asked for."""
    url, _statuses, calls = receiver
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    lookups: list[str] = []
    connected: list[tuple[str, int]] = []
    system_lookup, system_connect = socket.getaddrinfo, socket.create_connection

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return system_lookup(host, *args, **kwargs)
        lookups.append(host)
        answer = "8.8.8.8" if len(lookups) == 1 else "10.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

    def network(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address)
        return system_connect(("127.0.0.1", port), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", network)
    sender = WebhookSender(store, "secret", allow_private=False, attempts=1, backoff_s=0.01)
    job = finished_job(store, f"http://rebind.test:{port}/hook")
    sender.deliver(job)
    wait_state(store, job.id, "delivered")
    sender.close()
    headers, _body = calls.get_nowait()
    assert connected == [("8.8.8.8", port)] and lookups == ["rebind.test"]
    assert headers["Host"] == f"rebind.test:{port}"


def test_a_private_target_is_refused_again_at_delivery(store: JobStore, receiver: Receiver) -> None:
    url, _statuses, calls = receiver
    sender = WebhookSender(store, "secret", allow_private=False, attempts=3, backoff_s=0.01)
    job = finished_job(store, url)
    sender.deliver(job)
    wait_state(store, job.id, "failed")
    sender.close()
    assert calls.empty()
