"""Settings, read from the environment (prefix ``VOICEFORGE_``) or passed explicitly.

Built by the entrypoint (CLI, app factory) and handed down; nothing reads it at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_cache_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEFORGE_", extra="ignore")

    engine: str = "kokoro"  # the deployment's default engine
    # Engines this deployment offers, each loaded on first use and chosen per request by the OpenAI
    # `model` field or /tts `model`: "kokoro,remote,cosyvoice". Empty: only `engine`.
    engines: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # -- remote engine (engines/remote/): any OpenAI-compatible POST /v1/audio/speech ----------
    remote_url: str | None = None  # e.g. http://gpu-node:8091 (vLLM-Omni) or another voiceforge
    remote_api_key: str | None = None  # sent as "Authorization: Bearer …"; never logged
    remote_model: str = "tts-1"  # the `model` sent upstream (vLLM-Omni: the served model's name)
    remote_voice: str | None = None  # voice when a request names none; unset: the remote's default
    remote_sample_rate: int = Field(default=24000, ge=8000, le=192000, description="rate of its PCM")
    remote_connect_timeout_s: float = Field(default=5.0, gt=0)
    remote_timeout_s: float = Field(default=120.0, gt=0, description="longest wait for the next bytes")
    remote_retries: int = Field(default=2, ge=0, description="retries before any audio arrived")

    # -- cosyvoice-grpc engine (engines/cosyvoice_grpc.py): CosyVoice's gRPC protocol ----------
    cosyvoice_grpc_target: str | None = None  # host:port of upstream's grpc server or a voiceforge's
    cosyvoice_grpc_api_key: str | None = None  # sent as "authorization: Bearer …"; never logged
    # spk_id values it offers, the first the default (upstream's SFT model's by default; another
    # voiceforge's: its stock voices, e.g. "jf_alpha,jm_kumo")
    cosyvoice_grpc_voices: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["中文女", "中文男", "英文女", "英文男", "日语男", "粤语女", "韩语女"]
    )
    # rate of its PCM when the server does not state one (voiceforge does, in `sample-rate`
    # metadata); upstream's CosyVoice-300M answers 22050, CosyVoice2/3 24000
    cosyvoice_grpc_sample_rate: int = Field(default=24000, ge=8000, le=192000)
    cosyvoice_grpc_connect_timeout_s: float = Field(default=5.0, gt=0)
    cosyvoice_grpc_timeout_s: float = Field(default=300.0, gt=0, description="longest one request may take")
    cosyvoice_grpc_retries: int = Field(default=2, ge=0, description="retries before any audio arrived")

    # -- cosyvoice engine (engines/cosyvoice.py): upstream CosyVoice3 in this process ------------
    cosyvoice_model_dir: Path | None = None  # e.g. pretrained_models/Fun-CosyVoice3-0.5B
    cosyvoice_load_trt: bool = False
    cosyvoice_load_vllm: bool = False
    cosyvoice_fp16: bool = False
    # Another Kokoro-82M ONNX export (e.g. the official fp32 kokoro-v1.0.onnx) and its voices
    # (.npz such as voices-v1.0.bin); unset: the int8 model and five voices that come with pip.
    kokoro_model: Path | None = None
    kokoro_voices: Path | None = None
    kokoro_vocab: Path | None = None
    # The voice for requests that name none, in every language; unset: each text language's own
    # default, chosen by intelligibility (engines/kokoro/catalog.py DEFAULTS, bench/house.py).
    default_voice: str | None = None
    # A folder of house voices (<id>.npy + <id>.json, made by `voiceforge voices learn`) loaded at
    # start-up beside the stock and packaged house voices; unset: the packaged ones only.
    house_voices: Path | None = None
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
    # Slow senders (slow-loris): a body must keep arriving, with at most body_idle_s between
    # parts, and be complete within body_min_s plus one second per body_min_rate bytes; else 408.
    body_idle_s: float = Field(default=20.0, gt=0, description="longest pause inside a request body")
    body_min_s: float = Field(default=30.0, gt=0)
    body_min_rate: int = Field(default=50_000, ge=1, description="bytes/s a long body must average")
    grpc_port: int | None = Field(default=None, ge=1, le=65535, description="CosyVoice gRPC; unset: off")
    # Rate of the PCM gRPC answers with; unset: the engine's (24000). 22050 suits clients written
    # for CosyVoice-300M that assume it (upstream's demo client.py) instead of reading `sample-rate`.
    grpc_sample_rate: int | None = Field(default=None, ge=8000, le=192000)
    ui: bool = True  # the web UI (/ui, /login, /m); off: the API alone, without importing Gradio
    # Host names this server answers to (server/origin.py; DNS rebinding). Default: the loopback
    # names and the bind address; any name when bound to 0.0.0.0 or ::. Behind a reverse proxy that
    # forwards Host, name the public host: "tts.example.com" ("*.example.com" for subdomains).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Other origins whose pages may POST/PUT/PATCH/DELETE here ("https://app.example.com"); a
    # browser request from any other origin is 403. The server's own origin is always allowed.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Render and embed the stock voices' calibration sentences in the background at start, so the
    # first saved voice does not wait ~15 s for them (they are cached per process).
    warm_cloning: bool = True
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="JSON / form body limit")
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, description="one upload, all chunks")
    # circuit breaker around the engine: open after this failure rate over the window
    breaker_failure_rate: float = Field(default=0.05, gt=0, le=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_min_calls: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=60.0, gt=0)

    # -- uploads and voices (service/uploads.py, server/routes/uploads.py and voices.py) ---------
    upload_chunk_bytes: int = Field(default=4 * 2**20, ge=2**16, description="PUT size advised to clients")
    max_upload_chunks: int = Field(default=1024, ge=1, description="chunks in one POST /v1/audio session")
    max_upload_audio_s: float = Field(default=600.0, gt=0, description="audio an upload transcribes at most")
    enroll_timeout_s: float = Field(default=300.0, gt=0, description="POST /v1/voices enrollment limit (504)")
    # Learned voices (service/learning.py): a new voice answers from a quick enrollment at once and
    # learns Kokoro's own style in the background (needs torch, the `learn` extra).
    learn_voices: bool = Field(default=True, description="learn new voices in the background")
    learn_threads: int = Field(default=1, ge=1, le=64, description="CPU threads the learner uses")
    learn_queue: int = Field(default=4, ge=0, description="request prompts waiting to be learned, at most")
    learn_steps: int | None = Field(default=None, ge=1, le=500, description="timbre steps (None: learner's)")
    learn_pitch_steps: int | None = Field(default=None, ge=0, le=500, description="pitch steps (ditto)")

    # -- observability and admin (server/metrics.py, server/logstream.py, server/restart.py) ------
    retention_every_s: float = Field(default=600.0, gt=0, description="seconds between retention sweeps")
    log_stream_backlog: int = Field(default=500, ge=1, description="recent lines kept for new log clients")
    log_stream_queue: int = Field(default=2000, ge=1, description="lines queued per log client, then dropped")
    log_stream_ping_s: float = Field(default=15.0, gt=0, description="heartbeat on idle log streams")
    restart_drain_s: float = Field(
        default=120.0, gt=0, description="restart waits this long for running work"
    )
    # Test and chaos facility (engines/faults.py): when set, the engine is wrapped so that it raises,
    # hangs or returns garbage as this JSON file says, read at every call. Never set in production.
    fault_file: Path | None = None

    # -- OpenAI-compatible audio API (server/routes/openai/) --------------------------------------
    # Longest recording /v1/audio/transcriptions decodes; longer is a 400 before any decoding.
    max_transcription_s: float = Field(default=600.0, gt=0, description="transcription audio limit")
    live_resume_s: float = Field(
        default=60.0, ge=0, description="how long a dropped live-transcription session waits to be resumed"
    )

    # -- auth and limits (server/auth/, server/limits.py) ------------------------------------
    # "auto": required when bound to a non-loopback address; "on"/"off" force it.
    auth: Literal["auto", "on", "off"] = "auto"
    insecure_no_auth: bool = False  # explicit opt-out for a non-loopback bind
    jwt_secret: str | None = None  # HS256 bearer tokens are accepted when set
    jwt_leeway_s: float = Field(default=30.0, ge=0, description="clock skew allowed on exp/nbf/iat")
    jwt_issuer: str | None = None  # when set, tokens must carry this iss
    jwt_audience: str | None = None  # when set, tokens must carry this aud
    key_cache_s: float = Field(
        default=10.0, ge=0, description="verified keys kept in memory (revocation lag)"
    )
    public_docs: bool = False  # /docs, /redoc, /openapi.json answer without a key when auth is on
    # With auth on, /outputs links in responses carry an expiring HMAC signature so an <audio src>
    # plays without a key. The signing key is url_secret, else data/url-signing.key (made once);
    # nodes sharing the data folder share it.
    url_secret: str | None = None
    output_url_ttl_s: int = Field(default=24 * 3600, ge=60, description="signed /outputs link lifetime")
    # The web UI's session cookie (server/auth/sessions.py), signed with the same key; a JWT's own expiry
    # ends it sooner, and a revoked key ends it within key_cache_s.
    session_ttl_s: int = Field(default=12 * 3600, ge=60, description="UI session lifetime after /login")
    # Rate limits (limits-library syntax, "10/minute;100/hour"; "" = none) per key, or per client
    # address for anonymous callers. "auto": everyone except anonymous callers on loopback.
    rate_limits: Literal["auto", "on", "off"] = "auto"
    rate_limit_storage: str = "memory://"  # e.g. redis://host:6379 to share counts between nodes
    rate_limit_tts: str = "60/minute"  # /tts, /v1/audio/speech (cached answers count too)
    rate_limit_asr: str = "30/minute"
    rate_limit_voices: str = "60/minute"
    rate_limit_jobs: str = "300/minute"  # polling a job counts
    rate_limit_uploads: str = "10/minute;100/hour"  # the earlier gateway's limits
    rate_limit_admin: str = "120/minute"
    rate_limit_auth_failures: str = "30/minute"  # missing or wrong credentials, per client address
    # Audit rows (service/audit.py): "auto" = while auth is required.
    audit: Literal["auto", "on", "off"] = "auto"
    audit_retention_days: float = Field(default=90.0, gt=0)
    # Sensitive-word filter (text/filter.py) on text to be spoken; a [category]-per-block word list
    # file replaces the small built-in one.
    word_filter: bool = True
    word_list: Path | None = None
    filter_prompt_text: bool = False  # also check a prompt's transcript
    # recognised speech (transcriptions, uploads, live, prompt recordings): refuse (400), flag it
    # in the audit row and the log, or leave it unchecked (service/transcribe.py)
    speech_filter: Literal["refuse", "flag", "off"] = "refuse"

    # -- jobs (jobs/) ------------------------------------------------------------------------------
    webhook_secret: str | None = None  # HMAC-SHA256 key for webhook bodies
    job_workers: int = Field(default=0, ge=0, description="jobs run at once; 0 = half the engine workers")
    max_queued_jobs: int = Field(default=256, ge=1, description="jobs waiting to run before 503")
    job_max_attempts: int = Field(default=3, ge=1, description="runs a job gets before it is dead-lettered")
    max_job_items: int = Field(default=100, ge=1, description="items in one batch job")
    max_job_audio_s: float = Field(default=1800.0, gt=0, description="transcription job audio length")
    webhook_allow_private: bool = False  # allow loopback/private webhook targets (tests, trusted LANs)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_attempts: int = Field(default=5, ge=1, description="deliveries tried, with backoff between")

    # -- scale-out (jobs/celery_backend.py, jobs/worker.py): API nodes enqueue, workers run -------
    # "celery": jobs go to `voiceforge worker` processes through broker_url; the database
    # (database_url), data_dir and output_dir must then be shared by every node.
    jobs_backend: Literal["local", "celery"] = "local"
    broker_url: str | None = None  # redis://host:6379/0 (or amqp://… for RabbitMQ)
    # Redis for worker logs, job events and broker-loss detection; default: broker_url if Redis.
    events_url: str | None = None
    # Longer than the longest job: an unacknowledged task is handed out again after this.
    job_visibility_timeout_s: float = Field(default=3600.0, gt=0)
    job_lease_s: float = Field(
        default=30.0, gt=0, description="a job whose worker stopped renewing its lease this long runs again"
    )
    worker_concurrency: int = Field(default=1, ge=1, description="jobs one worker process runs at once")
    worker_drain_s: float = Field(
        default=20.0, ge=0, description="on SIGTERM, running jobs get this long, then are requeued"
    )

    @field_validator("engines", "allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_engines(cls, value: object) -> object:
        """``VOICEFORGE_ENGINES=kokoro,remote``: a comma-separated list (a JSON list works too)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cosyvoice_grpc_voices", mode="before")
    @classmethod
    def _split_voices(cls, value: object) -> object:
        """``VOICEFORGE_COSYVOICE_GRPC_VOICES=jf_alpha,jm_kumo``: comma-separated."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def engine_names(self) -> list[str]:
        """The configured engines, the default (``engine``) first, each once."""
        return list(dict.fromkeys([self.engine, *self.engines]))
