"""One admission for the API and the UI, against a real server with auth and the UI on: a narrow
key's UI session gets what the same key gets from the API and nothing more, UI work is audited and
charged so a restart keeps the quota, and uploads, chunked sessions, tasks and outputs belong to
the key that made them. The UI is driven through Gradio's own HTTP API (gradio_client)."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
ENV = {"VOICEFORGE_UI": "1", "VOICEFORGE_AUTH": "on", "VOICEFORGE_KEY_CACHE_S": "1"}
F5 = "en_prompt_f5.wav"
RUNNING = ("queued", "running")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("admission"), ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    return str(KEY_RE.findall(server.log)[0])


@pytest.fixture(scope="module")
def saved_voice(server: Server) -> Any:
    """A saved voice written straight into the server's library (no enrollment: seconds saved)."""
    from tests.test_library import WAV, make_profile
    from voiceforge.db import Database
    from voiceforge.voices.library import VoiceLibrary

    db = Database(server.home / "data")
    try:
        return VoiceLibrary(server.home / "data", db=db).create(
            "Secret Sam", prompt=WAV, profile=make_profile(transcript="我的秘密文本。"),
            consent=True, consent_by="test",
        )  # fmt: skip
    finally:
        db.close()


def new_key(server: Server, name: str, scopes: str, quota: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "voiceforge", "keys", "create", name, "--scopes", scopes,
         "--quota-chars", str(quota)],
        cwd=server.home, env={**os.environ, "HF_HUB_OFFLINE": "1", **ENV},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def session(server: Server, key: str) -> str:
    r = httpx.post(server.url + "/login", data={"key": key}, follow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    return str(r.cookies["voiceforge_session"])


def ui(server: Server, cookie: str) -> Client:
    """The page as a browser session sees it (its load handlers run first, as a page load does)."""
    client = Client(f"{server.url}/ui/", headers=jar(cookie), verbose=False)
    client.predict("zh", [], api_name="/on_load")
    return client


def generate(page: Client, text: str) -> tuple[str, Any]:
    """Press Generate (preset mode, the first stock voice); the status line and the result."""
    # Generate's inputs, as the page sends them (ui/generate.py GenerateForm, by component order):
    # history, language, engine, mode, text, voice, prompt, prompt text, instruction, seed, speed,
    # format, streaming
    status, result, *_ = page.predict(
        [], "中文", "kokoro", "preset", text, "jf_alpha", None, "", "", 1, 1.0, "wav", False,
        api_name="/on_generate",
    )  # fmt: skip
    return str(status), result


def file_route(server: Server, cookie: str, path: Path) -> int:
    return httpx.get(f"{server.url}/ui/gradio_api/file={path}", headers=jar(cookie)).status_code


def jar(cookie: str) -> dict[str, str]:
    return {"Cookie": f"voiceforge_session={cookie}"}


def audit_rows(server: Server, key: str) -> list[tuple[Any, ...]]:
    time.sleep(1.5)  # the audit writer flushes every second
    db = sqlite3.connect(server.home / "data" / "voiceforge.db")
    try:
        query = "SELECT method, endpoint, status, chars, text_sha256 FROM audit WHERE key_id = ? ORDER BY id"
        return db.execute(query, (key.split("_")[1],)).fetchall()
    finally:
        db.close()


def test_a_tts_key_in_the_ui_cannot_list_fetch_or_transcribe_what_the_api_refuses(
    server: Server, admin: str, saved_voice: Any, shared_audio: Path
) -> None:
    tts = new_key(server, "ui-tts-only", "tts")
    with server.client() as c:  # the API's answer to the same key, for comparison
        assert c.get("/v1/voices", headers=as_key(tts)).status_code == 403
        assert c.get(f"/v1/voices/{saved_voice.id}/prompt", headers=as_key(tts)).status_code == 403
    folder = server.home / "data" / "voices" / saved_voice.id
    narrow, wide = session(server, tts), session(server, admin)
    page = ui(server, narrow)

    table, pick = page.predict("中文", api_name="/listing")
    assert "我的秘密文本" not in str(table) and saved_voice.id not in str(table) + str(pick)
    assert saved_voice.id not in str(page.predict("zero_shot", "中文", "kokoro", api_name="/on_mode"))
    try:
        previewed = page.predict(saved_voice.id, api_name="/preview")
    except AppError:  # Gradio itself refuses a voice this session's picker never offered
        previewed = None
    assert previewed is None
    for name in ("prompt.wav", "profile.npz"):
        assert file_route(server, narrow, folder / name) == 404, name
    status, transcript = page.predict(handle_file(str(shared_audio / F5)), "中文", api_name="/on_prompt")
    assert "asr" in status and not transcript.get("value"), (status, transcript)

    admin_page = ui(server, wide)  # the same calls with a key that may: the test can tell them apart
    table, _pick = admin_page.predict("中文", api_name="/listing")
    assert "我的秘密文本" in str(table)
    assert saved_voice.id in str(admin_page.predict("zero_shot", "中文", "kokoro", api_name="/on_mode"))
    assert file_route(server, wide, folder / "prompt.wav") == 200
    status, transcript = admin_page.predict(
        handle_file(str(shared_audio / F5)), "中文", api_name="/on_prompt"
    )
    assert "✅" in status and "nature" in transcript["value"].lower(), (status, transcript)

    rows = audit_rows(server, tts)
    assert ("UI", "/ui/transcribe", 403, 0, None) in rows


def test_ui_outputs_belong_to_their_session(server: Server, admin: str) -> None:
    alice, bob = new_key(server, "ui-alice", "tts"), new_key(server, "ui-bob", "tts")
    alice_ui, bob_cookie = session(server, alice), session(server, bob)
    status, _result = generate(ui(server, alice_ui), "Alice made this one in the UI.")
    assert "✅" in status, status
    name = re.search(r"[0-9a-f]{32}", status)[0] + ".wav"  # type: ignore[index]
    made = server.home / "outputs" / name
    assert file_route(server, alice_ui, made) == 200
    assert file_route(server, bob_cookie, made) == 404  # another key's take, even with its path
    with server.client() as c:
        assert c.get(f"/outputs/{name}", headers=jar(alice_ui)).status_code == 200
        assert c.get(f"/outputs/{name}", headers=jar(bob_cookie)).status_code == 404


def test_outputs_are_served_to_their_owner_an_admin_or_a_signed_link(server: Server, admin: str) -> None:
    alice, bob = new_key(server, "api-alice", "tts"), new_key(server, "api-bob", "tts")
    with server.client() as c:
        r = c.post("/tts", json={"text": "Only Alice may fetch this."}, headers=as_key(alice))
        assert r.status_code == 200, r.text
        signed = httpx.URL(r.json()["audio_url"])
        bare = signed.copy_with(query=None)
        assert c.get(bare, headers=as_key(alice)).status_code == 200
        refused = c.get(bare, headers=as_key(bob))
        assert refused.status_code == 404 and "does not exist" in refused.json()["error"]
        assert c.get(bare, headers=as_key(admin)).status_code == 200
        assert c.get(signed).status_code == 200  # the link itself, no key: what <audio src> does
        again = c.post("/tts", json={"text": "Only Alice may fetch this."}, headers=as_key(bob))
        assert again.json()["cached"] is True  # handed the same file: now it is Bob's to fetch too
        assert c.get(bare, headers=as_key(bob)).status_code == 200


def test_a_chunked_session_cannot_be_hijacked_by_another_key(
    server: Server, admin: str, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    alice, mallory = (
        new_key(server, "chunk-alice", "uploads"),
        new_key(server, "chunk-mallory", "uploads asr"),
    )
    data = (shared_audio / F5).read_bytes()
    half = len(data) // 2

    def chunk(key: str, seq: int, piece: bytes, last: bool) -> httpx.Response:
        form = {"session_id": "meeting-notes", "seq": str(seq), "is_last": "true" if last else "false"}
        return c.post("/v1/audio", data=form, files={"chunk": ("c", piece)}, headers=as_key(key))

    with server.client() as c:
        first = chunk(alice, 0, data[:half], False)
        assert first.status_code == 200 and first.json()["missing"] is None, first.text
        stolen = chunk(mallory, 1, data[half:], True)  # the same session_id, another key
        assert stolen.status_code == 202 and stolen.json()["task_id"] is None, stolen.text
        assert stolen.json()["upload_id"] != first.json()["upload_id"] and stolen.json()["missing"] == [0]
        done = chunk(alice, 1, data[half:], True)
        assert done.status_code == 200 and done.json()["task_id"], done.text
        task_id, upload_id = done.json()["task_id"], done.json()["upload_id"]
        deadline = time.monotonic() + 120
        while (t := c.get(f"/v1/task/{task_id}", headers=as_key(alice)).json())["status"] in RUNNING:
            assert time.monotonic() < deadline, t
            time.sleep(0.5)
        assert t["status"] == "succeeded" and "nature" in t["result"]["transcript"].lower(), t
        for method, path in (
            ("GET", f"/v1/task/{task_id}"),
            ("GET", f"/v1/uploads/{upload_id}"),
            ("POST", f"/v1/uploads/{upload_id}/transcribe"),
            ("DELETE", f"/v1/uploads/{upload_id}"),
        ):
            r = c.request(method, path, headers=as_key(mallory))
            assert r.status_code == 404, (path, r.text)
        assert c.get(f"/v1/task/{task_id}", headers=as_key(admin)).status_code == 200
        job = c.post(
            "/v1/jobs", json={"kind": "transcription", "upload_id": upload_id}, headers=as_key(admin)
        )
        assert job.status_code == 202, job.text  # an admin may use anyone's upload
        assert c.get(f"/v1/uploads/{upload_id}", headers=as_key(alice)).status_code == 200


def test_saving_a_voice_in_the_ui_needs_the_consent_box(
    server: Server, admin: str, shared_audio: Path
) -> None:
    page = ui(server, session(server, admin))
    status, *_ = page.predict(  # language, prompt, its text, name, consent (ui/library.py SaveForm)
        "中文", handle_file(str(shared_audio / F5)), "", "Unasked", False, api_name="/on_save"
    )
    assert "同意" in status, status
    with server.client() as c:
        assert c.get("/v1/voices/Unasked", headers=as_key(admin)).status_code == 404


def test_ui_synthesis_is_audited_and_its_quota_survives_a_restart(server: Server) -> None:
    """The last test of the module: it restarts the server."""
    key = new_key(server, "ui-metered", "tts", quota=50)
    cookie = session(server, key)
    text = "Thirty characters, UI-spoken."  # 29
    status, _ = generate(ui(server, cookie), text)
    assert "✅" in status, status
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert ("UI", "/ui/generate", 200, len(text), digest) in audit_rows(server, key)

    server.stop()
    again = launch(server.home, ENV)
    try:
        status, _ = generate(ui(again, cookie), "Another thirty characters here.")  # 29 + 31 > 50
        assert "50" in status and "⚠️" in status, status
        with again.client() as c:
            r = c.post("/tts", json={"text": "x" * 22}, headers=as_key(key))  # 29 + 22 > 50
            assert r.status_code == 429 and "daily quota of 50 characters" in r.json()["error"], r.text
            assert c.post("/tts", json={"text": "x" * 21}, headers=as_key(key)).status_code == 200
    finally:
        again.stop()
