"""Uploads: files that arrive in pieces and end as one file proven to be audio, kept for the
retention period for a voice enrollment, a transcription or a job to read by id.

Resumable uploads are created with their size (and optionally a sha256), filled with ranged PUTs
that may be resent or resumed, and completed once every byte is in and the checksum matches. The
legacy chunked sessions (:mod:`voiceforge.service.chunked`) share these tables and folders.

The tables and the :class:`Upload` record are :mod:`voiceforge.service.upload_rows`; spooling,
comparing and hashing the bytes, :mod:`voiceforge.service.upload_files`.

Rows live in the shared database (``uploads``, ``upload_chunks``, ``upload_tasks``); bytes under
``<data_dir>/uploads/<upload_id>/`` (``data``, plus ``<seq>.part`` chunks of a legacy session).
Upload ids are ours (``up_`` + 32 hex) and are checked against that pattern before any path is
built. Every write runs in one write transaction with the upload's row locked, so retried and
concurrent requests see one order of events. Everything here blocks: routes call it through the
thread pool (files, database) or the worker pool (hashing, decoding, Whisper).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from voiceforge.asr.whisper import Transcript
from voiceforge.audio.decode import AudioTooLong, decode, measure
from voiceforge.config import Settings
from voiceforge.db import Database, aware, utcnow
from voiceforge.errors import Conflict, InvalidInput, NotFound, TooLarge
from voiceforge.service.models import Models
from voiceforge.service.owners import Owners
from voiceforge.service.owners import upload as owned_upload
from voiceforge.service.transcribe import screen, transcribe
from voiceforge.service.upload_files import BLOCK, container, same, sha256_of
from voiceforge.service.upload_rows import (
    UPLOAD_ID,
    TaskRow,
    Upload,
    UploadRow,
    drop,
    find,
    new_upload_id,
    to_upload,
)

log = logging.getLogger(__name__)

SHA256 = re.compile(r"[0-9a-f]{64}")
PROBE_S = 30.0  # seconds decoded to prove an upload is audio; a longer file is read no further
STALE_S = 300.0  # an "assembling" claim this old was left behind by a crash


class UploadService:
    """Uploads and their owners: with auth on, an upload (and a chunked session and its task)
    belongs to the principal that started it; methods given ``owner`` treat another's as missing."""

    def __init__(
        self, settings: Settings, db: Database, models: Models, owners: Owners | None = None
    ) -> None:
        self.db = db
        self.owners = owners or Owners(db)
        self.models = models
        self.root = Path(settings.data_dir) / "uploads"
        self.max_bytes = settings.max_upload_bytes
        self.max_chunks = settings.max_upload_chunks
        self.max_audio_s = settings.max_upload_audio_s
        self.chunk_size = settings.upload_chunk_bytes

    # -- resumable uploads -----------------------------------------------------------------------
    def create(
        self,
        size: int,
        *,
        filename: str | None,
        sha256: str | None,
        content_type: str | None,
        owner: str | None = None,
    ) -> Upload:
        """A new resumable upload of ``size`` bytes, empty so far, belonging to ``owner``."""
        if size > self.max_bytes:
            raise TooLarge(
                f"the upload would be {size} bytes; at most {self.max_bytes} bytes "
                f"({self.max_bytes // 2**20} MiB) are accepted",
                detail={"size": size, "max_bytes": self.max_bytes},
            )
        now = utcnow()
        row = UploadRow(
            id=new_upload_id(),
            kind="resumable",
            filename=_display(filename),
            content_type=_display(content_type),
            size=size,
            received=0,
            expected_sha256=_check_sha256(sha256),
            status="open",
            created_at=now,
            updated_at=now,
        )
        folder = self.folder(row.id)
        folder.mkdir(parents=True)
        (folder / "data").touch()
        with self.db.session(write=True) as s:
            s.add(row)
            if owner is not None:
                self.owners.add(s, owned_upload(row.id), owner)
        log.info("[%s] upload opened: %d bytes expected", row.id, size)
        return to_upload(row)

    def get(self, upload_id: str) -> Upload:
        with self.db.session() as s:
            return to_upload(find(s, upload_id))

    def check_owner(self, upload_id: str, owner: str | None) -> None:
        """NotFound, worded as for a missing upload, unless ``owner`` (None: anyone) started it."""
        if owner is not None and not self.owners.owns(owned_upload(str(upload_id)), owner):
            raise NotFound(f"no upload {str(upload_id)[:80]!r}; it was never created, was deleted or expired")

    def spool_path(self, upload_id: str) -> Path:
        """A fresh temporary file name inside the upload's folder, for a PUT body to land in;
        NotFound or Conflict (before any byte is read) when the upload takes no bytes."""
        folder = self.folder(upload_id)
        _writable(self.get(upload_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".put-{uuid.uuid4().hex}.tmp"

    def write(self, upload_id: str, offset: int, spooled: Path) -> Upload:
        """Add the bytes in ``spooled`` at ``offset``; bytes already received must match (a retry)."""
        length = spooled.stat().st_size
        end = offset + length
        with self.db.session(write=True) as s:
            row = find(s, upload_id, lock=True)
            _writable(to_upload(row))
            assert row.size is not None
            if end > row.size:
                raise InvalidInput(
                    f"bytes {offset}-{end - 1} run past the upload's declared size of {row.size} bytes",
                    detail={"size": row.size, "received": row.received},
                )
            if offset > row.received:
                raise Conflict(
                    f"upload {upload_id} has {row.received} bytes, so the next range must start at "
                    f"{row.received}, not {offset}; GET /v1/uploads/{upload_id} tells where to resume",
                    detail={"received": row.received, "size": row.size},
                )
            with spooled.open("rb") as src, (self.folder(upload_id) / "data").open("r+b") as dst:
                overlap = min(end, row.received) - offset
                if overlap > 0 and not same(src, dst, offset, overlap):
                    raise Conflict(
                        f"bytes {offset}-{offset + overlap - 1} differ from the ones already received; "
                        f"resume from offset {row.received} with the same file",
                        detail={"received": row.received, "size": row.size},
                    )
                if end > row.received:
                    src.seek(row.received - offset)
                    dst.seek(row.received)
                    shutil.copyfileobj(src, dst, BLOCK)
                    dst.flush()
                    os.fsync(dst.fileno())  # `received` must never count bytes a crash could lose
                    row.received = end
            row.updated_at = utcnow()
            log.info("[%s] received bytes %d-%d (%d of %d)", upload_id, offset, end - 1, end, row.size)
            return to_upload(row)

    def complete(self, upload_id: str, sha256: str | None = None) -> Upload:
        """Check the size and checksum, prove the bytes are audio and mark the upload complete.

        CPU work (hashing, decoding a few seconds): run it on the worker pool.
        """
        expected = _check_sha256(sha256)
        with self.db.session(write=True) as s:
            row = find(s, upload_id, lock=True)
            if row.kind != "resumable":
                raise Conflict(f"upload {upload_id} is a chunked session; its last chunk completes it")
            if row.status == "complete":
                return to_upload(row)
            if row.status == "invalid":
                raise InvalidInput(f"{row.error}; start a new upload")
            if row.status == "assembling" and _age(row) < STALE_S:
                raise Conflict(f"upload {upload_id} is being completed; GET it again in a moment")
            if row.received != row.size:
                raise Conflict(
                    f"upload {upload_id} has {row.received} of {row.size} bytes; PUT the rest from "
                    f"offset {row.received}, then complete it",
                    detail={"received": row.received, "size": row.size},
                )
            if expected and row.expected_sha256 and expected != row.expected_sha256:
                raise InvalidInput(
                    f"sha256 {expected} differs from {row.expected_sha256} given when the upload was "
                    "created; send the file's real sha256"
                )
            expected = expected or row.expected_sha256
            row.status, row.updated_at = "assembling", utcnow()
        path = self.folder(upload_id) / "data"
        try:
            digest = sha256_of(path)
            if expected and digest != expected:
                raise InvalidInput(
                    f"sha256 mismatch: the upload was declared as {expected} but the bytes received hash "
                    f"to {digest}; they were damaged or are another file, so start a new upload",
                    detail={"expected": expected, "received": digest},
                )
            container, duration = self.probe(path)
        except InvalidInput as e:
            self.reject(upload_id, e.message)
            raise
        except BaseException:
            self.update(upload_id, status="open")
            raise
        return self.update(
            upload_id, status="complete", sha256=digest, container=container, duration=duration
        )

    def delete(self, upload_id: str) -> None:
        """Abort or remove an upload: its row, chunks, task rows and files."""
        with self.db.session(write=True) as s:
            row = find(s, upload_id, lock=True)
            drop(s, row.id)
        shutil.rmtree(self.folder(upload_id), ignore_errors=True)
        log.info("[%s] upload deleted", upload_id)

    # -- reading finished uploads ----------------------------------------------------------------
    def path(self, upload_id: str) -> Path:
        """The stored file of a complete upload (for the jobs helper and voice enrollment)."""
        upload = self.get(upload_id)
        if upload.status != "complete":
            hint = "complete it first" if upload.kind == "resumable" else "wait for its task to finish"
            raise Conflict(f"upload {upload_id} is {upload.status}, not complete; {hint}")
        path = self.folder(upload_id) / "data"
        if not path.is_file():
            raise NotFound(f"upload {upload_id} was just deleted or expired; upload the file again")
        return path

    def read(self, upload_id: str) -> bytes:
        """The bytes of a complete upload (at most ``max_upload_bytes``)."""
        return self.path(upload_id).read_bytes()

    def transcribe(
        self,
        upload_id: str,
        language: str | None = None,
        *,
        diarize: bool = False,
        speakers: int | None = None,
    ) -> Transcript:
        """Whisper over a complete upload of at most ``max_upload_audio_s`` (with who spoke when on
        request), checked as recognised speech. Run it on the worker pool."""
        started = time.perf_counter()
        audio = decode(self.path(upload_id), max_duration_s=self.max_audio_s, rate=16_000)
        try:
            result = transcribe(
                self.models, audio.samples, language=language, diarize=diarize, speakers=speakers
            )
        except ValueError as e:  # faster-whisper refuses a language code it does not know
            raise InvalidInput(f"Whisper cannot transcribe language {language!r} ({e}); try en or zh") from e
        log.info(
            "[%s] transcribed %.1f s (%s) in %.1f s: %d characters",
            upload_id,
            result.duration,
            result.language,
            time.perf_counter() - started,
            len(result.text),
        )
        screen(self.models.words, self.models.settings.speech_filter, result.text, "the upload's speech")
        return result

    # -- retention -------------------------------------------------------------------------------
    def expire(self, older_than_s: float) -> int:
        """Remove uploads (any state) and tasks untouched for ``older_than_s``, and stray files."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.db.session(write=True) as s:
            ids = list(s.scalars(select(UploadRow.id).where(UploadRow.updated_at < cutoff)))
            for upload_id in ids:
                drop(s, upload_id)
            s.execute(delete(TaskRow).where(TaskRow.updated_at < cutoff))
            live = set(s.scalars(select(UploadRow.id)))
        removed = 0
        for upload_id in ids:
            shutil.rmtree(self.folder(upload_id), ignore_errors=True)
            removed += 1
        if self.root.is_dir():
            old = time.time() - older_than_s
            for folder in self.root.iterdir():
                if not UPLOAD_ID.fullmatch(folder.name) or not folder.is_dir() or folder.is_symlink():
                    continue
                if folder.name not in live and folder.stat().st_mtime < old:
                    shutil.rmtree(folder, ignore_errors=True)  # a crash between mkdir and its row
                    removed += 1
                    continue
                for tmp in folder.glob(".*.tmp"):  # bodies of requests that never finished
                    if tmp.stat().st_mtime < old:
                        tmp.unlink(missing_ok=True)
                        removed += 1
        if removed:
            log.info("retention: removed %d upload(s) and temp file(s)", removed)
        return removed

    # -- internals -------------------------------------------------------------------------------
    def folder(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"no upload {str(upload_id)[:80]!r}; upload ids look like up_ and 32 hex digits")
        return self.root / upload_id

    def probe(self, path: Path) -> tuple[str, float | None]:
        """The container and duration of an audio file; InvalidInput when it is not audio."""
        try:
            audio = measure(path, max_duration_s=PROBE_S)
        except AudioTooLong as e:  # audio for sure; name the container from the header alone
            return container(path), e.duration_s
        return audio.container, round(audio.duration_s, 3)

    def reject(self, upload_id: str, message: str) -> None:
        """An upload that can never be used: its bytes go, its row says why."""
        self.update(upload_id, status="invalid", error=message[:1000])
        folder = self.folder(upload_id)
        for path in folder.iterdir() if folder.is_dir() else ():
            path.unlink(missing_ok=True)
        log.info("[%s] upload refused: %s", upload_id, message)

    def update(self, upload_id: str, **values: Any) -> Upload:
        with self.db.session(write=True) as s:
            row = find(s, upload_id, lock=True)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            return to_upload(row)


def _writable(upload: Upload) -> None:
    if upload.kind != "resumable":
        raise Conflict(f"upload {upload.id} is a chunked POST /v1/audio session; send its chunks there")
    if upload.status != "open":
        raise Conflict(f"upload {upload.id} is {upload.status}; it takes no more bytes")


def _age(row: UploadRow) -> float:
    return (utcnow() - aware(row.updated_at)).total_seconds()


def _display(value: str | None) -> str | None:
    """A client-given name kept for display only: control characters dropped, length bounded."""
    if value is None:
        return None
    clean = "".join(c for c in value if c.isprintable())[:255]
    return clean or None


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    clean = value.strip().lower()
    if not SHA256.fullmatch(clean):
        raise InvalidInput(f"sha256 {value[:80]!r} is not 64 hex digits; send the file's SHA-256 in hex")
    return clean
