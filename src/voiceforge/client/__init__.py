"""Python SDK for a voiceforge server: :class:`Client` (blocking) and :class:`AsyncClient`.

Every API (``/tts``, ``/v1/audio/speech`` whole or streamed, ``/v1/audio/transcriptions``,
``/v1/voices``, ``/v1/jobs`` with events, ``/v1/uploads``) is one method returning a typed result.
Error answers raise the server's own classes from :mod:`voiceforge.errors` (``RateLimited``,
``InvalidInput``, …), chosen by the body's ``code``. Requests are retried with exponential
backoff and jitter, honouring Retry-After, only when a retry cannot do the work twice; create
calls carry an ``Idempotency-Key`` so a retried create returns the first result.
"""

from __future__ import annotations

from voiceforge.client.aio import AsyncClient
from voiceforge.client.errors import ConnectionFailed, JobFailed, from_response
from voiceforge.client.retry import NO_RETRY, RetryPolicy
from voiceforge.client.sync import Client
from voiceforge.client.types import Job, JobError, Segment, Transcription, TtsResult, Upload, Voice

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "Client",
    "ConnectionFailed",
    "Job",
    "JobError",
    "JobFailed",
    "RetryPolicy",
    "Segment",
    "Transcription",
    "TtsResult",
    "Upload",
    "Voice",
    "from_response",
]
