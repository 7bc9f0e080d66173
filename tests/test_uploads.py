"""Upload sessions without a server: resumable ranges, checksums, container sniffing, the legacy
chunk protocol (order, retries, limits), task bookkeeping and retention, on a real database and
real files in a temporary folder. Whisper is never needed here (the server tests transcribe)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sqlalchemy import update

from voiceforge.config import Settings
from voiceforge.db import Database, utcnow
from voiceforge.errors import Conflict, InvalidInput, NotFound, TooLarge
from voiceforge.service.chunked import ChunkedUploads
from voiceforge.service.models import Models
from voiceforge.service.upload_rows import TaskRow, UploadRow
from voiceforge.service.uploads import UploadService

F5 = "en_prompt_f5.wav"


@pytest.fixture
def uploads(tmp_path: Path) -> Iterator[UploadService]:
    settings = Settings(data_dir=tmp_path / "data", max_upload_bytes=1_000_000, max_upload_chunks=8)
    db = Database(settings.data_dir)
    yield UploadService(settings, db, Models(settings))  # models load lazily: never, here
    db.close()


@pytest.fixture
def put(uploads: UploadService, tmp_path: Path) -> Callable[[str, int, bytes], object]:
    """Write ``data`` at ``offset`` the way the route does: spooled to a file first."""

    def write(upload_id: str, offset: int, data: bytes) -> object:
        spooled = uploads.spool_path(upload_id)
        spooled.write_bytes(data)
        try:
            return uploads.write(upload_id, offset, spooled)
        finally:
            spooled.unlink(missing_ok=True)

    return write


def _wav(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def test_resumable_ranges_resume_and_complete(
    uploads: UploadService, put: Callable[..., object], shared_audio: Path
) -> None:
    data = (shared_audio / F5).read_bytes()
    up = uploads.create(len(data), filename="a\x07b.wav", sha256=None, content_type=None)
    assert up.status == "open" and up.received == 0 and up.filename == "ab.wav"
    put(up.id, 0, data[:1000])
    put(up.id, 500, data[500:3000])  # overlaps what is stored: only the new part is added
    assert uploads.get(up.id).received == 3000
    with pytest.raises(Conflict, match="must start at 3000"):
        put(up.id, 4000, data[4000:5000])
    with pytest.raises(Conflict, match="differ"):
        put(up.id, 2000, b"\0" * 2000)
    with pytest.raises(InvalidInput, match="past the upload's declared size"):
        put(up.id, 3000, data[3000:] + b"extra")
    with pytest.raises(Conflict, match="has 3000 of"):
        uploads.complete(up.id)
    put(up.id, 3000, data[3000:])
    done = uploads.complete(up.id, hashlib.sha256(data).hexdigest().upper())
    assert done.status == "complete" and done.container == "wav"
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.duration == pytest.approx(5.33, abs=0.02)
    assert uploads.complete(up.id) == done  # idempotent
    assert uploads.read(up.id) == data
    with pytest.raises(Conflict, match="complete; it takes no more bytes"):
        put(up.id, 0, data[:10])


def test_checksum_mismatch_and_non_audio_are_refused_for_good(
    uploads: UploadService, put: Callable[..., object]
) -> None:
    data = _wav(1.0)
    wrong = hashlib.sha256(b"something else").hexdigest()
    up = uploads.create(len(data), filename=None, sha256=wrong, content_type=None)
    put(up.id, 0, data)
    with pytest.raises(InvalidInput) as refused:
        uploads.complete(up.id)
    assert wrong in refused.value.message and hashlib.sha256(data).hexdigest() in refused.value.message
    assert uploads.get(up.id).status == "invalid"
    assert not (uploads.folder(up.id) / "data").exists()  # the damaged bytes are gone
    with pytest.raises(InvalidInput, match="start a new upload"):
        uploads.complete(up.id)

    text = b"this is not audio at all\n" * 100
    up = uploads.create(len(text), filename="voice.wav", sha256=None, content_type="audio/wav")
    put(up.id, 0, text)
    with pytest.raises(InvalidInput, match="not a recognised audio format"):
        uploads.complete(up.id)
    with pytest.raises(Conflict, match="not complete"):
        uploads.read(up.id)
    with pytest.raises(InvalidInput, match="64 hex digits"):
        uploads.create(10, filename=None, sha256="abc", content_type=None)
    with pytest.raises(TooLarge):
        uploads.create(1_000_001, filename=None, sha256=None, content_type=None)


def test_a_long_recording_is_probed_from_its_header(
    uploads: UploadService, put: Callable[..., object]
) -> None:
    data = _wav(40.0, rate=8000)  # past the probe's 30 s: only the header is read
    up = uploads.create(len(data), filename=None, sha256=None, content_type=None)
    put(up.id, 0, data)
    done = uploads.complete(up.id)
    assert done.container == "wav" and done.duration == pytest.approx(40.0)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "up_../../x", "/etc/passwd", "UP_" + "a" * 32, "up_" + "a" * 31, ""]
)
def test_ids_never_reach_the_disk(uploads: UploadService, bad: str) -> None:
    with pytest.raises(NotFound):
        uploads.folder(bad)
    with pytest.raises(NotFound):
        uploads.get(bad)
    with pytest.raises(NotFound):
        uploads.delete(bad)
    assert not uploads.root.exists() or not any(uploads.root.iterdir())


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", "..", ".hidden", "", "x" * 129, "a\x00b", "é"])
def test_session_ids_are_checked(uploads: UploadService, bad: str) -> None:
    with pytest.raises(InvalidInput, match="session_id"):
        ChunkedUploads(uploads).put(bad, 0, False, io.BytesIO(b"x"))
    assert not uploads.root.exists() or not any(uploads.root.iterdir())


def test_chunks_out_of_order_retried_and_missing(uploads: UploadService) -> None:
    sessions = ChunkedUploads(uploads)
    parts = [b"aaaa", b"bbbb", b"cc"]
    first = sessions.put("s-1", 2, True, io.BytesIO(parts[2]))
    assert first.missing == [0, 1] and first.task_id is None and not first.start
    assert sessions.put("s-1", 0, False, io.BytesIO(parts[0])).missing == [1]
    assert sessions.put("s-1", 0, False, io.BytesIO(parts[0])).chunks == 2  # a retry changes nothing
    with pytest.raises(Conflict, match="other content"):
        sessions.put("s-1", 0, False, io.BytesIO(b"zzzz"))
    with pytest.raises(Conflict, match="already sent as the last"):
        sessions.put("s-1", 1, True, io.BytesIO(parts[1]))
    with pytest.raises(InvalidInput, match="after the last chunk"):
        sessions.put("s-1", 3, False, io.BytesIO(b"d"))
    done = sessions.put("s-1", 1, False, io.BytesIO(parts[1]))
    assert done.missing == [] and done.start and done.task_id
    again = sessions.put("s-1", 2, True, io.BytesIO(parts[2]))
    assert again.task_id == done.task_id and not again.start  # the task is created once
    with pytest.raises(Conflict, match="already complete"):
        sessions.put("s-1", 3, False, io.BytesIO(b"d"))
    assert sessions.task(done.task_id).status == "queued"
    assert done.upload.received == 10 and done.upload.status == "assembling"


def test_chunk_limits(uploads: UploadService) -> None:
    sessions = ChunkedUploads(uploads)
    with pytest.raises(TooLarge, match="8 chunks"):
        sessions.put("s-2", 8, False, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput, match="negative"):
        sessions.put("s-2", -1, False, io.BytesIO(b"x"))
    sessions.put("s-2", 0, False, io.BytesIO(b"x" * 600_000))
    with pytest.raises(TooLarge, match="1000000 bytes"):
        sessions.put("s-2", 1, False, io.BytesIO(b"y" * 600_000))
    with pytest.raises(TooLarge):
        sessions.put("s-3", 0, False, io.BytesIO(b"z" * 1_000_001))
    assert not list(uploads.root.rglob("*.tmp"))


def test_a_task_that_could_not_be_queued_is_created_again(uploads: UploadService) -> None:
    sessions = ChunkedUploads(uploads)
    first = sessions.put("s-4", 0, True, io.BytesIO(b"x"))
    assert first.start and first.task_id
    sessions.forget_task(first.task_id)  # the pool was full: the route undoes the task
    with pytest.raises(NotFound):
        sessions.task(first.task_id)
    retry = sessions.put("s-4", 0, True, io.BytesIO(b"x"))
    assert retry.start and retry.task_id and retry.task_id != first.task_id


def test_non_audio_session_fails_its_task_and_resume_requeues(uploads: UploadService) -> None:
    sessions = ChunkedUploads(uploads)
    state = sessions.put("s-5", 0, True, io.BytesIO(b"plain text, no audio here " * 40))
    assert state.task_id
    queued: list[Callable[[], None]] = []
    assert sessions.resume(queued.append) == 1  # as after a restart
    queued[0]()
    task = sessions.task(state.task_id)
    assert task.status == "failed" and task.error is not None
    assert task.error["code"] == "invalid_input" and "not a recognised audio format" in task.error["message"]
    assert uploads.get(state.upload.id).status == "invalid"
    assert sessions.resume(queued.append) == 0
    with pytest.raises(NotFound):
        sessions.task("../" + "0" * 29)


def test_expire_removes_old_uploads_tasks_and_strays(
    uploads: UploadService, put: Callable[..., object]
) -> None:
    sessions = ChunkedUploads(uploads)
    old = uploads.create(100, filename=None, sha256=None, content_type=None)
    fresh = uploads.create(100, filename=None, sha256=None, content_type=None)
    chunked = sessions.put("s-6", 0, True, io.BytesIO(b"x"))
    stray = uploads.root / ("up_" + "f" * 32)
    stray.mkdir()
    tmp = uploads.folder(fresh.id) / ".put-abandoned.tmp"
    tmp.write_bytes(b"half a body")
    past = time.time() - 7200
    for path in (stray, tmp):
        os.utime(path, (past, past))
    with uploads.db.session(write=True) as s:
        s.execute(update(UploadRow).where(UploadRow.id.in_([old.id, chunked.upload.id])).values(
            updated_at=utcnow() - timedelta(hours=2)))  # fmt: skip
        s.execute(update(TaskRow).values(updated_at=utcnow() - timedelta(hours=2)))

    assert uploads.expire(3600) == 4  # two old uploads, the stray folder, the temp file
    assert uploads.get(fresh.id).status == "open" and (uploads.folder(fresh.id) / "data").exists()
    for gone in (old.id, chunked.upload.id):
        with pytest.raises(NotFound):
            uploads.get(gone)
        assert not uploads.folder(gone).exists()
    assert not stray.exists() and not tmp.exists()
    with pytest.raises(NotFound):
        ChunkedUploads(uploads).task(str(chunked.task_id))
