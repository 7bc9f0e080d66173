"""The legacy chunked upload as the earlier gateway's clients send it: ``session_id``, ``seq``,
``is_last`` and a ``chunk`` per request, in any order, retried at will.

A session is an upload of kind ``chunked`` (see :mod:`voiceforge.service.uploads`); each chunk is a
row and a ``<seq>.part`` file. The request that completes the set creates an upload task; the task
(on the worker pool) assembles the parts, proves the bytes are audio, checks them as a voice prompt
and transcribes them. The task row is what ``GET /v1/task/{task_id}`` reports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voiceforge.audio.prompt import prepare_prompt
from voiceforge.db import aware, utcnow
from voiceforge.errors import Conflict, InvalidInput, NotFound, Overloaded, TooLarge, VoiceforgeError
from voiceforge.service.cloning import transcribe_prompt
from voiceforge.service.owners import upload
from voiceforge.service.transcribe import screen
from voiceforge.service.upload_files import spool
from voiceforge.service.upload_rows import (
    ChunkRow,
    TaskRow,
    Upload,
    UploadRow,
    find,
    new_upload_id,
    to_upload,
)
from voiceforge.service.uploads import UploadService

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TASK_ID = re.compile(r"[0-9a-f]{32}")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ChunkState:
    """Where a session stands after one chunk."""

    upload: Upload
    session_id: str
    chunks: int  # chunks received so far
    missing: list[int] | None  # None until the last chunk's seq is known
    task_id: str | None  # set once every chunk is in
    start: bool  # the task was created by this call: the caller submits run_task(task_id)


@dataclass(frozen=True)
class UploadTask:
    id: str
    upload_id: str
    status: str  # queued | running | succeeded | failed
    result: dict[str, Any] | None
    error: dict[str, Any] | None  # {code, message, detail}
    created_at: datetime
    updated_at: datetime


class ChunkedUploads:
    def __init__(self, uploads: UploadService) -> None:
        self.uploads = uploads
        self.db = uploads.db

    def put(
        self, session_id: str, seq: int, is_last: bool, source: IO[bytes], owner: str | None = None
    ) -> ChunkState:
        """Store chunk ``seq`` of ``owner``'s session ``session_id``; a retry of a stored chunk with
        the same bytes is a no-op.

        Session ids are the client's choice, so each owner has its own: another key sending the same
        ``session_id`` opens a session of its own and never reaches this one (``owner`` None: the
        one local principal of a server without auth). Once every seq up to the last is in, the
        session is closed and a task is created (``start``): the caller submits :meth:`run_task`.
        """
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise InvalidInput(
                f"session_id {str(session_id)[:80]!r} is not valid; use 1–128 letters, digits, '-', '_' "
                "or '.', starting with a letter or digit (a UUID is ideal)"
            )
        if seq < 0:
            raise InvalidInput(f"seq {seq} is negative; chunks are numbered from 0")
        if seq >= self.uploads.max_chunks:
            raise TooLarge(
                f"seq {seq} is past the limit of {self.uploads.max_chunks} chunks per upload; "
                "send bigger chunks",
                detail={"max_chunks": self.uploads.max_chunks},
            )
        upload_id = self._session(session_id, owner)
        spooled, size, digest = spool(self.uploads.folder(upload_id), source, self.uploads.max_bytes)
        try:
            with self.db.session(write=True) as s:
                row = find(s, upload_id, lock=True)
                state = self._add(s, row, session_id, seq, is_last, spooled, size, digest)
        finally:
            spooled.unlink(missing_ok=True)
        log.info(
            "[%s] chunk %d received (%d bytes%s); %d chunks in%s",
            upload_id,
            seq,
            size,
            ", last" if is_last else "",
            state.chunks,
            f", task {state.task_id}" if state.start else "",
        )
        return state

    def forget_task(self, task_id: str) -> None:
        """Undo a task that could not be queued (server busy); the session's next chunk retries it."""
        with self.db.session(write=True) as s:
            task = s.get(TaskRow, task_id)
            if task is not None:
                s.delete(task)
            row = s.scalar(select(UploadRow).where(UploadRow.task_id == task_id))
            if row is not None:
                row.task_id = None

    def task(self, task_id: str, owner: str | None = None) -> UploadTask:
        """The task's state; NotFound unless ``owner`` (None: anyone) started its session."""
        if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            raise NotFound(f"no task {str(task_id)[:80]!r}; task ids are 32 hex characters")
        with self.db.session() as s:
            row = s.get(TaskRow, task_id)
            owners = self.uploads.owners
            if row is None or (owner is not None and not owners.owns(upload(row.upload_id), owner)):
                raise NotFound(f"no task {task_id!r}; it never existed or ended past the retention period")
            return UploadTask(
                id=row.id,
                upload_id=row.upload_id,
                status=row.status,
                result=row.result,
                error=row.error,
                created_at=aware(row.created_at),
                updated_at=aware(row.updated_at),
            )

    def run_task(self, task_id: str) -> None:
        """Assemble the session, check it as a voice prompt and transcribe it; the row tells the outcome.

        Runs on a worker; never raises: every failure ends up in the task's ``error``.
        """
        try:
            with self.db.session(write=True) as s:
                task = s.get(TaskRow, task_id)
                if task is None or task.status in ("succeeded", "failed"):
                    return
                task.status, task.updated_at, upload_id = "running", utcnow(), task.upload_id
            log.info("[%s] task started for upload %s", task_id, upload_id)
            result = self._check_and_transcribe(task_id, upload_id)
        except VoiceforgeError as e:
            log.info("[%s] task failed: %s", task_id, e.message)
            self._finish(task_id, error={"code": e.code, "message": e.message, "detail": e.detail})
        except Exception as e:  # logged whole; the poller gets a clean message
            log.exception("[%s] task failed", task_id)
            self._finish(task_id, error={"code": "internal", "message": f"{type(e).__name__}: {e}"[:300]})
        else:
            self._finish(task_id, result=result)

    def resume(self, submit: Callable[[Callable[[], None]], object]) -> int:
        """Queue again the tasks a stop or crash left queued or running; returns how many."""
        with self.db.session() as s:
            ids = list(s.scalars(select(TaskRow.id).where(TaskRow.status.in_(("queued", "running")))))
        for done, task_id in enumerate(ids):
            try:
                submit(functools.partial(self.run_task, task_id))
            except Overloaded:  # the rest stay queued in the table for the next start
                log.warning("resumed %d of %d upload tasks; the queue is full", done, len(ids))
                return done
        if ids:
            log.info("resumed %d upload task(s)", len(ids))
        return len(ids)

    # -- internals -------------------------------------------------------------------------------
    def _session(self, session_id: str, owner: str | None) -> str:
        """The upload id of ``owner``'s session, created (and granted to ``owner``) on its first chunk."""
        key = session_key(session_id, owner)
        for _ in range(2):  # a concurrent first chunk on a database without BEGIN IMMEDIATE
            try:
                with self.db.session(write=True) as s:
                    row = s.scalar(select(UploadRow).where(UploadRow.session_id == key))
                    if row is not None:
                        return row.id
                    now, upload_id = utcnow(), new_upload_id()
                    s.add(
                        UploadRow(
                            id=upload_id,
                            kind="chunked",
                            session_id=key,
                            received=0,
                            status="open",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    if owner is not None:
                        self.uploads.owners.add(s, upload(upload_id), owner)
                log.info("[%s] chunked upload session opened", upload_id)
                return upload_id
            except IntegrityError:
                continue
        raise Conflict(f"session {session_id!r} is being opened by another request; retry the chunk")

    def _add(
        self,
        s: Session,
        row: UploadRow,
        session_id: str,
        seq: int,
        is_last: bool,
        spooled: Path,
        size: int,
        digest: str,
    ) -> ChunkState:
        stored = s.get(ChunkRow, (row.id, seq))
        if stored is not None and stored.sha256 != digest:
            raise Conflict(
                f"chunk {seq} of session {session_id!r} was already received with other content "
                f"({stored.size} bytes then, {size} now); resend the same bytes or start a new session_id"
            )
        if stored is None and row.status != "open":
            raise Conflict(
                f"session {session_id!r} is already complete (task {row.task_id}); "
                "use a new session_id for another upload"
            )
        highest = s.scalar(select(func.max(ChunkRow.seq)).where(ChunkRow.upload_id == row.id))
        if is_last:
            if row.last_seq is not None and row.last_seq != seq:
                raise Conflict(
                    f"chunk {row.last_seq} of session {session_id!r} was already sent as the last; "
                    f"chunk {seq} cannot be the last too"
                )
            if highest is not None and highest > seq:
                raise InvalidInput(f"chunk {seq} cannot be the last: chunk {highest} was already received")
            row.last_seq = seq
        elif row.last_seq is not None and seq > row.last_seq:
            raise InvalidInput(f"chunk {seq} comes after the last chunk ({row.last_seq}) of {session_id!r}")
        if stored is None:
            if row.received + size > self.uploads.max_bytes:
                limit = self.uploads.max_bytes
                raise TooLarge(
                    f"the upload would pass {limit} bytes ({limit // 2**20} MiB), the most one upload "
                    "may hold",
                    detail={"received": row.received, "max_bytes": limit},
                )
            os.replace(spooled, self.uploads.folder(row.id) / f"{seq}.part")
            s.add(ChunkRow(upload_id=row.id, seq=seq, size=size, sha256=digest))
            row.received += size
        row.updated_at = utcnow()
        s.flush()
        seqs = set(s.scalars(select(ChunkRow.seq).where(ChunkRow.upload_id == row.id)))
        missing = sorted(set(range(row.last_seq + 1)) - seqs) if row.last_seq is not None else None
        if missing == [] and row.status == "open":
            row.status = "assembling"
        start = row.status == "assembling" and row.task_id is None
        if start:
            row.task_id = uuid.uuid4().hex
            now = utcnow()
            s.add(TaskRow(id=row.task_id, upload_id=row.id, status="queued", created_at=now, updated_at=now))
        return ChunkState(to_upload(row), session_id, len(seqs), missing, row.task_id, start)

    def _check_and_transcribe(self, task_id: str, upload_id: str) -> dict[str, Any]:
        upload = self.uploads.get(upload_id)
        if upload.status == "assembling":
            upload = self._assemble(task_id, upload_id)
        elif upload.status != "complete":
            raise InvalidInput(f"{upload.error or 'the upload is not usable'}; start a new session_id")
        prompt = prepare_prompt(self.uploads.folder(upload_id) / "data")
        log.info("[%s] prompt %d Hz ok, %.1f s of speech", task_id, prompt.original_rate, prompt.speech_s)
        models = self.uploads.models
        heard = transcribe_prompt(prompt, models.transcriber)
        text, language = heard.text, heard.language
        log.info("[%s] transcribed prompt (%s): %d characters", task_id, language, len(text))
        screen(models.words, models.settings.speech_filter, text, "the recording's speech")
        return {
            "transcript": text,
            "doubtful_words": list(heard.doubtful),
            "language": language,
            "duration": upload.duration,
            "speech_s": round(prompt.speech_s, 3),
            "sample_rate": prompt.original_rate,
            "container": upload.container,
            "notes": list(prompt.notes),
            "upload_id": upload_id,
        }

    def _assemble(self, task_id: str, upload_id: str) -> Upload:
        """The parts joined in seq order into ``data``, hashed, proven to be audio."""
        folder = self.uploads.folder(upload_id)
        with self.db.session() as s:
            seqs = sorted(s.scalars(select(ChunkRow.seq).where(ChunkRow.upload_id == upload_id)))
        target, tmp = folder / "data", folder / f".data-{uuid.uuid4().hex}.tmp"
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for seq in seqs:
                    with (folder / f"{seq}.part").open("rb") as part:
                        while block := part.read(_BLOCK):
                            digest.update(block)
                            out.write(block)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        for seq in seqs:
            (folder / f"{seq}.part").unlink(missing_ok=True)
        size = target.stat().st_size
        log.info("[%s] assembled %d chunks (%d bytes)", task_id, len(seqs), size)
        try:
            container, duration = self.uploads.probe(target)
        except InvalidInput as e:
            self.uploads.reject(upload_id, e.message)
            raise
        return self.uploads.update(
            upload_id,
            status="complete",
            size=size,
            sha256=digest.hexdigest(),
            container=container,
            duration=duration,
        )

    def _finish(
        self, task_id: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> None:
        with self.db.session(write=True) as s:
            task = s.get(TaskRow, task_id)
            if task is None:  # deleted with its upload meanwhile
                return
            task.status = "failed" if error else "succeeded"
            task.result, task.error, task.updated_at = _plain(result), _plain(error), utcnow()


def session_key(session_id: str, owner: str | None) -> str:
    """What the database keys a session by: the client's id itself without auth, else a digest of
    the owner and the id (64 hex characters: it fits the column whatever the two lengths)."""
    if owner is None:
        return session_id
    return hashlib.sha256(f"{owner}\n{session_id}".encode()).hexdigest()


def _plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` as plain JSON data (numpy numbers and the like as text), so the row always saves."""
    return None if value is None else dict(json.loads(json.dumps(value, default=str)))
