"""Uploads end to end against a real server: the legacy chunked POST /v1/audio that the earlier
gateway's clients send (out of order, retried, missing chunks), resumable /v1/uploads (resume after
an interrupted PUT, checksums), refusal of non-audio and of path tricks, and the size limits."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server
from voiceforge.asr.scoring import wer

pytestmark = pytest.mark.slow

LJ = "en_ljspeech_LJ001-0001.wav"
F5 = "en_prompt_f5.wav"


def _chunk(c: httpx.Client, session: str, seq: int | str, data: bytes, last: str = "false") -> httpx.Response:
    form = {"session_id": session, "seq": str(seq), "is_last": last}
    return c.post("/v1/audio", data=form, files={"chunk": ("blob", data, "application/octet-stream")})


def _poll(c: httpx.Client, task_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = c.get(f"/v1/task/{task_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} still {body['status']} after {timeout} s")


def _files_outside_data(home: Path) -> set[Path]:
    """Everything the server process could write besides its data folder and its logs."""
    skip = {home / "data", home / "logs", home / "outputs", home / "stdout.log"}
    return {p for p in home.rglob("*") if not any(p == s or s in p.parents for s in skip)}


def _new_upload(c: httpx.Client, data: bytes, **extra: object) -> dict[str, Any]:
    r = c.post("/v1/uploads", json={"size": len(data), **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _put(c: httpx.Client, upload_id: str, data: bytes, first: int, last: int, total: int) -> httpx.Response:
    headers = {"Content-Range": f"bytes {first}-{last}/{total}", "Content-Type": "application/octet-stream"}
    return c.put(f"/v1/uploads/{upload_id}", content=data[first : last + 1], headers=headers)


def test_legacy_chunks_out_of_order_and_retried_give_a_transcript(
    server: Server, shared_audio: Path, manifest: dict[str, dict[str, Any]]
) -> None:
    data = (shared_audio / LJ).read_bytes()
    size = -(-len(data) // 5)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    assert len(pieces) == 5
    session = "3f2c9a4e-legacy-client"
    with server.client() as c:
        for seq in (3, 0):
            r = _chunk(c, session, seq, pieces[seq])
            assert r.status_code == 200 and r.json()["task_id"] is None, r.text
        last = _chunk(c, session, 4, pieces[4], last="true")
        assert last.status_code == 202 and last.json()["missing"] == [1, 2], last.text
        assert _chunk(c, session, 1, pieces[1]).json()["missing"] == [2]
        retried = _chunk(c, session, 1, pieces[1])  # a client retry: same bytes, nothing changes
        assert retried.status_code == 202 and retried.json()["missing"] == [2]
        done = _chunk(c, session, 2, pieces[2], last="0")
        assert done.status_code == 200, done.text
        task_id = done.json()["task_id"]
        assert task_id and done.json()["missing"] == []
        # The client did not hear the answer and sends its last chunk again: same task, no new one.
        again = _chunk(c, session, 4, pieces[4], last="1")
        assert again.status_code == 200 and again.json()["task_id"] == task_id
        clash = _chunk(c, session, 0, b"other bytes")
        assert clash.status_code == 409 and "other content" in clash.json()["error"]

        task = _poll(c, task_id)
        assert task["status"] == "succeeded", task
        result = task["result"]
        assert wer(manifest[LJ]["transcript"], result["transcript"]) < 0.2, result["transcript"]
        assert result["language"] == "en" and result["duration"] == pytest.approx(9.66, abs=0.05)
        assert 5.0 < result["speech_s"] <= 15.0 and result["container"] == "wav"
        upload = c.get(f"/v1/uploads/{result['upload_id']}").json()
        assert upload["status"] == "complete" and upload["kind"] == "chunked"
        assert upload["size"] == len(data) and upload["sha256"] == hashlib.sha256(data).hexdigest()
        assert c.put(f"/v1/uploads/{upload['upload_id']}", content=b"x").status_code == 409
        assert c.post(f"/v1/uploads/{upload['upload_id']}/complete").status_code == 409
    assert f"[{task_id}] transcribed prompt (en)" in server.log


def test_legacy_missing_chunk_and_bad_fields(server: Server) -> None:
    before = _files_outside_data(server.home)
    with server.client() as c:
        assert _chunk(c, "gap-session", 0, b"a" * 100).status_code == 200
        r = _chunk(c, "gap-session", 2, b"c" * 100, last="true")
        assert r.status_code == 202 and r.json()["missing"] == [1] and r.json()["task_id"] is None
        assert _chunk(c, "gap-session", 3, b"d").status_code == 400  # past the last chunk
        assert _chunk(c, "gap-session", 1, b"b", last="true").status_code == 409  # a second "last"

        bad: list[tuple[dict[str, str], str]] = [
            ({"session_id": "../../etc/passwd", "seq": "0"}, "session_id"),
            ({"session_id": "a/b", "seq": "0"}, "session_id"),
            ({"session_id": ".hidden", "seq": "0"}, "session_id"),
            ({"session_id": "x" * 129, "seq": "0"}, "session_id"),
            ({"session_id": "", "seq": "0"}, "session_id"),
            ({"session_id": "ok", "seq": "-1"}, "negative"),
            ({"session_id": "ok", "seq": "one"}, "whole number"),
            ({"session_id": "ok", "seq": ""}, "seq is required"),
            ({"session_id": "ok", "seq": "0", "is_last": "maybe"}, "is_last"),
        ]
        for form, says in bad:
            r = c.post("/v1/audio", data=form, files={"chunk": ("x.wav", b"RIFF", "audio/wav")})
            assert r.status_code == 400 and says in r.json()["error"], (form, r.text)
        r = c.post("/v1/audio", data={"session_id": "ok", "seq": "0"})
        assert r.status_code == 400 and "chunk is required" in r.json()["error"]
        r = c.post("/v1/audio", json={"session_id": "ok", "seq": 0})
        assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]
        r = _chunk(c, "ok", 1024, b"x")  # the default limit is 1024 chunks: seq 0-1023
        assert r.status_code == 413 and "1024 chunks" in r.json()["error"]
        for task_id in ("..%2F..%2Fetc%2Fpasswd", "0" * 31 + "g", "f" * 32):
            assert c.get(f"/v1/task/{task_id}").status_code == 404
    assert _files_outside_data(server.home) == before
    assert not list((server.home / "data" / "uploads").glob("**/*passwd*"))


def test_resumable_upload_resumes_after_an_interrupted_put(
    server: Server, shared_audio: Path, manifest: dict[str, dict[str, Any]]
) -> None:
    data = (shared_audio / F5).read_bytes()
    total, digest = len(data), hashlib.sha256(data).hexdigest()
    with server.client() as c:
        upload = _new_upload(c, data, sha256=digest, filename="../../evil\x00.wav", content_type="audio/wav")
        upload_id = upload["upload_id"]
        assert upload["received"] == 0 and upload["status"] == "open" and upload["chunk_size"] > 0
        assert upload["filename"] == "../../evil.wav"  # shown back, never used as a path

        assert _put(c, upload_id, data, 0, 99_999, total).json()["received"] == 100_000
        # The connection drops halfway through the next range: nothing of it is kept.
        _interrupted_put(server, upload_id, data[100_000:200_000], f"bytes 100000-199999/{total}")
        status = _wait_for(lambda: c.get(f"/v1/uploads/{upload_id}").json(), lambda s: True)
        assert status["received"] == 100_000
        # A range that overlaps what is stored (a retry of the same bytes) only adds the new part.
        assert _put(c, upload_id, data, 50_000, 149_999, total).json()["received"] == 150_000
        gap = _put(c, upload_id, data, 200_000, 209_999, total)
        assert gap.status_code == 409 and gap.json()["detail"]["received"] == 150_000
        changed = c.put(f"/v1/uploads/{upload_id}?offset=140000", content=b"\0" * 20_000)
        assert changed.status_code == 409 and "differ" in changed.json()["error"]
        early = c.post(f"/v1/uploads/{upload_id}/complete")
        assert early.status_code == 409 and "PUT the rest from offset 150000" in early.json()["error"]
        rest = c.put(f"/v1/uploads/{upload_id}?offset=150000", content=data[150_000:])
        assert rest.status_code == 200 and rest.json()["received"] == total

        done = c.post(f"/v1/uploads/{upload_id}/complete")
        assert done.status_code == 200, done.text
        info = done.json()
        assert info["status"] == "complete" and info["sha256"] == digest and info["container"] == "wav"
        assert info["duration"] == pytest.approx(5.33, abs=0.05)
        assert c.post(f"/v1/uploads/{upload_id}/complete").json()["status"] == "complete"  # idempotent
        assert _put(c, upload_id, data, 0, 9, total).status_code == 409  # complete: no more bytes

        heard = c.post(f"/v1/uploads/{upload_id}/transcribe", json={"language": "en"})
        assert heard.status_code == 200, heard.text
        assert wer(manifest[F5]["transcript"], heard.json()["transcript"]) < 0.2, heard.json()
        assert heard.json()["segments"] and heard.json()["duration"] == pytest.approx(5.33, abs=0.05)

        assert c.delete(f"/v1/uploads/{upload_id}").status_code == 204
        assert c.get(f"/v1/uploads/{upload_id}").status_code == 404
    folder = server.home / "data" / "uploads" / upload_id
    assert not folder.exists()


def test_checksum_mismatch_names_both_hashes(server: Server, shared_audio: Path) -> None:
    data = (shared_audio / F5).read_bytes()
    claimed = hashlib.sha256(b"another file").hexdigest()
    with server.client() as c:
        upload_id = _new_upload(c, data, sha256=claimed)["upload_id"]
        assert _put(c, upload_id, data, 0, len(data) - 1, len(data)).status_code == 200
        r = c.post(f"/v1/uploads/{upload_id}/complete")
        assert r.status_code == 400
        message = r.json()["error"]
        assert claimed in message and hashlib.sha256(data).hexdigest() in message, message
        assert c.get(f"/v1/uploads/{upload_id}").json()["status"] == "invalid"
        # The sha256 may also be given at completion only.
        upload_id = _new_upload(c, data)["upload_id"]
        _put(c, upload_id, data, 0, len(data) - 1, len(data))
        r = c.post(f"/v1/uploads/{upload_id}/complete", json={"sha256": claimed})
        assert r.status_code == 400 and claimed in r.json()["error"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"name,text\nvoice,hello\n" * 200, "not a recognised audio format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 4000, "PNG image"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 3000, "could not decode"),
    ],
)
def test_non_audio_upload_is_a_clear_400(server: Server, payload: bytes, says: str) -> None:
    with server.client() as c:
        upload_id = _new_upload(c, payload, filename="voice.wav", content_type="audio/wav")["upload_id"]
        c.put(f"/v1/uploads/{upload_id}", content=payload)
        r = c.post(f"/v1/uploads/{upload_id}/complete")
        assert r.status_code == 400 and says in r.json()["error"], r.text
        status = c.get(f"/v1/uploads/{upload_id}").json()
        assert status["status"] == "invalid" and says in status["error"]
        assert c.post(f"/v1/uploads/{upload_id}/transcribe").status_code == 409


def test_legacy_non_audio_fails_its_task_clearly(server: Server) -> None:
    with server.client() as c:
        r = _chunk(c, "not-audio", 0, b"just some text, not a recording " * 50, last="true")
        task = _poll(c, r.json()["task_id"])
    assert task["status"] == "failed" and task["error"]["code"] == "invalid_input"
    assert "not a recognised audio format" in task["error"]["message"]


def test_path_tricks_in_upload_ids(server: Server) -> None:
    before = _files_outside_data(server.home)
    with server.client() as c:
        for upload_id in ("..%2F..%2Fetc%2Fpasswd", "up_..", "%2e%2e", "up_" + "0" * 31, "UP_" + "a" * 32):
            for method, path in (
                ("GET", f"/v1/uploads/{upload_id}"),
                ("PUT", f"/v1/uploads/{upload_id}?offset=0"),
                ("DELETE", f"/v1/uploads/{upload_id}"),
                ("POST", f"/v1/uploads/{upload_id}/complete"),
                ("POST", f"/v1/uploads/{upload_id}/transcribe"),
            ):
                r = c.request(method, path, content=b"x" if method == "PUT" else None)
                assert r.status_code in (400, 404, 405), (method, path, r.status_code)
        r = c.post("/v1/uploads", json={"size": 10**12})
        assert r.status_code == 413 and "at most" in r.json()["error"]
        assert c.post("/v1/uploads", json={"size": 0}).status_code == 400
        assert c.post("/v1/uploads", json={"size": 5, "sha256": "abc"}).status_code == 400
    assert _files_outside_data(server.home) == before


def test_size_and_chunk_limits(start_server: Callable[..., Server]) -> None:
    srv = start_server(VOICEFORGE_MAX_UPLOAD_BYTES="65536", VOICEFORGE_MAX_UPLOAD_CHUNKS="3")
    with srv.client() as c:
        assert _chunk(c, "big", 0, b"a" * 40_000).status_code == 200
        r = _chunk(c, "big", 1, b"b" * 40_000)
        assert r.status_code == 413 and "65536 bytes" in r.json()["error"]
        assert _chunk(c, "big", 1, b"b" * 20_000).status_code == 200  # the refused one left nothing
        r = _chunk(c, "many", 3, b"x")
        assert r.status_code == 413 and "3 chunks" in r.json()["error"]
        r = _chunk(c, "huge", 0, b"z" * 70_000)
        assert r.status_code == 413
        assert c.post("/v1/uploads", json={"size": 65_537}).status_code == 413
        upload_id = _new_upload(c, b"x" * 1000)["upload_id"]
        r = c.put(f"/v1/uploads/{upload_id}", content=b"x" * 1001)
        assert r.status_code == 400 and "allows 1000" in r.json()["error"]
        streamed = iter([b"x" * 600, b"x" * 600])  # chunked transfer: no length to check up front
        r = c.put(f"/v1/uploads/{upload_id}", content=streamed)
        assert r.status_code == 400 and "runs past 1000 bytes" in r.json()["error"]
        r = c.put(f"/v1/uploads/{upload_id}", content=b"x" * 10, headers={"Content-Range": "bytes 0-19/1000"})
        assert r.status_code == 400 and "announces 20 bytes" in r.json()["error"]
        assert c.get(f"/v1/uploads/{upload_id}").json()["received"] == 0
    leftovers = [p for p in (srv.home / "data" / "uploads").rglob("*.tmp")]
    assert leftovers == []


def _interrupted_put(server: Server, upload_id: str, body: bytes, content_range: str) -> None:
    """Send a PUT whose connection closes after half its body, as a dropped mobile upload does."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"PUT /v1/uploads/{upload_id} HTTP/1.1\r\nHost: {host}\r\nContent-Range: {content_range}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.3)
    folder = server.home / "data" / "uploads" / upload_id
    assert not _wait_for(lambda: list(folder.glob(".*.tmp")), lambda left: not left), "temp file left"


def _wait_for(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
