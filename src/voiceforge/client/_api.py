"""The requests of every API, built once for both clients (sync and async).

A :class:`Call` is a request not yet sent: method, path and body. Create calls get an
``Idempotency-Key`` when they are made, so every retry of that one call carries the same key and
the server returns the first result instead of doing the work again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from voiceforge.client.errors import from_response
from voiceforge.client.types import Job


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(
            self.method,
            self.path,
            json=self.json,
            data=self.data,
            files=self.files,
            content=self.content,
            params=self.params,
            headers=self.headers,
        )


def new_key() -> str:
    return uuid.uuid4().hex


def _keyed(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or new_key()}


def _bytes(audio: bytes | str | Path) -> tuple[str, bytes]:
    if isinstance(audio, bytes):
        return "audio", audio
    path = Path(audio)
    return path.name, path.read_bytes()


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def tts(
    text: str,
    *,
    voice: str | None,
    prompt_audio: bytes | str | Path | None,
    prompt_text: str | None,
    mode: str | None,
    instruct: str | None,
    seed: int,
    speed: float,
    format: str,
    idempotency_key: str | None,
) -> Call:
    import base64

    body = _clean(
        {
            "text": text,
            "voice_id": voice,
            "prompt_text": prompt_text,
            "mode": mode,
            "instruct": instruct,
            "seed": seed,
            "speed": speed,
            "format": format,
        }
    )
    if prompt_audio is not None:
        body["prompt_audio"] = base64.b64encode(_bytes(prompt_audio)[1]).decode()
    return Call("POST", "/tts", json=body, headers=_keyed(idempotency_key))


def speech(text: str, *, voice: str, model: str, format: str, speed: float, instructions: str | None) -> Call:
    body = _clean(
        {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": format,
            "speed": speed,
            "instructions": instructions,
        }
    )
    return Call("POST", "/v1/audio/speech", json=body)


def transcribe(audio: bytes | str | Path, *, language: str | None, response_format: str) -> Call:
    name, data = _bytes(audio)
    fields = _clean({"model": "whisper-1", "language": language, "response_format": response_format})
    return Call(
        "POST",
        "/v1/audio/transcriptions",
        data=fields,
        files={"file": (name, data, "application/octet-stream")},
    )


def create_voice(
    name: str,
    *,
    audio: bytes | str | Path | None,
    upload_id: str | None,
    transcript: str | None,
    language: str | None,
    consent: bool,
    idempotency_key: str | None,
) -> Call:
    fields = _clean(
        {
            "name": name,
            "upload_id": upload_id,
            "transcript": transcript,
            "language": language,
            "consent": "true" if consent else "false",
        }
    )
    files = None
    if audio is not None:
        filename, data = _bytes(audio)
        files = {"file": (filename, data, "application/octet-stream")}
    return Call("POST", "/v1/voices", data=fields, files=files, headers=_keyed(idempotency_key))


def create_job(kind: str, fields: dict[str, Any], idempotency_key: str | None) -> Call:
    return Call("POST", "/v1/jobs", json={"kind": kind, **_clean(fields)}, headers=_keyed(idempotency_key))


def jobs(status: str | None, limit: int, before: str | None) -> Call:
    return Call("GET", "/v1/jobs", params=_clean({"status": status, "limit": limit, "before": before}))


def open_upload(size: int, filename: str | None, sha256: str) -> Call:
    return Call("POST", "/v1/uploads", json=_clean({"size": size, "filename": filename, "sha256": sha256}))


def put_upload(upload_id: str, data: bytes, start: int, total: int) -> Call:
    end = start + len(data) - 1
    return Call(
        "PUT",
        f"/v1/uploads/{upload_id}",
        content=data,
        headers={"Content-Range": f"bytes {start}-{end}/{total}", "Content-Type": "application/octet-stream"},
    )


def checked(response: httpx.Response) -> httpx.Response:
    """The response when it is a success; the mapped voiceforge error otherwise."""
    if response.is_success:
        return response
    raise from_response(response)


def body(response: httpx.Response) -> dict[str, Any]:
    data = checked(response).json()
    if not isinstance(data, dict):
        raise ValueError(f"{response.request.url.path} answered {type(data).__name__}, expected an object")
    return data


def sse_job(event: str, data: str) -> Job | None:
    """A job snapshot from one Server-Sent Event of /v1/jobs/{id}/events; None for other events."""
    if event in ("state", "progress"):
        return Job.of(json.loads(data))
    if event == "error":
        from voiceforge.client.errors import ConnectionFailed

        info = json.loads(data)
        raise ConnectionFailed(f"the job event stream ended with {info.get('code')}: {info.get('message')}")
    return None
