"""Webhooks: signatures, the SSRF check, and delivery with retries to a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


def test_a_private_target_is_refused_again_at_delivery(store: JobStore, receiver: Receiver) -> None:
    url, _statuses, calls = receiver
    sender = WebhookSender(store, "secret", allow_private=False, attempts=3, backoff_s=0.01)
    job = finished_job(store, url)
    sender.deliver(job)
    wait_state(store, job.id, "failed")
    sender.close()
    assert calls.empty()
