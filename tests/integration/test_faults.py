"""Storage faults against a real server: the disk fills up while an output is written, and the
database stays locked by another process. Each is a 503 with Retry-After and a message that says
whose problem it is, leaves no partial file behind, and the service recovers on its own.

(Engine faults, hangs and garbage are in test_breaker.py; a client leaving mid-stream in
test_openai.py; SIGTERM and kill -9 with jobs in flight in test_jobs.py.)
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

LONG = "The disk fills up while this sentence is written out. " * 3  # about 10 s of audio, ~500 KB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted where the server keeps its outputs (root only)."""
    outputs = tmp_path / "home" / "outputs"
    outputs.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(outputs)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield outputs
    finally:
        subprocess.run(["umount", "-l", str(outputs)], check=False)


def test_a_full_disk_is_503_leaves_no_partial_file_and_recovers(small_disk: Path) -> None:
    server = launch(small_disk.parent)
    try:
        with server.client() as c:
            r = c.post("/tts", json={"text": LONG, "seed": 1})
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == "storage_unavailable" and "full" in body["error"], body
            assert int(r.headers["retry-after"]) > 0
            assert list(small_disk.iterdir()) == []  # no .part file, no half output
            assert c.get("/readyz").status_code == 200  # the server itself is fine
            grown = subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=False)
            assert grown.returncode == 0
            r = c.post("/tts", json={"text": LONG, "seed": 1})
            assert r.status_code == 200, r.text
            assert c.get(r.json()["audio_url"]).status_code == 200
    finally:
        server.stop()


def test_a_locked_database_is_503_for_writes_then_recovers(start_server: Callable[..., Server]) -> None:
    server = start_server()
    with server.client() as c:
        cached = c.post("/tts", json={"text": "Cached before the lock.", "seed": 2})
        assert cached.status_code == 200
        lock = sqlite3.connect(server.home / "data" / "voiceforge.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the busy timeout
        release = threading.Timer(40, lock.rollback)
        release.start()
        try:
            # Reads go on (WAL): a cached answer still comes back at once.
            again = c.post("/tts", json={"text": "Cached before the lock.", "seed": 2})
            assert again.status_code == 200 and again.json()["cached"]
            outputs = sorted((server.home / "outputs").iterdir())
            started = time.monotonic()
            r = c.post("/tts", json={"text": "Written while the database is locked.", "seed": 3})
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "storage_unavailable" and "database" in r.json()["error"]
            assert time.monotonic() - started < 39  # the busy timeout (30 s), not our lock's 40 s
            assert sorted((server.home / "outputs").iterdir()) == outputs  # no file without its row
        finally:
            release.cancel()
            lock.rollback()
            lock.close()
        r = c.post("/tts", json={"text": "Written while the database is locked.", "seed": 3})
        assert r.status_code == 200, r.text
    assert "Traceback" not in server.log
