"""The blocking client: ``Client(url, api_key=…)``, one method per API.

>>> with Client("http://127.0.0.1:7860") as vf:
...     result = vf.tts("你好，世界。", voice="zf_xiaobei")
...     audio = vf.download(result.audio_url)
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from voiceforge.client import _api
from voiceforge.client.errors import ConnectionFailed, JobFailed, retry_after
from voiceforge.client.retry import RetryPolicy, retry_error, retry_status
from voiceforge.client.types import Job, Transcription, TtsResult, Upload, Voice
from voiceforge.errors import Timeout

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Sync client for a voiceforge server; errors are :mod:`voiceforge.errors` classes."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._http.headers.update(headers(api_key))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------------
    def send(self, call: _api.Call, *, stream: bool = False) -> httpx.Response:
        """Send ``call``, retrying what is safe to retry (see :mod:`voiceforge.client.retry`)."""
        attempt = 0
        while True:
            attempt += 1
            request = call.build(self._http)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.retry.attempts and retry_error(request, e):
                    wait = self.retry.delay(attempt)
                    log.info("%s %s: %s; retry %d in %.1f s", call.method, call.path, e, attempt, wait)
                    time.sleep(wait)
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
            response.close()
            wait = self.retry.delay(attempt, hint)
            log.info(
                "%s %s: HTTP %d; retry %d in %.1f s",
                call.method,
                call.path,
                response.status_code,
                attempt,
                wait,
            )
            time.sleep(wait)

    def _json(self, call: _api.Call) -> dict[str, Any]:
        return _api.body(self.send(call))

    # -- health ----------------------------------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        return self._json(_api.Call("GET", "/readyz"))

    # -- speech ----------------------------------------------------------------------------------
    def tts(
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
        return TtsResult.of(self._json(call))

    def download(self, url: str, path: str | Path | None = None) -> bytes:
        """The bytes of an output URL (absolute, or a path such as /outputs/x.wav); saved to ``path``."""
        data = _api.checked(self.send(_api.Call("GET", url))).content
        if path is not None:
            _write(Path(path), data)
        return data

    def speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        format: str = "mp3",
        speed: float = 1.0,
        instructions: str | None = None,
    ) -> bytes:
        """POST /v1/audio/speech, the whole audio at once."""
        call = _api.speech(
            text, voice=voice, model=model, format=format, speed=speed, instructions=instructions
        )
        return _api.checked(self.send(call)).content

    def stream_speech(
        self,
        text: str,
        *,
        voice: str = "alloy",
        model: str = "tts-1",
        format: str = "pcm",
        speed: float = 1.0,
        instructions: str | None = None,
    ) -> Iterator[bytes]:
        """POST /v1/audio/speech, audio bytes as they are made (retried only before the first byte)."""
        call = _api.speech(
            text, voice=voice, model=model, format=format, speed=speed, instructions=instructions
        )
        response = self.send(call, stream=True)
        try:
            if not response.is_success:
                response.read()
                _api.checked(response)
            yield from response.iter_bytes()
        finally:
            response.close()

    def transcribe(
        self, audio: bytes | str | Path, *, language: str | None = None, response_format: str = "verbose_json"
    ) -> Transcription:
        """POST /v1/audio/transcriptions with the bundled Whisper."""
        return Transcription.of(
            self._json(_api.transcribe(audio, language=language, response_format=response_format))
        )

    # -- voices ----------------------------------------------------------------------------------
    def voices(self) -> list[Voice]:
        return [Voice.of(v) for v in self._json(_api.Call("GET", "/v1/voices"))["voices"]]

    def voice(self, ref: str) -> Voice:
        return Voice.of(self._json(_api.Call("GET", f"/v1/voices/{ref}")))

    def create_voice(
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
        """Clone and save a voice from a 3–15 s recording (or a finished upload)."""
        call = _api.create_voice(
            name,
            audio=audio,
            upload_id=upload_id,
            transcript=transcript,
            language=language,
            consent=consent,
            idempotency_key=idempotency_key,
        )
        return Voice.of(self._json(call))

    def delete_voice(self, ref: str) -> None:
        _api.checked(self.send(_api.Call("DELETE", f"/v1/voices/{ref}")))

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, kind: str, *, idempotency_key: str | None = None, **fields: Any) -> Job:
        """POST /v1/jobs: ``kind`` tts, batch, longform or transcription, with that kind's fields."""
        return Job.of(self._json(_api.create_job(kind, fields, idempotency_key)))

    def job(self, job_id: str) -> Job:
        return Job.of(self._json(_api.Call("GET", f"/v1/jobs/{job_id}")))

    def jobs(self, *, status: str | None = None, limit: int = 20, before: str | None = None) -> list[Job]:
        return [Job.of(j) for j in self._json(_api.jobs(status, limit, before))["data"]]

    def cancel_job(self, job_id: str) -> Job:
        return Job.of(self._json(_api.Call("DELETE", f"/v1/jobs/{job_id}")))

    def wait_job(
        self, job_id: str, *, timeout: float = 3600.0, poll_s: float = 1.0, check: bool = True
    ) -> Job:
        """Poll until the job finishes; raises JobFailed for failed/cancelled jobs when ``check``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.finished:
                return _finished(job, check)
            if time.monotonic() > deadline:
                raise Timeout(f"job {job_id} is still {job.status} after {timeout:.0f} s ({job.stage})")
            time.sleep(poll_s)

    def job_events(self, job_id: str) -> Iterator[Job]:
        """The job's snapshots from its Server-Sent Events, ending with the final state."""
        response = self.send(_api.Call("GET", f"/v1/jobs/{job_id}/events"), stream=True)
        try:
            if not response.is_success:
                response.read()
                _api.checked(response)
            event, data = "message", ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line:
                    if data and (job := _api.sse_job(event, data)) is not None:
                        yield job
                    event, data = "message", ""
        finally:
            response.close()

    # -- uploads ---------------------------------------------------------------------------------
    def upload(self, file: bytes | str | Path, *, filename: str | None = None) -> Upload:
        """A resumable upload of ``file`` (open, PUT in chunks, complete); its id feeds other calls."""
        data = file if isinstance(file, bytes) else Path(file).read_bytes()
        name = filename or (Path(file).name if not isinstance(file, bytes) else None)
        digest = hashlib.sha256(data).hexdigest()
        upload = Upload.of(self._json(_api.open_upload(len(data), name, digest)))
        offset = upload.received
        while offset < len(data):
            piece = data[offset : offset + upload.chunk_size]
            upload = Upload.of(self._json(_api.put_upload(upload.upload_id, piece, offset, len(data))))
            offset = upload.received
        return Upload.of(self._json(_api.Call("POST", f"/v1/uploads/{upload.upload_id}/complete", json={})))


def _finished(job: Job, check: bool) -> Job:
    if check and job.status != "succeeded":
        why = f"{job.error.code}: {job.error.message}" if job.error else job.status
        raise JobFailed(f"job {job.id} {job.status} ({why})", job=job)
    return job


def _write(path: Path, data: bytes) -> None:
    """Write atomically: a reader (or a resumed batch) sees the whole file or none."""
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    part.replace(path)
