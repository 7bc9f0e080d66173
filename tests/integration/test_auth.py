"""Auth, limits, quotas, the word filter and audit rows against a real server with auth on."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

SECRET = "integration-test-secret-long-enough-for-hs256"
KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
ENV = {
    "VOICEFORGE_UI": "1",  # the sweep checks that the UI sends people to /login
    "VOICEFORGE_RATE_LIMIT_AUTH_FAILURES": "500/minute",  # the sweep fails auth on purpose, often
    "VOICEFORGE_AUTH": "on",
    "VOICEFORGE_JWT_SECRET": SECRET,
    "VOICEFORGE_KEY_CACHE_S": "1",
}
issued: list[str] = []  # every key and token handed out, to look for in the logs at the end


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    srv = launch(home, ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin_key(server: Server) -> str:
    keys = KEY_RE.findall(server.log)
    assert len(keys) == 1, "the first start prints exactly one admin key"
    issued.append(keys[0])
    return keys[0]


def keys_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`voiceforge keys …` run by an operator in the server's folder (same data/voiceforge.db)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **ENV}
    return subprocess.run(
        [sys.executable, "-m", "voiceforge", "keys", *args],
        cwd=server.home, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def new_key(server: Server, name: str, scopes: str, quota: int = 0) -> str:
    proc = keys_cli(server, "create", name, "--scopes", scopes, "--quota-chars", str(quota))
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    assert KEY_RE.fullmatch(key) and key not in proc.stderr
    issued.append(key)
    return key


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_probes_are_open_and_everything_else_needs_a_key(server: Server, admin_key: str) -> None:
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for method, path in [
            ("POST", "/tts"),
            ("GET", "/v1/voices"),
            ("GET", "/metrics"),
            ("GET", "/admin/logs/stream"),
            ("POST", "/admin/restart"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/outputs/0123456789abcdef0123456789abcdef.wav"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer <key>" in r.json()["error"], path
        r = c.post("/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "alloy"})
        assert r.status_code == 401 and "needs an API key" in r.json()["error"]["message"]  # OpenAI shape
        assert c.get("/v1/voices", headers=as_key(admin_key)).status_code == 200
        assert c.get("/metrics", headers={"X-API-Key": admin_key}).status_code == 200


OPEN = {"/healthz", "/readyz", "/", "/login", "/logout", "/m"}  # probes, the login page, static pages


def test_every_route_in_the_spec_needs_a_key(server: Server, admin_key: str) -> None:
    """Not a list someone keeps: every operation the API describes, called without a key."""
    with server.client() as c:
        spec = c.get("/openapi.json", headers=as_key(admin_key)).json()
        called = 0
        for path, operations in spec["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in operations:
                if path in OPEN:
                    continue
                r = c.request(method.upper(), concrete)
                assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
                called += 1
        assert called > 30
        for path in ("/ui", "/ui/", "/ui/config", "/ui/gradio_api/info"):  # the UI sends people to /login
            r = c.get(path)
            assert r.status_code in (303, 401), (path, r.status_code)
            assert r.status_code == 401 or r.headers["location"].endswith("/login")
        for path in OPEN - {"/logout"}:  # nothing behind them: static pages and probes
            r = c.get(path)
            assert r.status_code in (200, 307), (path, r.status_code)
            assert not KEY_RE.search(r.text)


def test_a_cli_key_has_its_scopes_only(server: Server) -> None:
    key = new_key(server, "speaker", "tts")
    with server.client() as c:
        r = c.post("/tts", json={"text": "Keys open doors.", "seed": 3}, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        assert c.get(r.json()["audio_url"], headers=as_key(key)).status_code == 200
        for method, path, scope in [
            ("GET", "/v1/voices", "voices"),
            ("GET", "/admin/restart", "admin"),
            ("GET", "/admin/logs/stream", "admin"),
            ("GET", "/metrics", "admin"),
        ]:
            r = c.request(method, path, headers=as_key(key))
            assert r.status_code == 403, (path, r.text)
            assert f"'{scope}' scope" in r.json()["error"]
    listed = keys_cli(server, "list")
    assert listed.returncode == 0 and "speaker" in listed.stdout and key not in listed.stdout


def test_output_links_are_signed_for_that_file_only(server: Server) -> None:
    key = new_key(server, "player", "tts")
    with server.client() as c:
        r = c.post("/tts", json={"text": "Play me without a key.", "seed": 4}, headers=as_key(key))
        assert r.status_code == 200, r.text
        url = httpx.URL(r.json()["audio_url"])
        assert {"expires", "signature"} <= set(url.params)
        played = c.get(url)  # what an <audio src> or a mini-program does: no key
        assert played.status_code == 200 and played.content[:4] == b"RIFF"
        assert c.get(url.copy_with(query=None)).status_code == 401
        other = url.copy_with(path="/outputs/" + "0" * 32 + ".wav")
        r = c.get(other)
        assert r.status_code == 401 and "bad signature" in r.json()["error"]
        secret = (server.home / "data" / "url-signing.key").read_bytes().strip()
        past = int(time.time()) - 10
        signature = hmac.new(secret, f"{url.path}\n{past}".encode(), hashlib.sha256).hexdigest()
        r = c.get(url.copy_with(params={"expires": past, "signature": signature}))
        assert r.status_code == 401 and "expired" in r.json()["error"]
        assert c.post(url.copy_with(path="/tts"), json={"text": "no"}).status_code == 401


def test_a_revoked_key_is_refused(server: Server) -> None:
    key = new_key(server, "leaked", "voices")
    key_id = key.split("_")[1]
    with server.client() as c:
        assert c.get("/v1/voices", headers=as_key(key)).status_code == 200
        proc = keys_cli(server, "revoke", key_id)
        assert proc.returncode == 0, proc.stderr
        time.sleep(1.5)  # VOICEFORGE_KEY_CACHE_S=1 in this server
        r = c.get("/v1/voices", headers=as_key(key))
        assert r.status_code == 401 and "revoked" in r.json()["error"]
        r = c.get("/v1/voices", headers=as_key(key[:-3] + "abc"))
        assert r.status_code == 401 and "not valid" in r.json()["error"]


def test_the_ui_session_is_signed_scoped_to_the_ui_and_ends_with_its_key(server: Server) -> None:
    key = new_key(server, "browser", "admin")
    with server.client() as c:
        r = c.post("/login", data={"key": key}, follow_redirects=False)
        assert r.status_code == 303, r.text
        session = r.cookies["voiceforge_session"]
        c.cookies.clear()  # each request below says which cookie it sends
        assert session.startswith("vfs1.") and key.split("_")[-1] not in session  # never the key
        jar = {"Cookie": f"voiceforge_session={session}"}
        assert c.get("/admin/restart", headers=jar).status_code == 200  # stands in on /admin/
        assert c.get("/admin/restart", headers=as_key(session)).status_code == 401  # not a credential
        assert c.get("/v1/voices", headers=jar).status_code == 401  # nor a cookie off the UI's paths
        body, mac = session.removeprefix("vfs1.").split(".")
        forged = body.replace(body[10], "A" if body[10] != "A" else "B", 1)
        r = c.get("/admin/restart", headers={"Cookie": f"voiceforge_session=vfs1.{forged}.{mac}"})
        assert r.status_code == 401 and "sign in again" in r.json()["error"]
        r = c.get("/admin/restart", headers={"Cookie": f"voiceforge_session={key}"})  # the old kind
        assert r.status_code == 401
        assert keys_cli(server, "revoke", key.split("_")[1]).returncode == 0
        time.sleep(1.5)  # VOICEFORGE_KEY_CACHE_S=1 in this server
        r = c.get("/admin/restart", headers=jar)
        assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_jwt_bearer_tokens(server: Server) -> None:
    now = int(time.time())
    good = jwt.encode({"sub": "carol", "scope": "voices", "exp": now + 300}, SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "carol", "scope": "voices", "exp": now - 600}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "carol", "scope": "admin", "exp": now + 300}, "x" * 40, algorithm="HS256")
    issued.extend([good, expired, forged])
    with server.client() as c:
        assert c.get("/v1/voices", headers=as_key(good)).status_code == 200
        r = c.post("/tts", json={"text": "hi"}, headers=as_key(good))
        assert r.status_code == 403 and "'tts' scope" in r.json()["error"]
        r = c.get("/v1/voices", headers=as_key(expired))
        assert r.status_code == 401 and "expired" in r.json()["error"]
        r = c.get("/admin/restart", headers=as_key(forged))
        assert r.status_code == 401 and "signature" in r.json()["error"]


def test_uploads_are_limited_to_ten_a_minute(server: Server) -> None:
    key = new_key(server, "uploader", "uploads")
    with server.client() as c:
        codes = [
            c.post("/v1/uploads", json={"size": 1000}, headers=as_key(key)).status_code for _ in range(10)
        ]
        assert codes == [201] * 10
        r = c.post("/v1/uploads", json={"size": 1000}, headers=as_key(key))
        assert r.status_code == 429, r.text
        assert 50 <= int(r.headers["retry-after"]) <= 60
        assert "10 per 1 minute" in r.json()["error"]
        other = new_key(server, "uploader-2", "uploads")  # limits count per key
        assert c.post("/v1/uploads", json={"size": 1000}, headers=as_key(other)).status_code == 201


def test_a_daily_quota_is_charged_per_character(server: Server) -> None:
    key = new_key(server, "metered", "tts", quota=30)
    text = "Twenty characters!!"  # 19
    with server.client() as c:
        assert c.post("/tts", json={"text": text}, headers=as_key(key)).status_code == 200
        r = c.post("/tts", json={"text": text}, headers=as_key(key))  # cached, still charged
        assert r.status_code == 429, r.text
        assert "daily quota of 30 characters" in r.json()["error"]
        assert 0 < int(r.headers["retry-after"]) <= 86400
        assert c.post("/tts", json={"text": "Eleven char"}, headers=as_key(key)).status_code == 200


def test_the_word_filter_names_the_category(server: Server, admin_key: str) -> None:
    with server.client() as c:
        r = c.post("/tts", json={"text": "请马上转账到安全账户"}, headers=as_key(admin_key))
        assert r.status_code == 400
        assert "category fraud" in r.json()["error"] and r.json()["detail"]["category"] == "fraud"


def test_audit_rows_name_key_address_and_text_hash(server: Server, admin_key: str) -> None:
    text = "Audited sentence."
    with server.client() as c:
        assert c.post("/tts", json={"text": text}, headers=as_key(admin_key)).status_code == 200
    time.sleep(1.5)  # the writer flushes every second
    db = sqlite3.connect(server.home / "data" / "voiceforge.db")
    columns = "key_id, ip, method, endpoint, status, outcome, text_sha256"
    rows = db.execute(f"SELECT {columns} FROM audit").fetchall()
    admin_id = admin_key.split("_")[1]
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert (admin_id, "127.0.0.1", "POST", "/tts", 200, "ok", digest) in rows
    assert any(r[0] is None and r[4] == 401 for r in rows)
    assert any(r[5] == "rate_limited" for r in rows)
    dump = "\n".join(db.iterdump())
    assert text not in dump
    assert not any(secret in dump for secret in issued)
    assert db.execute("SELECT last_used FROM api_keys WHERE id = ?", (admin_id,)).fetchone()[0]


def test_keys_never_reach_the_log_and_a_restart_prints_no_new_key(server: Server, admin_key: str) -> None:
    runtime = (server.home / "logs" / "runtime.log").read_text(encoding="utf-8")
    assert "created the first admin API key" in runtime
    for secret in issued:
        assert secret not in runtime
        # A key's secret part (base64url: it may itself hold "_"), and a JWT whole.
        assert (secret.split("_", 2)[2] if secret.startswith("vf_") else secret) not in runtime
    server.stop()
    again = launch(server.home, ENV)
    try:
        assert KEY_RE.findall(again.log) == [admin_key]  # stdout.log is appended: still the one key
        with again.client() as c:
            assert c.get("/v1/voices", headers=as_key(admin_key)).status_code == 200
    finally:
        again.stop()
