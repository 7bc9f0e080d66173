"""Uploads: the legacy chunked ``POST /v1/audio`` + ``GET /v1/task/{task_id}`` that the earlier
gateway's clients send, and resumable ``/v1/uploads`` (create, PUT ranges, resume, complete with a
checksum, transcribe, delete). The work is :mod:`voiceforge.service.uploads` and ``service.chunked``.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from voiceforge.errors import InvalidInput, VoiceforgeError
from voiceforge.fields import Speakers
from voiceforge.server.admission import creator, hit, reader, require, ticket_of
from voiceforge.server.bodies import read_form
from voiceforge.server.state import Services, services
from voiceforge.service.chunked import SESSION_ID, ChunkedUploads
from voiceforge.service.upload_rows import Upload
from voiceforge.service.uploads import UploadService

log = logging.getLogger(__name__)
# Rate limits count new uploads (a session's chunk 0, POST /v1/uploads), not every chunk or PUT.
router = APIRouter(tags=["uploads"], dependencies=[Depends(require("uploads", limit=False))])

_RANGE = re.compile(r"bytes (\d{1,15})-(\d{1,15})/(\d{1,15}|\*)")
_RANGE_QUERY = re.compile(r"bytes \*/(\d{1,15}|\*)")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


# -- shapes --------------------------------------------------------------------------------------
class ChunkReceipt(BaseModel):
    success: bool = True
    session_id: str
    upload_id: str
    seq: int
    received: int = Field(description="chunks received so far")
    missing: list[int] | None = Field(description="seqs still to send, once the last chunk is known")
    task_id: str | None = Field(description="set once every chunk is in: poll GET /v1/task/{task_id}")


class TaskError(BaseModel):
    code: str
    message: str
    detail: Any = None


class TaskStatus(BaseModel):
    task_id: str
    upload_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    result: dict[str, Any] | None = Field(
        description="transcript, language, duration, speech_s, sample_rate, container, notes, upload_id"
    )
    error: TaskError | None
    created_at: datetime
    updated_at: datetime


class NewUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    size: int = Field(ge=1, description="the whole file's size in bytes")
    filename: str | None = Field(default=None, max_length=255, description="shown back only; never trusted")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="checked at completion"
    )
    content_type: str | None = Field(default=None, max_length=128, description="informative only")


class CompleteUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class TranscribeUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$", description="default: detected")
    diarize: bool = Field(default=False, description="label each segment with its speaker")
    speakers: Speakers | None = None


class UploadInfo(BaseModel):
    upload_id: str
    kind: Literal["resumable", "chunked"]
    status: Literal["open", "assembling", "complete", "invalid"]
    filename: str | None
    content_type: str | None
    size: int | None
    received: int = Field(description="bytes stored; a resumed upload continues from here")
    chunk_size: int = Field(description="suggested bytes per PUT")
    sha256: str | None
    container: str | None = Field(description="sniffed from the bytes once complete")
    duration: float | None
    error: str | None
    created_at: datetime
    expires_at: datetime


class Segment(BaseModel):
    start: float
    end: float
    text: str
    speaker: str | None = None  # when diarized


class UploadTranscript(BaseModel):
    upload_id: str
    transcript: str
    language: str
    language_probability: float
    duration: float
    segments: list[Segment]


_BINARY = {"type": "string", "format": "binary"}
_CHUNK_FORM = {
    "type": "object",
    "required": ["session_id", "seq", "chunk"],
    "properties": {
        "session_id": {"type": "string", "pattern": f"^{SESSION_ID.pattern}$"},
        "seq": {"type": "integer", "minimum": 0, "description": "0-based chunk number"},
        "is_last": {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"},
        "chunk": _BINARY,
    },
}


# -- legacy chunked upload -----------------------------------------------------------------------
@router.post(
    "/v1/audio",
    response_model=ChunkReceipt,
    responses={202: {"model": ChunkReceipt, "description": "the last chunk is in but others are missing"}},
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _CHUNK_FORM}}}
    },
)
async def chunk(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """One chunk of a recording (``session_id``, ``seq``, ``is_last``, file ``chunk``), in any order.

    The request that completes the set answers ``task_id``; the task checks the recording as a voice
    prompt and transcribes it.
    """
    sessions = ChunkedUploads(upload_service(svc))
    form = await read_form(request)  # its size: the body guard's rule for /v1/audio
    try:
        session_id = _field(form, "session_id") or ""
        seq = _seq(_field(form, "seq"))
        if seq == 0:
            await hit(request, "uploads")
        is_last = _flag(_field(form, "is_last"))
        part = form.get("chunk")
        if not isinstance(part, UploadFile):
            raise InvalidInput("chunk is required: send this piece of the file as the multipart file 'chunk'")
        owner = creator(ticket_of(request).principal)
        state = await run_in_threadpool(sessions.put, session_id, seq, is_last, part.file, owner)
    finally:
        await form.close()
    if state.start and state.task_id:
        try:
            svc.pool.submit(functools.partial(sessions.run_task, state.task_id), breaker=False)
        except VoiceforgeError:
            await run_in_threadpool(sessions.forget_task, state.task_id)
            raise
        log.info("[%s] queued: check and transcribe upload %s", state.task_id, state.upload.id)
    receipt = ChunkReceipt(
        session_id=session_id,
        upload_id=state.upload.id,
        seq=seq,
        received=state.chunks,
        missing=state.missing,
        task_id=state.task_id,
    )
    status = 202 if state.missing else 200
    return JSONResponse(receipt.model_dump(mode="json"), status_code=status)


@router.get("/v1/task/{task_id}", response_model=TaskStatus)
async def task(task_id: str, request: Request, svc: Annotated[Services, Depends(services)]) -> TaskStatus:
    """Where a chunked upload's task stands: queued, running, succeeded (``result``) or failed (``error``).
    Only the key that sent the chunks (or an admin) sees it; anyone else gets 404."""
    who = reader(ticket_of(request).principal)
    t = await run_in_threadpool(ChunkedUploads(upload_service(svc)).task, task_id, who)
    return TaskStatus(
        task_id=t.id,
        upload_id=t.upload_id,
        status=t.status,  # type: ignore[arg-type]
        result=t.result,
        error=TaskError.model_validate(t.error) if t.error else None,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


# -- resumable uploads ---------------------------------------------------------------------------
@router.post("/v1/uploads", response_model=UploadInfo, status_code=201)
async def create(
    request: Request, body: NewUpload, svc: Annotated[Services, Depends(services)]
) -> UploadInfo:
    """Open an upload of ``size`` bytes; send them with PUT, then complete it."""
    await hit(request, "uploads")
    uploads = upload_service(svc)
    work = functools.partial(
        uploads.create,
        body.size,
        filename=body.filename,
        sha256=body.sha256,
        content_type=body.content_type,
        owner=creator(ticket_of(request).principal),
    )
    upload = await run_in_threadpool(work)
    return _info(svc, upload)


@router.get("/v1/uploads/{upload_id}", response_model=UploadInfo)
async def upload_status(
    upload_id: str, request: Request, svc: Annotated[Services, Depends(services)]
) -> UploadInfo:
    """The upload's state; ``received`` is where an interrupted upload resumes."""
    await owned(request, svc, upload_id)
    return _info(svc, await run_in_threadpool(upload_service(svc).get, upload_id))


