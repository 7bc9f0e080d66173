"""API keys, JWT bearer tokens, the auth middleware and audit rows, on a real SQLite database."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import jwt
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.errors import InvalidInput, NotFound, Unauthorized
from voiceforge.server.admission import Guard, admit, require
from voiceforge.server.app import auth_required, build_services
from voiceforge.server.auth import ANONYMOUS, Authenticator, Principal
from voiceforge.server.errors import install
from voiceforge.service.audit import AuditLog
from voiceforge.service.keys import KeyStore, parse_scopes

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path)
    yield database
    database.close()


@pytest.fixture
def keys(db: Database) -> KeyStore:
    return KeyStore(db)


def authenticator(keys: KeyStore, **settings: Any) -> Authenticator:
    audit = AuditLog(keys.db, keys, enabled=False)
    return Authenticator(Settings(**settings), keys, audit, required=True)


def scope(
    headers: dict[str, str] | None = None, path: str = "/tts", query: str = "", method: str = "GET"
) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn hands it over."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": method, "path": path, "headers": raw, "query_string": query.encode()}


def token(secret: str = SECRET, **claims: Any) -> str:
    body = {"sub": "alice", "scope": "tts voices", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


# -- keys ----------------------------------------------------------------------------------------
def test_a_key_is_shown_once_and_stored_only_as_its_hash(keys: KeyStore, db: Database) -> None:
    record, key = keys.create("bot", "tts,asr", quota_chars=500)
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "vf" and key_id == record.id and len(secret) == 43
    assert record.scopes == ("tts", "asr") and record.quota_chars == 500 and record.active
    rows = sqlite3.connect(db.engine.url.database).execute("SELECT * FROM api_keys").fetchall()
    stored = " ".join(map(str, rows[0]))
    assert secret not in stored and key not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored
    assert keys.verify(key).id == record.id


def test_wrong_malformed_and_revoked_keys_are_refused(keys: KeyStore) -> None:
    record, key = keys.create("bot", ["tts"])
    other = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized, match="not valid"):
        keys.verify(other)
    with pytest.raises(Unauthorized, match="not valid"):
        keys.verify("vf_000000000000_" + "x" * 43)
    with pytest.raises(Unauthorized, match="malformed"):
        keys.verify("vf_nothex_short")
    keys.revoke(record.id)
    with pytest.raises(Unauthorized, match="revoked"):
        keys.verify(key)
    assert keys.get(record.id).revoked is not None
    with pytest.raises(NotFound, match="keys list"):
        keys.revoke("0123456789ab")


def test_scopes_are_checked_and_ordered() -> None:
    assert parse_scopes("uploads, tts") == ("tts", "uploads")
    with pytest.raises(InvalidInput, match="unknown scope root"):
        parse_scopes("tts,root")
    with pytest.raises(InvalidInput, match="at least one"):
        parse_scopes("")


def test_the_first_admin_key_is_made_once(keys: KeyStore) -> None:
    key = keys.create_first_admin()
    assert key is not None and set(keys.verify(key).scopes) == {
        "tts",
        "asr",
        "voices",
        "jobs",
        "uploads",
        "admin",
    }
    assert keys.create_first_admin() is None
    assert len(keys.list()) == 1


def test_bootstrap_prints_the_key_to_stdout_only(keys: KeyStore, capsys: pytest.CaptureFixture[str]) -> None:
    auth = authenticator(keys)
    key = auth.bootstrap()
    out = capsys.readouterr()
    assert key is not None and out.out.count(key) == 1 and key not in out.err
    assert auth.bootstrap() is None and capsys.readouterr().out == ""


def test_verified_keys_are_cached_until_forgotten(keys: KeyStore) -> None:
    record, key = keys.create("bot", "tts")
    auth = authenticator(keys, key_cache_s=60)

    async def run() -> None:
        principal = await auth.authenticate(scope({"Authorization": f"Bearer {key}"}))
        assert principal == Principal(record.id, frozenset({"tts"}), "key", 0)
        keys.revoke(record.id)  # as another process would: this one still trusts its cache
        assert (await auth.authenticate(scope({"X-API-Key": key}))).id == record.id
        auth.forget(record.id)
        with pytest.raises(Unauthorized, match="revoked"):
            await auth.authenticate(scope({"X-API-Key": key}))

    asyncio.run(run())


def test_credentials_in_the_query_only_where_browsers_cannot_send_headers(keys: KeyStore) -> None:
    _record, key = keys.create("bot", "jobs")
    auth = authenticator(keys)

    async def run() -> None:
        ok = await auth.authenticate(scope(path="/v1/jobs/abc/events", query=f"api_key={key}"))
        assert ok.kind == "key"
        ok = await auth.authenticate(scope(path="/outputs/x.wav", query=f"access_token={key}"))
        assert ok.kind == "key"
        with pytest.raises(Unauthorized, match="needs an API key"):
            await auth.authenticate(scope(path="/tts", query=f"api_key={key}", method="POST"))
        with pytest.raises(Unauthorized, match="needs an API key"):
            await auth.authenticate(scope(path="/v1/voices", query=f"api_key={key}"))
        ok = await auth.authenticate(scope(path="/admin/logs/stream", query=f"api_key={key}"))
        assert ok.kind == "key"
        # only the named event streams: not any path that happens to end like one (issue 14)
        for path in ("/v1/voices/stream", "/v1/voices/events", "/v1/jobs/a/b/events", "/x/stream"):
            with pytest.raises(Unauthorized, match="needs an API key"):
                await auth.authenticate(scope(path=path, query=f"api_key={key}"))
        # WebSockets (no headers from a browser): the live-transcription socket only
        socket = {**scope(path="/v1/audio/live", query=f"api_key={key}"), "type": "websocket"}
        socket.pop("method")
        assert (await auth.authenticate(socket)).kind == "key"
        with pytest.raises(Unauthorized, match="needs an API key"):
            await auth.authenticate({**socket, "path": "/v1/other/socket"})
        with pytest.raises(Unauthorized, match="Bearer"):
            await auth.authenticate(scope({"Authorization": f"Basic {key}"}))
        with pytest.raises(Unauthorized, match="neither an API key"):
            await auth.authenticate(scope({"Authorization": "Bearer hunter2"}))

    asyncio.run(run())


# -- JWT -----------------------------------------------------------------------------------------
def test_a_jwt_names_its_subject_and_scopes(keys: KeyStore) -> None:
    auth = authenticator(keys, jwt_secret=SECRET)
    principal = auth.verify_jwt(token(scope="tts voices root", quota_chars=100))
    assert principal == Principal("jwt:alice", frozenset({"tts", "voices"}), "jwt", 100)


def test_an_expired_jwt_says_it_expired(keys: KeyStore) -> None:
    auth = authenticator(keys, jwt_secret=SECRET, jwt_leeway_s=30)
    with pytest.raises(Unauthorized, match=r"expired at .* UTC"):
        auth.verify_jwt(token(exp=int(time.time()) - 120))


def test_clock_skew_within_the_leeway_is_forgiven(keys: KeyStore) -> None:
    auth = authenticator(keys, jwt_secret=SECRET, jwt_leeway_s=30)
    assert auth.verify_jwt(token(exp=int(time.time()) - 10)).id == "jwt:alice"
    assert auth.verify_jwt(token(nbf=int(time.time()) + 10)).id == "jwt:alice"
    with pytest.raises(Unauthorized):
        auth.verify_jwt(token(nbf=int(time.time()) + 120))


def test_bad_jwts_are_refused(keys: KeyStore) -> None:
    auth = authenticator(keys, jwt_secret=SECRET, jwt_issuer="https://login.example", jwt_audience="vf")
    good = token(iss="https://login.example", aud="vf")
    assert auth.verify_jwt(good).id == "jwt:alice"
    with pytest.raises(Unauthorized, match="signature"):
        auth.verify_jwt(
            token("another-secret-that-is-also-long-enough", iss="https://login.example", aud="vf")
        )
    with pytest.raises(Unauthorized, match="exp"):
        auth.verify_jwt(token(iss="https://login.example", aud="vf", exp=None))
    with pytest.raises(Unauthorized, match="not valid"):
        auth.verify_jwt(token(iss="https://evil.example", aud="vf"))
    with pytest.raises(Unauthorized, match="not valid"):
        auth.verify_jwt(token(iss="https://login.example", aud="other"))
    with pytest.raises(Unauthorized):  # alg none
        auth.verify_jwt(jwt.encode({"sub": "x", "exp": time.time() + 60, "scope": "admin"}, None, "none"))


def test_jwts_are_refused_without_a_secret_and_short_secrets_too(keys: KeyStore) -> None:
    with pytest.raises(Unauthorized, match="VOICEFORGE_JWT_SECRET is unset"):
        authenticator(keys).verify_jwt(token())
    with pytest.raises(InvalidInput, match="at least 32"):
        authenticator(keys, jwt_secret="short")


# -- when auth is required -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "required"),
    [
        ({}, False),
        ({"host": "localhost"}, False),
        ({"host": "127.0.0.2"}, False),
        ({"host": "0.0.0.0"}, True),
        ({"host": "192.168.1.5"}, True),
        ({"host": "0.0.0.0", "insecure_no_auth": True}, False),
        ({"auth": "on"}, True),
        ({"auth": "on", "host": "0.0.0.0", "insecure_no_auth": True}, True),
        ({"auth": "off"}, False),
        ({"auth": "off", "host": "0.0.0.0", "insecure_no_auth": True}, False),
    ],
)
def test_auth_is_required_off_loopback_unless_waived(settings: dict[str, Any], required: bool) -> None:
    assert auth_required(Settings(**settings)) is required


def test_auth_off_alone_does_not_open_a_network_bind() -> None:
    with pytest.raises(InvalidInput, match="--insecure-no-auth"):
        auth_required(Settings(auth="off", host="0.0.0.0"))


# -- the middleware, require() and audit rows in a small app on the real services -----------------
@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = Settings(
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "out",
        jwt_secret=SECRET,
        rate_limit_voices="2/minute",
    )
    api = FastAPI()
    install(api)
    api.add_middleware(Guard)

    @api.post("/speak")
    async def speak(request: Request, who: Annotated[Principal, Depends(require("tts"))]) -> dict[str, str]:
        body = await request.json()
        await admit(request, body["text"])
        return {"id": who.id}

    @api.get("/voices")
    async def voices(who: Annotated[Principal, Depends(require("voices"))]) -> dict[str, str]:
        return {"id": who.id}

    @api.get("/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    api.state.services = build_services(settings, auth_required=True)
    yield api
    api.state.services.pool.shutdown()
    api.state.services.db.close()


def test_the_middleware_closes_every_route_but_the_probes(app: FastAPI) -> None:
    svc = app.state.services
    _record, key = svc.auth.keys.create("bot", "tts")
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/plain")  # declares no require(): still closed
        assert r.status_code == 401 and "needs an API key" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/plain", headers={"X-API-Key": key}).json() == {"ok": "yes"}
        r = c.get("/voices", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and "'voices' scope" in r.json()["error"]


def test_scope_limits_count_per_key(app: FastAPI) -> None:
    svc = app.state.services
    _a, first = svc.auth.keys.create("a", "voices")
    _b, second = svc.auth.keys.create("b", "voices")
    with TestClient(app) as c:
        codes = [c.get("/voices", headers={"X-API-Key": first}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.get("/voices", headers={"X-API-Key": first})
        assert 1 <= int(r.headers["retry-after"]) <= 60 and "2 per 1 minute" in r.json()["error"]
        assert c.get("/voices", headers={"X-API-Key": second}).status_code == 200


def test_audit_rows_hold_the_text_hash_never_the_text_or_key(app: FastAPI) -> None:
    svc = app.state.services
    record, key = svc.auth.keys.create("bot", "tts", quota_chars=1000)
    text = "今天天气很好。"
    with TestClient(app) as c:
        assert c.post("/speak", json={"text": text}, headers={"X-API-Key": key}).json() == {"id": record.id}
        assert c.get("/plain").status_code == 401
        refused = c.post("/speak", json={"text": "转账到安全账户"}, headers={"X-API-Key": key})
        assert refused.status_code == 400
        svc.audit.flush()
        rows = svc.audit.rows()
    assert [(r["key_id"], r["endpoint"], r["status"], r["outcome"]) for r in reversed(rows)] == [
        (record.id, "/speak", 200, "ok"),
        (None, "/plain", 401, "unauthorized"),
        (record.id, "/speak", 400, "rejected"),
    ]
    first = rows[-1]
    assert first["text_sha256"] == hashlib.sha256(text.encode()).hexdigest() and first["chars"] == len(text)
    assert svc.audit.usage_today() == {record.id: len(text)}
    everything = repr(rows)
    assert key not in everything and text not in everything
    assert svc.auth.keys.get(record.id).last_used is not None


def test_without_auth_everyone_is_anonymous(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", output_dir=tmp_path / "out")
    api = FastAPI()
    api.add_middleware(Guard)

    @api.get("/who")
    async def who(p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, str]:
        return {"id": p.id}

    api.state.services = build_services(settings, auth_required=False)
    with TestClient(api) as c:
        assert c.get("/who").json() == {"id": ANONYMOUS.id}
    assert api.state.services.audit.enabled is False
    api.state.services.pool.shutdown()
    api.state.services.db.close()
