"""Job rows on a real SQLite file: submit, idempotency, the guarded state changes, resume, paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceforge.db import Database
from voiceforge.errors import Conflict, NotFound, Overloaded
from voiceforge.jobs.base import Job, JobError, JobSpec, new_job_id
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.store import JobStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    db = Database(tmp_path)
    yield JobStore(db)
    db.close()


def spec(fingerprint: str = "a" * 64, webhook: str | None = None) -> JobSpec:
    return JobSpec("tts", {"text": "hello"}, fingerprint, webhook)


def create(
    store: JobStore, s: JobSpec | None = None, *, key: str | None = None, owner: str = "k1", limit: int = 10
) -> tuple[Job, bool]:
    return store.create(
        s or spec(),
        job_id=new_job_id(),
        owner=owner,
        idempotency_key=key,
        base_url="http://h",
        max_queued=limit,
    )


def test_a_job_goes_queued_running_succeeded_once(store: JobStore) -> None:
    job, created = create(store)
    assert created and job.state == "queued" and job.attempts == 0 and job.version == 1
    running = store.claim(job.id)
    assert running is not None and running.state == "running" and running.attempts == 1
    assert running.started_at is not None
    assert store.claim(job.id) is None  # a second worker gets nothing
    progressed = store.update(job.id, progress=0.5, stage="synthesising 1/2")
    assert (progressed.progress, progressed.stage) == (0.5, "synthesising 1/2")
    assert progressed.version > running.version
    done = store.finish(job.id, "succeeded", result={"audio_url": "/outputs/x.wav"})
    assert done is not None and done.state == "succeeded" and done.progress == 1.0
    assert done.result == {"audio_url": "/outputs/x.wav"} and done.finished_at is not None
    assert store.finish(job.id, "failed", error=JobError("x", "y")) is None  # completes once
    assert store.get(job.id).state == "succeeded"


def test_idempotency_key_same_body_same_job_other_body_conflict(store: JobStore) -> None:
    first, _ = create(store, key="k")
    again, created = create(store, key="k")
    assert not created and again.id == first.id
    with pytest.raises(Conflict, match="different request"):
        create(store, spec("b" * 64), key="k")
    other_owner, created = create(store, key="k", owner="k2")  # keys are per caller
    assert created and other_owner.id != first.id
    assert store.find("k1", "k") == first and store.find("k1", "nope") is None
    assert store.find("k2", "k") == other_owner


def test_too_many_waiting_jobs_is_overloaded(store: JobStore) -> None:
    for _ in range(2):
        create(store, limit=2)
    with pytest.raises(Overloaded, match="2 jobs are already waiting") as caught:
        create(store, limit=2)
    assert caught.value.retry_after >= 1
    first = store.next_queued(1, exclude=set())[0]
    store.claim(first)  # running jobs do not count
    create(store, limit=2)


def test_cancel_queued_at_once_running_by_request_finished_conflict(store: JobStore) -> None:
    queued, _ = create(store, spec(webhook="https://example.com/hook"))
    cancelled = store.cancel(queued.id)
    assert cancelled.state == "cancelled" and cancelled.webhook_state == "pending"
    assert store.claim(queued.id) is None
    running, _ = create(store)
    store.claim(running.id)
    asked = store.cancel(running.id)
    assert asked.state == "running" and asked.cancel_requested and asked.stage.startswith("cancelling")
    assert store.update(running.id, progress=0.3, stage="synthesising 1/3").cancel_requested
    store.finish(running.id, "cancelled")
    with pytest.raises(Conflict, match="already cancelled"):
        store.cancel(running.id)
    assert [j.id for j in store.pending_webhooks()] == [queued.id]
    store.webhook_done(queued.id, delivered=True)
    assert store.pending_webhooks() == []


def test_resume_requeues_interrupted_jobs_and_dead_letters_after_max_attempts(store: JobStore) -> None:
    exhausted, _ = create(store)
    for _ in range(3):
        store.claim(exhausted.id)
        store.resume(max_attempts=99)
    store.claim(exhausted.id)
    again, _ = create(store)
    store.claim(again.id)
    stopping, _ = create(store)
    store.claim(stopping.id)
    store.cancel(stopping.id)
    changed = {j.id: j for j in store.resume(max_attempts=4)}
    assert changed[again.id].state == "queued" and changed[again.id].attempts == 1
    assert changed[exhausted.id].state == "failed"
    error = changed[exhausted.id].error
    assert error is not None and error.code == "interrupted" and "4 times" in error.message
    assert changed[stopping.id].state == "cancelled"
    assert store.claim(again.id) is not None and store.get(again.id).attempts == 2


def test_release_does_not_count_the_attempt(store: JobStore) -> None:
    job, _ = create(store)
    store.claim(job.id)
    released = store.release(job.id)
    assert released is not None and released.state == "queued" and released.attempts == 0


def test_partial_results_survive_and_paging_is_newest_first(store: JobStore) -> None:
    ids = [create(store)[0].id for _ in range(5)]
    store.claim(ids[0])
    store.save_result(ids[0], {"items": [{"index": 0}]})
    assert store.get(ids[0]).result == {"items": [{"index": 0}]}
    page = store.page(owner="k1", state=None, limit=2, before=None)
    assert [j.id for j in page.jobs] == ids[:-3:-1] and page.has_more
    rest = store.page(owner="k1", state=None, limit=10, before=page.jobs[-1].id)
    assert [j.id for j in rest.jobs] == ids[-3::-1] and not rest.has_more
    assert [j.id for j in store.page(owner="k1", state="running", limit=10, before=None).jobs] == [ids[0]]
    assert store.page(owner="nobody", state=None, limit=10, before=None).jobs == []
    assert store.counts() == {"queued": 4, "running": 1}
    assert store.next_queued(2, exclude={ids[1]}) == [ids[2], ids[3]]


def test_prune_removes_only_old_finished_jobs(store: JobStore) -> None:
    done, _ = create(store)
    store.claim(done.id)
    store.finish(done.id, "succeeded", result={})
    waiting, _ = create(store)
    assert store.prune(3600) == 0
    assert store.prune(0) == 1
    with pytest.raises(NotFound):
        store.get(done.id)
    assert store.get(waiting.id).state == "queued"


def test_odd_ids_are_not_found_before_any_lookup(store: JobStore) -> None:
    for bad in ("../../etc/passwd", "", "A" * 32, "0" * 31):
        with pytest.raises(NotFound):
            store.get(bad)
    with pytest.raises(NotFound):
        store.get("0" * 32)


def test_input_files_are_saved_read_and_removed(tmp_path: Path) -> None:
    inputs = InputFiles(tmp_path / "inputs")
    job_id = new_job_id()
    (tmp_path / "upload").write_bytes(b"OggS")
    inputs.save(job_id, {"audio": b"RIFF", "copy": tmp_path / "upload"})
    assert inputs.path(job_id, "audio").read_bytes() == b"RIFF"
    assert inputs.path(job_id, "copy").read_bytes() == b"OggS"
    inputs.remove(job_id)
    with pytest.raises(NotFound, match="submit the job again"):
        inputs.path(job_id, "audio")
    with pytest.raises(NotFound):
        inputs.save("../x", {"audio": b""})