@router.put(
    "/v1/uploads/{upload_id}",
    response_model=UploadInfo,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": _BINARY}}}
    },
)
async def put(
    upload_id: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    offset: Annotated[int | None, Query(ge=0, description="where the body goes; or Content-Range")] = None,
    content_range: Annotated[str | None, Header(description="bytes first-last/total")] = None,
) -> UploadInfo:
    """Raw bytes at ``Content-Range: bytes a-b/total`` (or ``?offset=a``); a resent range is a no-op.

    ``Content-Range: bytes */total`` with an empty body just asks where to resume.
    """
    uploads = await owned(request, svc, upload_id)
    upload = await run_in_threadpool(uploads.get, upload_id)
    if content_range is not None and _RANGE_QUERY.fullmatch(content_range.strip()):
        return _info(svc, upload)
    start, length = _range(content_range, offset, upload)
    limit = length if length is not None else (upload.size or 0) - start
    spooled = await run_in_threadpool(uploads.spool_path, upload_id)
    try:
        written = await _receive(request, spooled, limit)
        if length is not None and written != length:
            raise InvalidInput(
                f"Content-Range announces {length} bytes but the body has {written}; send the whole range"
            )
        upload = await run_in_threadpool(uploads.write, upload_id, start, spooled)
    finally:
        await run_in_threadpool(functools.partial(spooled.unlink, missing_ok=True))
    return _info(svc, upload)


@router.post("/v1/uploads/{upload_id}/complete", response_model=UploadInfo)
async def complete(
    upload_id: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    body: CompleteUpload | None = None,
) -> UploadInfo:
    """Check the size and the sha256 (given now or at creation) and that the bytes are audio."""
    uploads = await owned(request, svc, upload_id)
    work = functools.partial(uploads.complete, upload_id, body.sha256 if body else None)
    upload = await svc.pool.run(work, timeout=svc.settings.request_timeout_s, breaker=False)
    log.info("[%s] upload complete: %s bytes, %s", upload_id, upload.size, upload.container)
    return _info(svc, upload)


@router.delete("/v1/uploads/{upload_id}", status_code=204, response_class=Response)
async def abort(upload_id: str, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Abort an upload, or remove a finished one; its bytes are deleted."""
    uploads = await owned(request, svc, upload_id)
    await run_in_threadpool(uploads.delete, upload_id)
    return Response(status_code=204)


@router.post("/v1/uploads/{upload_id}/transcribe", response_model=UploadTranscript)
async def transcribe(
    upload_id: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    body: TranscribeUpload | None = None,
) -> UploadTranscript:
    """Whisper's transcript of a complete upload (for long recordings use a transcription job)."""
    uploads = await owned(request, svc, upload_id)
    body = body or TranscribeUpload()
    work = functools.partial(
        uploads.transcribe,
        upload_id,
        body.language,
        diarize=body.diarize or body.speakers is not None,
        speakers=body.speakers,
    )
    result = await svc.pool.run(work, timeout=svc.settings.request_timeout_s, breaker=False)
    return UploadTranscript(
        upload_id=upload_id,
        transcript=result.text,
        language=result.language,
        language_probability=round(result.language_probability, 4),
        duration=round(result.duration, 3),
        segments=[Segment(start=s.start, end=s.end, text=s.text, speaker=s.speaker) for s in result.segments],
    )


# -- helpers -------------------------------------------------------------------------------------
def upload_service(svc: Services) -> UploadService:
    if svc.uploads is None:
        raise RuntimeError("the upload service was not built; create the app with create_app()")
    return svc.uploads


async def owned(request: Request, svc: Services, upload_id: str) -> UploadService:
    """The upload service, once the caller is known to own ``upload_id`` (or is an admin): another
    key's upload is a 404, worded as for one that does not exist."""
    uploads = upload_service(svc)
    await run_in_threadpool(uploads.check_owner, upload_id, reader(ticket_of(request).principal))
    return uploads


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a plain form field, not a file")
    return value.strip()


def _seq(value: str | None) -> int:
    if value is None or value == "":
        raise InvalidInput("seq is required: the chunk's 0-based number")
    if not re.fullmatch(r"-?\d{1,9}", value):
        raise InvalidInput(f"seq {value[:40]!r} is not a whole number; chunks are numbered 0, 1, 2, …")
    return int(value)


def _flag(value: str | None) -> bool:
    if value is None or value == "":
        return False
    flag = _FLAGS.get(value.lower())
    if flag is None:
        raise InvalidInput(f"is_last {value[:40]!r} is not true, false, 1 or 0")
    return flag


def _range(header: str | None, offset: int | None, upload: Upload) -> tuple[int, int | None]:
    """Where the body goes and, from Content-Range, how long it must be."""
    if header is None:
        return offset or 0, None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise InvalidInput(
            f"Content-Range {header[:80]!r} is not 'bytes first-last/total' (e.g. bytes 0-1048575/5000000)"
        )
    first, last, total = int(match[1]), int(match[2]), match[3]
    if last < first:
        raise InvalidInput(f"Content-Range {header!r} ends before it starts")
    if total != "*" and int(total) != upload.size:
        raise InvalidInput(
            f"Content-Range total {total} differs from the upload's size {upload.size}; "
            "create a new upload for another file"
        )
    if offset is not None and offset != first:
        raise InvalidInput(f"?offset={offset} and Content-Range (from {first}) disagree; send one")
    return first, last - first + 1


async def _receive(request: Request, path: Path, limit: int) -> int:
    """Stream the body into ``path``; InvalidInput once it passes ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise InvalidInput(f"the body is {length} bytes; its range or the upload's size allows {limit}")
    written = 0
    buffer = bytearray()
    async with await anyio.open_file(path, "wb") as f:
        async for piece in request.stream():
            written += len(piece)
            if written > limit:
                raise InvalidInput(
                    f"the body runs past {limit} bytes, the length its range or the upload's size allows"
                )
            buffer += piece
            if len(buffer) >= 1 << 20:
                await f.write(bytes(buffer))
                buffer.clear()
        await f.write(bytes(buffer))
    return written


def _info(svc: Services, upload: Upload) -> UploadInfo:
    return UploadInfo(
        upload_id=upload.id,
        kind=upload.kind,  # type: ignore[arg-type]
        status=upload.status,  # type: ignore[arg-type]
        filename=upload.filename,
        content_type=upload.content_type,
        size=upload.size,
        received=upload.received,
        chunk_size=svc.settings.upload_chunk_bytes,
        sha256=upload.sha256,
        container=upload.container,
        duration=upload.duration,
        error=upload.error,
        created_at=upload.created_at,
        expires_at=upload.updated_at + timedelta(hours=svc.settings.retention_hours),
    )
