"""PostgreSQL as the shared database: several nodes creating the schema at once, and the server
going away and coming back under a running API node (503 with a reason, then recovery; nothing
half-written)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

import voiceforge.server.app  # noqa: F401  (registers every table on db.Base, as a node does)
from tests.integration.conftest import Server, launch
from tests.integration.pg import Postgres, postgres
from voiceforge.db import Database

pytestmark = pytest.mark.slow

KEY_RE = re.compile(r"vf_[A-Za-z0-9_-]{8,}_[A-Za-z0-9_-]{16,}")


def test_nodes_starting_together_create_the_schema_once(tmp_path: Path) -> None:
    """Workers start at the same moment; each creates missing tables (a race on PostgreSQL's
    catalogue without the advisory lock in Database.ensure_schema)."""
    with postgres() as pg:
        nodes = [Database(tmp_path, pg.url) for _ in range(6)]
        barrier = threading.Barrier(len(nodes))
        errors: list[BaseException] = []

        def start(db: Database) -> None:
            barrier.wait()
            try:
                db.ensure_schema()
            except BaseException as e:  # collected and asserted on below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(db,)) for db in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert {"jobs", "voices", "api_keys"} <= set(inspect(nodes[0].engine).get_table_names())
        for db in nodes:
            db.close()


def wait_status(h: httpx.Client, path: str, status: int, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = h.get(path)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.25)


def test_database_gone_and_back(tmp_path: Path) -> None:
    with postgres() as pg:
        srv = launch(tmp_path / "api", {"VOICEFORGE_DATABASE_URL": pg.url, "VOICEFORGE_AUTH": "on"})
        try:
            check_outage(srv, pg)
        finally:
            srv.stop()


def check_outage(srv: Server, pg: Postgres) -> None:
    keys = KEY_RE.findall(srv.log)
    assert len(keys) == 1, srv.log[-2000:]
    with srv.client(headers={"Authorization": f"Bearer {keys[0]}"}, timeout=60) as h:
        r = h.post("/tts", json={"text": "Before the outage.", "seed": 3})
        assert r.status_code == 200, r.text
        outputs = sorted((srv.home / "data" / "outputs").rglob("*.*"))

        pg.stop()
        r = wait_status(h, "/readyz", 503)
        assert r.status_code == 503 and any("database" in p for p in r.json()["problems"]), r.text
        for method, path, body in [
            ("GET", "/v1/voices", None),  # a read
            ("POST", "/v1/jobs", {"kind": "tts", "text": "During the outage."}),  # a write
            ("POST", "/tts", {"text": "During the outage, synthesised.", "seed": 4}),
        ]:
            r = h.request(method, path, json=body)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert "database" in r.json()["error"] and "retry" in r.json()["error"], r.text
        assert h.get("/healthz").status_code == 200  # the process itself is fine
        # No output file was kept for the /tts whose row could not be written.
        assert sorted((srv.home / "data" / "outputs").rglob("*.*")) == outputs

        pg.start()
        assert wait_status(h, "/readyz", 200).status_code == 200
        r = h.post("/tts", json={"text": "After the outage.", "seed": 5})
        assert r.status_code == 200, r.text
        assert h.get(r.json()["audio_url"]).status_code == 200
        assert h.get("/v1/voices").status_code == 200
    assert "unhandled error" not in srv.log  # an outage is a 503 with a reason, never an internal error
