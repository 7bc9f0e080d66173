"""Settings, read from the environment (prefix ``VOICEFORGE_``) or passed explicitly.

Built by the entrypoint (CLI, app factory) and handed down; nothing reads it at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEFORGE_", extra="ignore")

    engine: str = "kokoro"
    # Another Kokoro-82M ONNX export (e.g. the official fp32 kokoro-v1.0.onnx) and its voices
    # (.npz such as voices-v1.0.bin); unset: the int8 model and five voices that come with pip.
    kokoro_model: Path | None = None
    kokoro_voices: Path | None = None
    kokoro_vocab: Path | None = None
    default_voice: str | None = None
    # int8 is the shipped model. fp32 rebuilds it with float weights (cached, ~325 MB): slower on
    # CPUs with AVX-512 VNNI (measured), possibly faster on CPUs whose int8 kernels are slow.
    kokoro_precision: Literal["int8", "fp32"] = "int8"
    threads: int = Field(default=0, ge=0, description="onnxruntime threads per model run; 0 = auto")
    parallel: int = Field(default=0, ge=0, description="sentences synthesised at once; 0 = auto")
    data_dir: Path = Path("data")  # voice library: data/voiceforge.db and data/voices/<id>/
    database_url: str | None = None  # default sqlite:///<data_dir>/voiceforge.db
    cache_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("voiceforge")))
    whisper_model: Path | None = None  # a CTranslate2 Whisper directory; unset: the bundled base model

    # -- service (voiceforge serve) ---------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    workers: int = Field(default=0, ge=0, description="engine worker threads; 0 = one per core")
    max_queue: int = Field(default=64, ge=1, description="waiting engine tasks before 503")
    request_timeout_s: float = Field(default=120.0, gt=0, description="synchronous request limit (504)")
    output_dir: Path = Path("outputs")  # outputs/<task_id>.<ext>, served at /outputs
    log_dir: Path = Path("logs")  # logs/runtime.log (rotated), logs/error_archive/
    log_json: bool = False
    log_level: str = "INFO"
    retention_hours: float = Field(default=48.0, gt=0, description="outputs and temp files older go")
    max_tts_chars: int = Field(default=200, ge=1, description="POST /tts text limit (the contract's 200)")
    max_speech_chars: int = Field(default=4096, ge=1, description="/v1/audio/speech input limit")
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="JSON / form body limit")
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, description="one upload, all chunks")
    # circuit breaker around the engine: open after this failure rate over the window
    breaker_failure_rate: float = Field(default=0.05, gt=0, le=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_min_calls: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=60.0, gt=0)

    # -- auth and limits (server/auth.py, server/limits.py) ------------------------------------
    # "auto": required when bound to a non-loopback address; "on"/"off" force it.
    auth: Literal["auto", "on", "off"] = "auto"
    insecure_no_auth: bool = False  # explicit opt-out for a non-loopback bind
    jwt_secret: str | None = None  # HS256 bearer tokens are accepted when set

    # -- jobs (jobs/) ------------------------------------------------------------------------------
    webhook_secret: str | None = None  # HMAC-SHA256 key for webhook bodies
