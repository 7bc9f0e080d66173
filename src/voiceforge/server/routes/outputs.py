"""``GET /outputs/{task_id}.{ext}``: generated audio, with range requests (FileResponse)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from voiceforge.audio.encode import parse_format
from voiceforge.server.state import Services, services

router = APIRouter(tags=["outputs"])


# Subtitles of long-form jobs.
_SUBTITLES = {"srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


@router.get(
    "/outputs/{name}", response_class=FileResponse, responses={404: {"description": "no such output"}}
)
async def output(name: str, svc: Annotated[Services, Depends(services)]) -> FileResponse:
    """The audio file of a finished task. Outputs are removed after the retention period."""
    path = svc.speech.storage.path(name)  # validates the name; NotFound otherwise
    ext = path.suffix.lstrip(".")
    try:
        media = _SUBTITLES.get(ext) or parse_format(ext).mime_type
    except Exception:
        media = "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=86400"})
