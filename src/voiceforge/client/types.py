"""What the client returns: frozen dataclasses built from the server's JSON, the raw body kept.

Fields the server adds later are ignored rather than breaking old clients; ``raw`` has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class TtsResult:
    """POST /tts: where the audio is and how long it lasts."""

    audio_url: str
    task_id: str
    duration: float
    sample_rate: int
    cached: bool
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> TtsResult:
        return cls(
            audio_url=str(body["audio_url"]),
            task_id=str(body["task_id"]),
            duration=float(body["duration"]),
            sample_rate=int(body.get("sample_rate", 24000)),
            cached=bool(body.get("cached", False)),
            notes=list(body.get("notes") or []),
            raw=body,
        )


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    kind: str  # stock | saved
    language: str
    engine: str
    gender: str | None = None
    transcript: str | None = None
    display_name: str | None = None  # a stock voice's, for people: "Alpha (Japanese, female)"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Voice:
        return cls(
            id=str(body["id"]),
            name=str(body["name"]),
            kind=str(body.get("kind", "saved")),
            language=str(body.get("language", "")),
            engine=str(body.get("engine", "")),
            gender=body.get("gender"),
            transcript=body.get("transcript"),
            display_name=body.get("display_name"),
            raw=body,
        )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    status: str  # queued | running | succeeded | failed | cancelled
    progress: float
    stage: str
    attempts: int
    result: dict[str, Any] | None
    error: JobError | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, body: dict[str, Any]) -> Job:
        err = body.get("error")
        return cls(
            id=str(body["id"]),
            kind=str(body["kind"]),
            status=str(body["status"]),
            progress=float(body.get("progress", 0.0)),
            stage=str(body.get("stage", "")),
            attempts=int(body.get("attempts", 0)),
            result=body.get("result"),
            error=JobError(str(err.get("code")), str(err.get("message"))) if isinstance(err, dict) else None,
            raw=body,
        )


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str | None
    duration: float | None
    segments: list[Segment]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Transcription:
        return cls(
            text=str(body.get("text", "")),
            language=body.get("language"),
            duration=body.get("duration"),
            segments=[
                Segment(float(s["start"]), float(s["end"]), str(s["text"]))
                for s in body.get("segments") or []
            ],
            raw=body,
        )


@dataclass(frozen=True)
class Upload:
    upload_id: str
    status: str  # open | assembling | complete | invalid
    size: int | None
    received: int
    chunk_size: int
    container: str | None
    duration: float | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Upload:
        return cls(
            upload_id=str(body["upload_id"]),
            status=str(body["status"]),
            size=body.get("size"),
            received=int(body.get("received", 0)),
            chunk_size=int(body.get("chunk_size", 1 << 20)),
            container=body.get("container"),
            duration=body.get("duration"),
            raw=body,
        )
