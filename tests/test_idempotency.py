"""Idempotency keys across API nodes: two stores on one database stand for two nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import voiceforge.server.idempotency as idem
from voiceforge.db import Database
from voiceforge.errors import Conflict, StillRunning
from voiceforge.server.idempotency import IdempotencyStore

KEY = ("key:abc", "tts", "retry-1")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[IdempotencyStore, IdempotencyStore]]:
    db = Database(tmp_path)
    yield IdempotencyStore(db), IdempotencyStore(db)
    db.close()


def test_a_retry_on_another_node_waits_for_the_first_answer_and_never_runs_twice(nodes) -> None:
    a, b = nodes
    assert a.claim(*KEY, "body-1") is None  # node a runs the request
    with pytest.raises(StillRunning, match="still running") as running:
        b.claim(*KEY, "body-1")  # the client's retry reached node b meanwhile
    assert running.value.retry_after >= 1  # a 409 with Retry-After, which the SDK waits out
    a.put(*KEY, "body-1", 200, {"task_id": "t1"})
    assert b.claim(*KEY, "body-1") == (200, {"task_id": "t1"})  # the retry gets the same answer
    with pytest.raises(Conflict, match="different request"):
        b.claim(*KEY, "body-2")


def test_a_failed_request_releases_its_key(nodes) -> None:
    a, b = nodes
    assert a.claim(*KEY, "body-1") is None
    a.release(*KEY)  # the request raised (a 4xx, a stop): nothing was answered
    assert b.claim(*KEY, "body-1") is None  # so the retry runs


def test_a_claim_left_by_a_dead_node_is_taken_over(nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = nodes
    assert a.claim(*KEY, "body-1") is None  # node a dies here
    monkeypatch.setattr(idem, "CLAIM_S", 0)
    assert b.claim(*KEY, "body-1") is None
    b.put(*KEY, "body-1", 200, {"task_id": "t2"})
    assert a.claim(*KEY, "body-1") == (200, {"task_id": "t2"})
