"""The tables resumable uploads and legacy chunked sessions share (``uploads``, ``upload_chunks``,
``upload_tasks``), and the :class:`Upload` record a caller sees. Upload ids are ours (``up_`` + 32
hex) and are checked against that pattern before a row is read or a path is built."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, String, Text, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from voiceforge.db import Base, aware
from voiceforge.errors import NotFound
from voiceforge.service.owners import forget
from voiceforge.service.owners import upload as owned_upload

UPLOAD_ID = re.compile(r"up_[0-9a-f]{32}")


class UploadRow(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "resumable" or "chunked" (POST /v1/audio)
    session_id: Mapped[str | None] = mapped_column(String(128), unique=True)  # the legacy client's
    filename: Mapped[str | None] = mapped_column(String(255))  # for display only
    content_type: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)  # declared (resumable) or assembled size
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str | None] = mapped_column(String(64))  # of the stored bytes, once complete
    last_seq: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # open | assembling | complete | invalid
    container: Mapped[str | None] = mapped_column(String(16))
    duration: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ChunkRow(Base):
    __tablename__ = "upload_chunks"

    upload_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class TaskRow(Base):
    __tablename__ = "upload_tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    upload_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | failed
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class Upload:
    id: str
    kind: str
    status: str
    filename: str | None
    content_type: str | None
    size: int | None
    received: int
    sha256: str | None
    container: str | None
    duration: float | None
    error: str | None
    created_at: datetime
    updated_at: datetime


def find(s: Session, upload_id: str, *, lock: bool = False) -> UploadRow:
    row = s.get(UploadRow, upload_id, with_for_update=lock) if UPLOAD_ID.fullmatch(upload_id) else None
    if row is None:
        raise NotFound(f"no upload {upload_id[:80]!r}; it was never created, was deleted or expired")
    return row


def drop(s: Session, upload_id: str) -> None:
    """Delete an upload's rows (its owner, chunks and tasks too) within the open transaction ``s``."""
    forget(s, owned_upload(upload_id))
    s.execute(delete(ChunkRow).where(ChunkRow.upload_id == upload_id))
    s.execute(delete(TaskRow).where(TaskRow.upload_id == upload_id))
    s.execute(delete(UploadRow).where(UploadRow.id == upload_id))


def new_upload_id() -> str:
    return f"up_{uuid.uuid4().hex}"


def to_upload(row: UploadRow) -> Upload:
    return Upload(
        id=row.id,
        kind=row.kind,
        status=row.status,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        received=row.received,
        sha256=row.sha256,
        container=row.container,
        duration=row.duration,
        error=row.error,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )
