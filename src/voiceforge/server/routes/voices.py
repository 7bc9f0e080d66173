"""Voices: the engine's stock voices and the saved (cloned) ones of the voice library.

``POST /v1/voices`` enrolls a 3–15 s recording (a file, or a finished upload) on the worker pool;
``GET/PATCH/DELETE /v1/voices/{id}`` take an id or a name; ``/prompt`` serves the recording for
preview; ``/export`` and ``/v1/voices/import`` move a voice between servers as a zip.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import zipfile
import zlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from voiceforge.errors import Conflict, InvalidInput, NotFound
from voiceforge.server.admission import require, ticket_of
from voiceforge.server.bodies import json_object, read_form
from voiceforge.server.headers import user_file_headers
from voiceforge.server.idempotency import fingerprint, once
from voiceforge.server.routes.uploads import owned
from voiceforge.server.routes.voice_shapes import (
    IMPORT_FORM,
    NEW_VOICE_FORM,
    NewVoice,
    VoiceList,
    VoiceOut,
    VoicePatch,
    saved_out,
)
from voiceforge.server.state import Services, services
from voiceforge.service.cloning import ClonedVoice
from voiceforge.service.learning import LearnState
from voiceforge.service.speech import new_task_id
from voiceforge.voices.library import DOUBTFUL, NO_CONSENT, VoiceLibrary, VoiceRecord

log = logging.getLogger(__name__)
router = APIRouter(tags=["voices"], dependencies=[Depends(require("voices"))])

T = TypeVar("T")
_CREATE_HINT = "pick another name, or rename or delete that voice (PATCH or DELETE /v1/voices/{id})"
_IMPORT_HINT = "import it under another name (the form field 'name')"


# -- shapes --------------------------------------------------------------------------------------
# -- routes --------------------------------------------------------------------------------------
@router.get("/v1/voices", response_model=VoiceList)
async def list_voices(svc: Annotated[Services, Depends(services)]) -> VoiceList:
    """The engine's stock voices, then the saved ones (newest first)."""
    saved = await run_in_threadpool(svc.library.list)
    return VoiceList(voices=[*_stock(svc), *(saved_out(r) for r in saved)])


@router.post(
    "/v1/voices",
    response_model=VoiceOut,
    status_code=201,
    responses={409: {"description": "a voice with that name exists"}, 504: {"description": "timed out"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": NEW_VOICE_FORM},
                "application/json": {"schema": NewVoice.model_json_schema()},
            },
        }
    },
)
async def create_voice(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """Clone and save a voice from a 3–15 s recording (``file``) or a finished upload (``upload_id``).

    Enrollment takes seconds to tens of seconds; it runs on the engine workers. With an
    ``Idempotency-Key`` header, a retry with the same key and body returns the voice the first
    request saved (``Idempotent-Replayed: true``) instead of a 409 for the taken name.
    """
    body, prompt = await _new_voice(request, svc)

    async def make() -> tuple[int, Any]:
        return 201, await _create(request, svc, body, prompt)

    return await once(request, svc, "voices", lambda: fingerprint(body.model_dump(mode="json"), prompt), make)


async def _create(request: Request, svc: Services, body: NewVoice, prompt: bytes | None) -> dict[str, Any]:
    task_id = new_task_id()
    request.state.task_id = task_id
    if body.language is not None and body.language not in (langs := _languages(svc)):
        raise InvalidInput(
            f"language {body.language!r} is not one the engine speaks; use {' or '.join(langs)}"
        )
    await run_in_threadpool(_check_free, svc.library, body.name)
    if prompt is None:
        assert body.upload_id is not None
        uploads = await owned(request, svc, body.upload_id)  # another key's upload: 404
        prompt = await run_in_threadpool(uploads.read, body.upload_id)
    if not body.consent:  # before the enrollment's seconds of CPU; the library checks it again
        raise InvalidInput(NO_CONSENT, detail={"param": "consent"})
    log.info(
        "[%s] enrolling voice %r from %d bytes (%s)",
        task_id,
        body.name,
        len(prompt),
        f"upload {body.upload_id}" if body.upload_id else "file",
    )
    learning = svc.speech.learning if body.learn else None
    quick = learning is not None
    clone = svc.speech.models.clone
    work = functools.partial(clone, prompt, transcript=body.transcript, language=body.language, quick=quick)
    cloned: ClonedVoice = await svc.pool.run(work, timeout=svc.settings.enroll_timeout_s)
    meta = {**cloned.profile.meta, "transcript_source": cloned.transcript_source}
    if cloned.doubtful:
        meta[DOUBTFUL] = list(cloned.doubtful)
    create = functools.partial(
        svc.library.create,
        body.name,
        prompt=prompt,
        profile=cloned.profile,
        consent=body.consent,
        meta=meta,
        consent_by=ticket_of(request).principal.id,
    )
    record = await run_in_threadpool(_clashes_conflict, svc.library, body.name, create, _CREATE_HINT)
    if learning is not None:
        record = await run_in_threadpool(learning.voice, record.id)
    log.info(
        "[%s] voice %s saved (SIM %s -> %s)",
        task_id,
        record.id,
        meta.get("stock_sim"),
        meta.get("calibration_sim"),
    )
    return saved_out(record).model_dump(mode="json")


@router.post(
    "/v1/voices/import",
    response_model=VoiceOut,
    status_code=201,
    responses={409: {"description": "a voice with that name exists; give another name"}},
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": IMPORT_FORM}}}
    },
)
async def import_voice(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """Add a voice exported by ``GET /v1/voices/{id}/export`` (under ``name`` when given)."""
    form = await read_form(request)  # its size: the body guard's rule for /v1/voices/import
    try:
        part = form.get("file")
        name = form.get("name")
        if not isinstance(part, UploadFile):
            raise InvalidInput("file is required: the zip that GET /v1/voices/{id}/export gave")
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name must be a plain form field, not a file")
        data = await part.read()
    finally:
        await form.close()
    name = name.strip() if isinstance(name, str) and name.strip() else None
    work = functools.partial(svc.library.import_, data, name=name)
    chosen = name or await run_in_threadpool(_exported_name, data)
    imported = await run_in_threadpool(_clashes_conflict, svc.library, chosen, work, _IMPORT_HINT)
    if svc.speech.learning is not None and await run_in_threadpool(_learnable, svc, imported):
        imported = await run_in_threadpool(svc.speech.learning.voice, imported.id)  # an older one learns too
    log.info("voice %s imported (%s)", imported.id, imported.name)
    return JSONResponse(saved_out(imported).model_dump(mode="json"), status_code=201)


@router.get("/v1/voices/{ref}", response_model=VoiceOut)
async def get_voice(ref: str, svc: Annotated[Services, Depends(services)]) -> VoiceOut:
    """A stock voice by name, or a saved voice by id or name."""
    stock = {v.id: v for v in _stock(svc)}
    if ref in stock:
        return stock[ref]
    return saved_out(await run_in_threadpool(svc.library.get, ref))


@router.patch("/v1/voices/{ref}", response_model=VoiceOut, responses={409: {"description": "name taken"}})
async def update_voice(
    ref: str, body: VoicePatch, request: Request, svc: Annotated[Services, Depends(services)]
) -> VoiceOut:
    """Rename a saved voice, correct its transcript or record consent (true: affirmed by the caller
    now; false: withdrawn)."""
    _not_stock(svc, ref, "changed")
    by = ticket_of(request).principal.id
    return saved_out(await run_in_threadpool(_update, svc.library, ref, body, by))


@router.delete("/v1/voices/{ref}", status_code=204, response_class=Response)
async def delete_voice(ref: str, svc: Annotated[Services, Depends(services)]) -> Response:
    """Delete a saved voice and its files."""
    _not_stock(svc, ref, "deleted")
    record = await run_in_threadpool(svc.library.get, ref)
    if svc.speech.learning is not None:
        svc.speech.learning.forget(record.id)
    await run_in_threadpool(svc.library.delete, record.id)
    return Response(status_code=204)


@router.get("/v1/voices/{ref}/prompt", response_class=FileResponse)
async def voice_prompt(
    ref: str, request: Request, svc: Annotated[Services, Depends(services)]
) -> FileResponse:
    """The recording a saved voice was cloned from (WAV), for preview."""
    _not_stock(svc, ref, "previewed here (stock voices have no recording)")
    path = await run_in_threadpool(svc.library.prompt_path, ref)
    name = f"{path.parent.name}{path.suffix}"
    return FileResponse(path, headers=user_file_headers(name, request.headers.get("sec-fetch-dest")))


@router.get("/v1/voices/{ref}/export", response_class=Response)
async def export_voice(ref: str, svc: Annotated[Services, Depends(services)]) -> Response:
    """A zip of the voice (record, profile, recording) for ``POST /v1/voices/import`` elsewhere."""
    _not_stock(svc, ref, "exported (every server has it)")
    record = await run_in_threadpool(svc.library.get, ref)
    data = await run_in_threadpool(svc.library.export, record.id)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{record.id}.zip"'},
    )


# -- helpers -------------------------------------------------------------------------------------
async def _new_voice(request: Request, svc: Services) -> tuple[NewVoice, bytes | None]:
    """The form (with an optional ``file``) or JSON body of POST /v1/voices, validated."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    prompt: bytes | None = None
    fields: dict[str, Any]
    if kind == "application/json":
        fields = await json_object(request, '{"name": "Ana", "upload_id": "up_…"}')
    else:
        form = await read_form(request)
        try:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            part = form.get("file")
            if isinstance(part, UploadFile):
                prompt = await part.read()
        finally:
            await form.close()
    try:
        body = NewVoice.model_validate(fields)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e
    if (prompt is None) == (body.upload_id is None):
        raise InvalidInput(
            "send the recording as the file 'file', or a finished upload's id as 'upload_id' (one of them)"
        )
    if prompt is not None and not prompt:
        raise InvalidInput("the file is empty; send a 3–15 s recording")
    return body, prompt


def _stock(svc: Services) -> list[VoiceOut]:
    engine = svc.speech.models.engine
    return [
        VoiceOut(
            id=v.name,
            name=v.name,
            kind="stock",
            language=v.language,
            engine=engine.name,
            gender=v.gender,
            display_name=v.label,
            default_for=list(v.default_for),
            description=v.description or None,
        )
        for v in engine.voices()
    ]


def _languages(svc: Services) -> list[str]:
    return sorted(svc.speech.models.engine.capabilities.languages)


def _not_stock(svc: Services, ref: str, what: str) -> None:
    if ref in {v.name for v in svc.speech.models.engine.voices()}:
        raise InvalidInput(f"{ref!r} is a stock voice of the engine; it cannot be {what}")


def _learnable(svc: Services, record: VoiceRecord) -> bool:
    """An imported voice learns unless it is learned already or learning failed for it before."""
    state = LearnState.of(record)
    return (
        record.engine == "kokoro"
        and not svc.library.profile(record.id).learned
        and (state is None or state.state != "failed")
    )


def _taken_by(library: VoiceLibrary, name: str) -> str | None:
    """The id of the voice called ``name``, if any."""
    try:
        return library.get(name).id
    except (NotFound, InvalidInput):
        return None


def _check_free(library: VoiceLibrary, name: str) -> None:
    if (other := _taken_by(library, name)) is not None:
        raise Conflict(_clash(name, other, _CREATE_HINT), detail={"voice_id": other})


def _clash(name: str, other: str, hint: str) -> str:
    return f"a voice named {name.strip()!r} already exists ({other}); {hint}"


def _clashes_conflict(
    library: VoiceLibrary, name: str | None, fn: Callable[[], T], hint: str, but: str | None = None
) -> T:
    """Run ``fn``; when the library refuses because ``name`` is taken, that is a 409, not a 400."""
    try:
        return fn()
    except InvalidInput as e:
        other = _taken_by(library, name) if name else None
        if name and other is not None and other != but:
            raise Conflict(_clash(name, other, hint), detail={"voice_id": other}) from e
        raise


def _exported_name(data: bytes) -> str | None:
    """The name inside an export's voice.json (to explain a clash); None when it cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = z.getinfo("voice.json")
            if info.file_size > 1 << 20:
                return None
            doc = json.loads(z.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RuntimeError, zlib.error):
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None


def _update(library: VoiceLibrary, ref: str, patch: VoicePatch, by: str) -> VoiceRecord:
    record = library.get(ref)
    if patch.name is not None and patch.name.strip() != record.name:
        rename = functools.partial(library.rename, record.id, patch.name)
        record = _clashes_conflict(library, patch.name, rename, "pick another name", but=record.id)
    if patch.transcript is not None or patch.consent is not None:
        record = library.update(record.id, transcript=patch.transcript, consent=patch.consent, consent_by=by)
    return record
