"""The Celery backend's pieces that need no broker: queue routing, leases on a real SQLite
database, relayed log records. The whole thing, with Redis and workers, is in
tests/integration/test_celery.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from voiceforge.config import Settings
from voiceforge.db import Database
from voiceforge.errors import InvalidInput
from voiceforge.jobs.base import JobSpec, new_job_id
from voiceforge.jobs.celery_backend import events_url, job_queue, make_celery
from voiceforge.jobs.leases import Leases
from voiceforge.jobs.relay import relayed_record
from voiceforge.jobs.store import JobStore
from voiceforge.jobs.worker import worker_queues


def test_jobs_go_to_the_queue_of_the_engine_they_name() -> None:
    settings = Settings(engine="kokoro", engines=["kokoro", "remote"])
    assert job_queue(settings, "tts", {"text": "hi"}) == "voiceforge.kokoro"
    assert job_queue(settings, "tts", {"text": "hi", "model": "remote"}) == "voiceforge.remote"
    assert job_queue(settings, "tts", {"text": "hi", "model": "nonesuch"}) == "voiceforge.kokoro"
    batch = {"items": [{"text": "a"}, {"text": "b", "model": "remote"}]}
    assert job_queue(settings, "batch", batch) == "voiceforge.remote"
    assert job_queue(settings, "transcription", {"duration": 3}) == "voiceforge.transcription"


def test_worker_queues_default_to_every_engine_and_refuse_unknown_ones() -> None:
    settings = Settings(engine="kokoro", engines=["remote"])
    assert worker_queues(settings, None) == [
        "voiceforge.kokoro",
        "voiceforge.remote",
        "voiceforge.transcription",
    ]
    assert worker_queues(settings, ["remote"]) == ["voiceforge.remote"]
    with pytest.raises(InvalidInput, match="queue 'gpu' is not served here; choose from kokoro, remote"):
        worker_queues(settings, ["gpu"])


def test_the_celery_backend_needs_a_broker_url_and_finds_redis_for_events() -> None:
    with pytest.raises(InvalidInput, match="VOICEFORGE_BROKER_URL"):
        make_celery(Settings(jobs_backend="celery"))
    assert events_url(Settings(broker_url="redis://h:6379/0")) == "redis://h:6379/0"
    assert events_url(Settings(broker_url="amqp://h//")) is None
    assert events_url(Settings(broker_url="amqp://h//", events_url="redis://e/1")) == "redis://e/1"
    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0", job_visibility_timeout_s=7200))
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 7200


def test_a_lapsed_lease_makes_a_running_job_stale_until_it_is_renewed(tmp_path: Path) -> None:
    db = Database(tmp_path)
    store = JobStore(db)
    leases = Leases(db, lease_s=0.3)
    leases.ensure_table()
    spec = JobSpec(kind="tts", params={"text": "hi"}, fingerprint="0" * 64)
    job, _ = store.create(
        spec, job_id=new_job_id(), owner="me", idempotency_key=None, base_url="http://x", max_queued=10
    )
    assert store.claim(job.id) is not None
    assert leases.stale() == []  # just started: a grace period of one lease
    time.sleep(0.4)
    assert leases.stale() == [job.id]  # started, never leased: its worker is gone
    leases.hold([job.id], "w1")
    assert leases.stale(job.id) == []
    time.sleep(0.4)
    assert leases.stale(job.id) == [job.id]  # not renewed
    leases.hold([job.id], "w1")
    leases.drop(job.id, "w2")  # someone else's drop leaves w1's lease alone
    assert leases.stale() == []
    claimed_later = Leases(db, lease_s=3600).cutoff()  # as if it had been claimed again meanwhile
    assert store.resume(max_attempts=3, ids=[job.id], started_before=claimed_later) == []
    (requeued,) = store.resume(max_attempts=3, ids=[job.id], started_before=leases.cutoff())
    assert requeued.state == "queued" and requeued.attempts == 1
    leases.prune()
    assert leases.stale() == []
    db.close()


def test_a_relayed_line_keeps_its_level_time_and_names_the_worker() -> None:
    record = relayed_record(
        {
            "worker": "gpu-1",
            "name": "voiceforge.jobs.runner",
            "level": 30,
            "created": 5.0,
            "message": "[ab] x",
        }
    )
    assert record.name == "voiceforge.jobs.runner@gpu-1"
    assert record.levelno == logging.WARNING and record.levelname == "WARNING"
    assert record.created == 5.0 and record.getMessage() == "[ab] x"


def test_a_job_whose_workers_keep_dying_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    db = Database(tmp_path)
    store = JobStore(db)
    leases = Leases(db, lease_s=0.05)
    leases.ensure_table()
    spec = JobSpec(kind="tts", params={"text": "hi"}, fingerprint="1" * 64)
    job, _ = store.create(
        spec, job_id=new_job_id(), owner="me", idempotency_key=None, base_url="http://x", max_queued=10
    )
    for attempt in (1, 2):
        assert store.claim(job.id) is not None  # a worker starts it ... and is killed
        time.sleep(0.1)
        (after,) = store.resume(max_attempts=2, ids=leases.stale(), started_before=leases.cutoff())
        assert after.attempts == attempt
    assert after.state == "failed" and after.error is not None
    assert after.error.code == "interrupted" and "interrupted 2 times" in after.error.message
    db.close()
