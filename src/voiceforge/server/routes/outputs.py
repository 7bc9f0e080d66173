"""``GET /outputs/{task_id}.{ext}``: generated audio, with range requests (FileResponse).

Served as a file from user data (server/headers.py): its audio type, nosniff, and ``attachment``
unless an ``<audio>`` element fetches it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from voiceforge.errors import NotFound
from voiceforge.server.admission import may_read_output, ticket_of
from voiceforge.server.headers import user_file_headers
from voiceforge.server.state import Services, services

router = APIRouter(tags=["outputs"])


@router.get(
    "/outputs/{name}", response_class=FileResponse, responses={404: {"description": "no such output"}}
)
async def output(name: str, request: Request, svc: Annotated[Services, Depends(services)]) -> FileResponse:
    """The audio file of a finished task. Outputs are removed after the retention period.

    With auth on, only for the key it was made for (or handed to from the cache), the owner of the
    job that made it, an admin, or a signed link; anyone else gets the 404 of a missing file.
    """
    path = svc.speech.storage.path(name)  # validates the name; NotFound otherwise
    if svc.auth.required and not await may_read_output(svc, ticket_of(request).principal, name):
        raise NotFound(f"output {name!r} does not exist (expired after the retention period?)")
    headers = user_file_headers(path.name, request.headers.get("sec-fetch-dest"))
    return FileResponse(path, headers={**headers, "Cache-Control": "private, max-age=86400"})
