"""Input bounds against a real server with auth on: a body past its route's limit is refused with
413 as it arrives, a decompression bomb is refused before it inflates, and Gradio's upload route has
the API's size cap and rate limit. Memory is the server process's own peak RSS while it works."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import select
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
import soundfile

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

MIB = 1 << 20
GROWTH_LIMIT = 300 * 1000 * 1000  # bytes the server may grow by for any one hostile request
UPLOAD_LIMIT = 8 * MIB
ENV = {
    "VOICEFORGE_AUTH": "on",
    "VOICEFORGE_UI": "1",
    "VOICEFORGE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    "VOICEFORGE_RATE_LIMIT_UPLOADS": "3/minute",
}
KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(tmp_path_factory.mktemp("bounds"), ENV)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(srv: Server) -> str:
    keys = KEY_RE.findall(srv.log)
    assert len(keys) == 1, "the first start prints one admin key"
    return keys[0]


class PeakRss:
    """The server process's peak resident memory above where it started, sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.base = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # whatever the server does right after answering counts too
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def raw_post(
    srv: Server, path: str, headers: dict[str, str], pieces: Iterator[bytes]
) -> tuple[int, str, int]:
    """POST ``pieces`` on a bare socket until the server answers; (status, answer, bytes sent).

    A bare socket because an HTTP client that sees the connection close while it still sends
    reports a broken pipe, not the answer that came before it."""
    host, port = srv.url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sent = 0
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(head.encode())
        for piece in pieces:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:  # the server answered (and may have closed): stop sending
                break
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        select.select([s], [], [], 60)
        chunks = []
        s.settimeout(10)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while data := s.recv(65536):
                chunks.append(data)
    answer = b"".join(chunks).decode("utf-8", "replace")
    match = re.match(r"HTTP/1\.1 (\d{3})", answer)
    return (int(match[1]) if match else 0), answer, sent


def json_pieces(total: int, *, chunked: bool) -> Iterator[bytes]:
    """A JSON object of ``total`` bytes made as it is sent (never held whole), optionally chunked."""
    start, end = b'{"kind": "tts", "text": "', b'"}'
    filler = b"a" * MIB
    left = total - len(start) - len(end)
    parts = [start]
    while left > 0:
        parts.append(filler[: min(left, MIB)])
        left -= len(parts[-1])
        for part in parts:
            yield (f"{len(part):x}\r\n".encode() + part + b"\r\n") if chunked else part
        parts = []
    yield (f"{len(end):x}\r\n".encode() + end + b"\r\n0\r\n\r\n") if chunked else end


@pytest.mark.parametrize("path", ["/tts", "/v1/jobs"])
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_300_mib_body_is_413_as_it_arrives(srv: Server, key: str, path: str, framing: str) -> None:
    total = 300 * MIB
    chunked = framing == "chunked"
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    headers |= {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    with PeakRss(srv.process.pid) as rss:
        status, answer, sent = raw_post(srv, path, headers, json_pieces(total, chunked=chunked))
    print(f"\n{path} {framing}: {status} after {sent / MIB:.0f} MiB sent, server +{rss.growth / 1e6:.0f} MB")
    assert status == 413, answer[:500]
    assert rss.growth <= GROWTH_LIMIT, f"server grew by {rss.growth / 1e6:.0f} MB"
    assert sent < 100 * MIB, "the server read on past the limit"
    assert "at most 25 MiB" in answer and "connection: close" in answer.lower()
    with srv.client() as c:  # and it still serves
        assert c.get("/v1/voices", headers={"X-API-Key": key}).status_code == 200


def flac_bomb(*, blank_length: bool) -> bytes:
    """20 minutes of digital silence at 384 kHz: about 1.7 MB of FLAC, 1.8 GB of float32 samples.
    ``blank_length``: STREAMINFO's total-samples field is 0 ("unknown"), so no header check sees it."""
    rate = 384_000
    buffer = io.BytesIO()
    minute = np.zeros(rate * 60, np.int16)
    with soundfile.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(20):
            out.write(minute)
    data = bytearray(buffer.getvalue())
    if blank_length:
        data[21] &= 0xF0
        data[22:26] = bytes(4)
    return bytes(data)


@pytest.mark.parametrize("blank_length", [False, True], ids=["declared", "blank-length"])
@pytest.mark.parametrize("route", ["sync", "job"])
def test_a_flac_bomb_for_transcription_is_refused_before_it_inflates(
    srv: Server, key: str, route: str, blank_length: bool
) -> None:
    bomb = flac_bomb(blank_length=blank_length)
    assert len(bomb) < 2_000_000
    with srv.client(headers={"X-API-Key": key}) as c, PeakRss(srv.process.pid) as rss:
        if route == "sync":
            files = {"file": ("bomb.flac", bomb, "audio/flac")}
            r = c.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files=files)
            message = r.json()["error"]["message"]
        else:
            r = c.post("/v1/jobs", json={"kind": "transcription", "audio": base64.b64encode(bomb).decode()})
            message = r.json()["error"]
    kind = "blank" if blank_length else "declared"
    print(f"\nbomb {route} {kind}: {r.status_code}, server +{rss.growth / 1e6:.0f} MB")
    assert r.status_code == 400, r.text
    assert rss.growth <= GROWTH_LIMIT, f"server grew by {rss.growth / 1e6:.0f} MB"
    assert "384000 Hz" in message or "at most 600 s" in message, message


def _gradio_upload(srv: Server, key: str, size: int) -> tuple[int, str]:
    boundary = "vfbound"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        for part in (head, *[b"\0" * MIB] * (size // MIB), b"\0" * (size % MIB), tail):
            if part:  # an empty chunk would end the body
                yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
        yield b"0\r\n\r\n"

    headers = {
        "X-API-Key": key,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Transfer-Encoding": "chunked",
    }
    status, answer, _ = raw_post(srv, "/ui/gradio_api/upload", headers, pieces())
    return status, answer


def test_gradio_uploads_are_capped_and_rate_limited(srv: Server, key: str) -> None:
    status, answer = _gradio_upload(srv, key, UPLOAD_LIMIT + MIB)
    assert status == 413, answer[:500]
    assert "at most 8 MiB" in answer
    # Under the cap it is stored; the uploads rate limit (3/minute here) counts each one, the
    # refused one included.
    statuses = [_gradio_upload(srv, key, 1000)[0] for _ in range(3)]
    assert statuses[:2] == [200, 200], statuses
    assert statuses[2] == 429, statuses


def test_bounds_hold_without_a_key_too(srv: Server) -> None:
    """Without a key nothing is read at all: 401 before the body."""
    headers = {"Content-Type": "application/json", "Content-Length": str(300 * MIB)}
    status, _, sent = raw_post(srv, "/tts", headers, json_pieces(300 * MIB, chunked=False))
    assert status == 401
    assert sent < 100 * MIB
