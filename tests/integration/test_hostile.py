"""Hostile input against a real server: slow senders, deep and huge JSON, Unicode edge cases, path
tricks in every id field, header injection. Every answer is a 4xx a person can act on (never a
500), nothing lands outside the server's folders, and the server keeps serving.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

SLOW = {"VOICEFORGE_BODY_IDLE_S": "1.5", "VOICEFORGE_BODY_MIN_S": "3", "VOICEFORGE_UI": "1"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.integration.conftest import launch

    server = launch(tmp_path_factory.mktemp("hostile"), SLOW)
    yield server
    server.stop()


def raw_request(server: Server, head: str, parts: list[tuple[bytes, float]]) -> tuple[str, float]:
    """Send ``head``, then each (bytes, pause before it) until the server answers; return the
    answer and the seconds from the start to its first byte."""
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode())
        for part, pause in parts:
            readable, _, _ = select.select([s], [], [], pause)
            if readable:  # the server answered (and may have closed): stop sending
                break
            s.sendall(part)
        select.select([s], [], [], 30)
        first_byte_s = time.monotonic() - started
        chunks = []
        s.settimeout(5)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while data := s.recv(65536):
                chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace"), first_byte_s


@pytest.mark.parametrize("path", ["/tts", "/v1/jobs"])
def test_a_stalled_body_is_408_within_the_idle_limit(srv: Server, path: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Content-Length: 200\r\n\r\n"
    answer, took = raw_request(srv, head, [(b'{"text": "', 0.0), (b"slow", 10.0)])
    assert answer.startswith("HTTP/1.1 408"), answer[:300]
    assert "stopped arriving" in answer and "/v1/uploads" in answer
    assert "connection: close" in answer.lower()
    assert took < 8.0  # answered at the idle limit (1.5 s), not after the sender's pause


def test_a_trickling_body_is_cut_at_the_total_limit(srv: Server) -> None:
    head = "POST /tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Content-Length: 500\r\n\r\n"
    answer, took = raw_request(srv, head, [(b" ", 1.0) for _ in range(20)])  # a byte a second: never idle
    assert answer.startswith("HTTP/1.1 408"), answer[:300]
    assert took < 12.0  # body_min_s 3 + 500 B at 50 kB/s, not the 20 s the sender would take


def test_deeply_nested_json_is_a_400(srv: Server) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with srv.client() as c:
        r = c.post("/tts", content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
        r = c.post("/v1/jobs", content=deep, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text


def test_huge_base64_is_413_and_malformed_base64_names_the_field(start_server: Callable[..., Server]) -> None:
    small = start_server(VOICEFORGE_MAX_BODY_BYTES="65536", VOICEFORGE_MAX_UPLOAD_BYTES="32768")
    with small.client() as c:
        blob = base64.b64encode(b"\0" * 200_000).decode()
        r = c.post("/tts", json={"text": "hi", "prompt_audio": blob})
        assert r.status_code == 413 and "KiB" in r.json()["error"]
        blob = base64.b64encode(b"\0" * 40_000).decode()  # fits the body, not the upload limit
        r = c.post("/tts", json={"text": "hi", "prompt_audio": blob})
        assert r.status_code == 413 and "prompt_audio" in r.json()["error"]
        for bad in ("####", "YWJj=ZGVm", "A" * 5):
            r = c.post("/tts", json={"text": "hi", "prompt_audio": bad})
            assert r.status_code == 400 and "prompt_audio" in r.json()["error"], (bad, r.text)


@pytest.mark.parametrize(
    "text",
    [
        "\u202eevil\u202c text",  # right-to-left override
        "zero\u200bwidth\u200djoin\ufeff",
        "e\u0301\u0301\u0301\u0301 combining",
        "\ud800 lone surrogate",
        "\x00\x1b[31m control",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family",
        "مرحبا hello",
        "¹1 ½ ① ₂",
    ],
)
def test_unicode_edge_cases_are_spoken_or_refused_clearly(srv: Server, text: str) -> None:
    # json= would refuse the lone surrogate; send the escape as a client may.
    body = json.dumps({"text": text})
    with srv.client() as c:
        r = c.post("/tts", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            assert r.json()["error"] and "Traceback" not in r.text


TRICKS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f",
    "a/../../b",
    "C:\\Windows",
    "x%00y",
    "…" * 80,
]


@pytest.mark.parametrize("trick", TRICKS)
def test_path_tricks_in_every_id_field(srv: Server, trick: str) -> None:
    # Redirects are followed: the router's trailing-slash redirect stays on this server.
    with srv.client(follow_redirects=True) as c:
        for method, path in [
            ("GET", f"/outputs/{trick}"),
            ("GET", f"/outputs/{trick}.wav"),
            ("GET", f"/v1/voices/{trick}"),
            ("DELETE", f"/v1/voices/{trick}"),
            ("GET", f"/v1/uploads/{trick}"),
            ("GET", f"/v1/jobs/{trick}"),
            ("GET", f"/v1/task/{trick}"),
        ]:
            r = c.request(method, path)
            assert r.status_code < 500 and "root:x:0:0" not in r.text, (method, path, r.text[:200])
            if not r.history:  # else the URL normalised away from the id route ("/x/../" is "/")
                assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:200])
        files = {"chunk": ("c.bin", b"RIFF", "application/octet-stream")}
        r = c.post("/v1/audio", data={"session_id": trick, "seq": "0", "is_last": "true"}, files=files)
        assert 400 <= r.status_code < 500, r.text
        r = c.post("/tts", json={"text": "hi", "voice_id": trick})
        assert 400 <= r.status_code < 500, r.text
    home: Path = srv.home
    assert not (home.parent / "etc").exists() and not (Path("/") / "b").exists()


def test_header_injection_in_file_names_stays_out_of_headers(srv: Server, shared_audio: Path) -> None:
    clip = (shared_audio / "en_ljspeech_LJ001-0002_short.wav").read_bytes()
    name = 'x.wav"\r\nX-Injected: yes\r\n'
    with srv.client() as c:
        r = c.post("/v1/uploads", json={"size": len(clip), "filename": name})
        assert r.status_code in (201, 400), r.text
        if r.status_code == 201:
            upload = r.json()
            assert "\r" not in (upload["filename"] or "") and "\n" not in (upload["filename"] or "")
            r = c.get(f"/v1/uploads/{upload['upload_id']}")
            assert "x-injected" not in r.headers
        files = {"file": (name, clip, "audio/wav")}
        r = c.post("/v1/audio/transcriptions", files=files, data={"model": "whisper-1"})
        assert r.status_code in (200, 400) and "x-injected" not in r.headers
        assert c.get("/readyz").status_code == 200


def test_the_ui_serves_outputs_but_not_the_data_folder(srv: Server) -> None:
    """Gradio's file route must not hand out the database or the link-signing key."""
    with srv.client() as c:
        for name in ("voiceforge.db", "voiceforge.db-wal", "url-signing.key"):
            for path in (f"data/{name}", str(srv.home / "data" / name)):
                r = c.get(f"/ui/gradio_api/file={path}")
                assert r.status_code in (403, 404), (path, r.status_code)
