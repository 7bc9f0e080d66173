"""``GET /metrics``: this app's Prometheus metrics in the text exposition format (admin scope;
open while auth is off, as on a loopback bind)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from voiceforge.server.admission import require
from voiceforge.server.auth import Principal
from voiceforge.server.state import Services, services

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(
    svc: Annotated[Services, Depends(services)],
    _caller: Annotated[Principal, Depends(require("admin"))],
) -> Response:
    """Requests, latency, time to first audio, RTF, queue, workers, jobs, cache, breaker."""
    body, content_type = await svc.metrics.scrape()
    return Response(body, media_type=content_type)
