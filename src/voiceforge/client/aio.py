"""The asyncio client: ``AsyncClient(url, api_key=…)``, the same methods as :class:`Client`, awaited."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from voiceforge.client import _api
from voiceforge.client.errors import ConnectionFailed, retry_after
from voiceforge.client.retry import RetryPolicy, retry_error, retry_status
from voiceforge.client.sync import DEFAULT_TIMEOUT, _finished, _write, headers
from voiceforge.client.types import Job, Transcription, TtsResult, Upload, Voice
from voiceforge.errors import Timeout

log = logging.getLogger(__name__)


class AsyncClient:
    """Async client for a voiceforge server; errors are :mod:`voiceforge.errors` classes."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
        max_connections: int = 100,
    ) -> None:
        self.retry = retry or RetryPolicy()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, limits=limits)
        self._http.headers.update(headers(api_key))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport -------------------------------------------------------------------------------
    async def send(self, call: _api.Call, *, stream: bool = False) -> httpx.Response:
        """Send ``call``, retrying what is safe to retry (see :mod:`voiceforge.client.retry`)."""
        attempt = 0
        while True:
            attempt += 1
            request = call.build(self._http)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.retry.attempts and retry_error(request, e):
                    wait = self.retry.delay(attempt)
                    log.info("%s %s: %s; retry %d in %.1f s", call.method, call.path, e, attempt, wait)
                    await asyncio.sleep(wait)
                    continue
                raise ConnectionFailed(f"{call.method} {request.url} failed: {e or type(e).__name__}") from e
            hint = retry_after(response)
            if (
                response.is_success
                or attempt >= self.retry.attempts
                or not retry_status(request, response.status_code, hint)
                or (hint is not None and hint > self.retry.max_retry_after_s)
            ):
                return response
            await response.aclose()
            wait = self.retry.delay(attempt, hint)
            log.info(
                "%s %s: HTTP %d; retry %d in %.1f s",
                call.method,
                call.path,
                response.status_code,
                attempt,
                wait,
            )
            await asyncio.sleep(wait)

    async def _json(self, call: _api.Call) -> dict[str, Any]:
        return _api.body(await self.send(call))

    # -- health ----------------------------------------------------------------------------------
    async def ready(self) -> dict[str, Any]:
        return await self._json(_api.Call("GET", "/readyz"))

    # -- speech ----------------------------------------------------------------------------------
    async def tts(
        self,
        text: str,
        *,
        voice: str | None = None,
        prompt_audio: bytes | str | Path | None = None,
        prompt_text: str | None = None,
        mode: str | None = None,
        instruct: str | None = None,
        seed: int = 1,
        speed: float = 1.0,
        format: str = "wav",
        idempotency_key: str | None = None,
    ) -> TtsResult:
        """POST /tts (1–200 characters); ``download(result.audio_url)`` fetches the audio."""
        call = _api.tts(
            text,
            voice=voice,
            prompt_audio=prompt_audio,
            prompt_text=prompt_text,
            mode=mode,
            instruct=instruct,
            seed=seed,
            speed=speed,
            format=format,
            idempotency_key=idempotency_key,
        )
        return TtsResult.of(await self._json(call))

    async def download(self, url: str, path: str | Path | None = None) -> bytes:
        """The bytes of an output URL; also written (atomically) to ``path`` when given."""
        data = _api.checked(await self.send(_api.Call("GET", url))).content
        if path is not None:
            await asyncio.to_thread(_write, Path(path), data)
        return data

    async def speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
    ) -> bytes:
        call = _api.speech(
            text, voice=voice, model=model, format=format, speed=speed, instructions=instructions
        )
        return _api.checked(await self.send(call)).content

    async def stream_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        format: str = "pcm",
        speed: float = 1.0,
        instructions: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Audio bytes as they are made (retried only before the first byte)."""
        call = _api.speech(
            text, voice=voice, model=model, format=format, speed=speed, instructions=instructions
        )
        response = await self.send(call, stream=True)
        try:
            if not response.is_success:
                await response.aread()
                _api.checked(response)
            async for piece in response.aiter_bytes():
                yield piece
        finally:
            await response.aclose()

    async def transcribe(
        self, audio: bytes | str | Path, *, language: str | None = None, response_format: str = "verbose_json"
    ) -> Transcription:
        call = _api.transcribe(audio, language=language, response_format=response_format)
        return Transcription.of(await self._json(call))

    # -- voices ----------------------------------------------------------------------------------
    async def voices(self) -> list[Voice]:
        return [Voice.of(v) for v in (await self._json(_api.Call("GET", "/v1/voices")))["voices"]]

    async def voice(self, ref: str) -> Voice:
        return Voice.of(await self._json(_api.Call("GET", f"/v1/voices/{ref}")))

    async def create_voice(
        self,
        name: str,
        audio: bytes | str | Path | None = None,
        *,
        upload_id: str | None = None,
        transcript: str | None = None,
        language: str | None = None,
        consent: bool = False,
        idempotency_key: str | None = None,
    ) -> Voice:
        call = _api.create_voice(
            name,
            audio=audio,
            upload_id=upload_id,
            transcript=transcript,
            language=language,
            consent=consent,
            idempotency_key=idempotency_key,
        )
        return Voice.of(await self._json(call))

    async def delete_voice(self, ref: str) -> None:
        _api.checked(await self.send(_api.Call("DELETE", f"/v1/voices/{ref}")))

    # -- jobs ------------------------------------------------------------------------------------
    async def create_job(self, kind: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        return Job.of(await self._json(_api.create_job(kind, fields, idempotency_key)))

    async def job(self, job_id: str) -> Job:
        return Job.of(await self._json(_api.Call("GET", f"/v1/jobs/{job_id}")))

    async def jobs(
        self, *, status: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[Job]:
        return [Job.of(j) for j in (await self._json(_api.jobs(status, limit, before)))["data"]]

    async def cancel_job(self, job_id: str) -> Job:
        return Job.of(await self._json(_api.Call("DELETE", f"/v1/jobs/{job_id}")))

    async def wait_job(
        self, job_id: str, *, timeout: float = 3600.0, poll_s: float = 1.0, check: bool = True
    ) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.finished:
                return _finished(job, check)
            if time.monotonic() > deadline:
                raise Timeout(f"job {job_id} is still {job.status} after {timeout:.0f} s ({job.stage})")
            await asyncio.sleep(poll_s)

    async def job_events(self, job_id: str) -> AsyncIterator[Job]:
        response = await self.send(_api.Call("GET", f"/v1/jobs/{job_id}/events"), stream=True)
        try:
            if not response.is_success:
                await response.aread()
                _api.checked(response)
            event, data = "message", ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line:
                    if data and (job := _api.sse_job(event, data)) is not None:
                        yield job
                    event, data = "message", ""
        finally:
            await response.aclose()

    # -- uploads ---------------------------------------------------------------------------------
    async def upload(self, file: bytes | str | Path, *, filename: str | None = None) -> Upload:
        data = file if isinstance(file, bytes) else await asyncio.to_thread(Path(file).read_bytes)
        name = filename or (Path(file).name if not isinstance(file, bytes) else None)
        digest = hashlib.sha256(data).hexdigest()
        upload = Upload.of(await self._json(_api.open_upload(len(data), name, digest)))
        offset = upload.received
        while offset < len(data):
            piece = data[offset : offset + upload.chunk_size]
            upload = Upload.of(await self._json(_api.put_upload(upload.upload_id, piece, offset, len(data))))
            offset = upload.received
        return Upload.of(
            await self._json(_api.Call("POST", f"/v1/uploads/{upload.upload_id}/complete", json={}))
        )
