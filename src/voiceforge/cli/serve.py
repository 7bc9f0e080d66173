"""`voiceforge serve`, `worker`, `transcribe` and `doctor`: running the service and checking it."""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voiceforge.cli.app import app, log
from voiceforge.config import Settings
from voiceforge.errors import InvalidInput

if TYPE_CHECKING:
    from voiceforge.engines.base import Engine


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(envvar="HOST", help="address to bind (default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(envvar="PORT", help="port (default 7860)")] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="also serve CosyVoice's gRPC protocol on this port (default off)")
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="serve a network without API keys (not recommended)")
    ] = False,
) -> None:
    """Serve the HTTP API (and web UI) with a local engine worker pool."""
    import uvicorn

    from voiceforge.logs import configure_logging
    from voiceforge.server.app import Frontend, auth_required, create_app

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if grpc_port:
        overrides["grpc_port"] = grpc_port
    if insecure_no_auth:
        overrides["insecure_no_auth"] = True
    settings = Settings(**overrides)  # type: ignore[arg-type]
    runtime_log = configure_logging(settings)
    required = auth_required(settings)
    log.info(
        "voiceforge serving on http://%s:%d%s (auth %s; log %s)",
        settings.host,
        settings.port,
        f" and gRPC port {settings.grpc_port}" if settings.grpc_port else "",
        "on" if required else "off",
        runtime_log,
    )
    frontend: Frontend | None = None
    if settings.ui:
        from voiceforge import ui  # Gradio is heavy to import: only when the UI is on

        frontend = ui
    uvicorn.run(
        create_app(settings, auth_required=required, frontend=frontend),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(help="engines to serve, comma-separated (e.g. cosyvoice); default: all, transcription"),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="jobs at once (default VOICEFORGE_WORKER_CONCURRENCY)")
    ] = None,
    hostname: Annotated[str | None, typer.Option(help="worker name; default voiceforge-<pid>@<host>")] = None,
) -> None:
    """Run jobs from the Celery broker (VOICEFORGE_BROKER_URL); the engine loads once per process."""
    from voiceforge.jobs.worker import run_worker

    settings = Settings()
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    raise typer.Exit(run_worker(settings, queues=names, concurrency=concurrency, hostname=hostname))


@app.command()
def transcribe(
    audio: Annotated[Path, typer.Argument(help="an audio file")],
    language: Annotated[str | None, typer.Option(help="zh, en, …; default: detect")] = None,
    diarize: Annotated[bool, typer.Option("--diarize", help="say who spoke when (SPEAKER_1, …)")] = False,
    speakers: Annotated[
        int | None, typer.Option(min=1, max=8, help="with --diarize: how many speakers (default: estimate)")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="text, srt, vtt, json or verbose_json")] = "text",
) -> None:
    """Print what is said in AUDIO (bundled Whisper base)."""
    from voiceforge.asr import formats
    from voiceforge.asr.whisper import Transcriber

    if not audio.is_file():
        raise InvalidInput(f"audio file {str(audio)!r} does not exist")
    if output not in formats.FORMATS:
        raise InvalidInput(f"format {output!r} is not one of {', '.join(formats.FORMATS)}")
    settings = Settings()
    transcriber = Transcriber.from_settings(settings)
    if diarize:
        from voiceforge.asr.diarize import transcribe as transcribe_speakers
        from voiceforge.audio.decode import decode, resample
        from voiceforge.voices.embedding import SpeakerEncoder

        decoded = decode(audio, max_duration_s=settings.max_transcription_s)
        samples = resample(decoded.samples, decoded.sample_rate, 16_000)
        result = transcribe_speakers(
            transcriber, samples, SpeakerEncoder.load(), language=language, speakers=speakers
        )
    else:
        result = transcriber.transcribe(audio, language=language)
    if output in ("json", "verbose_json"):
        typer.echo(json.dumps(formats.as_json(result, verbose=output == "verbose_json"), ensure_ascii=False))
    else:
        typer.echo(
            {"text": formats.as_text, "srt": formats.as_srt, "vtt": formats.as_vtt}[output](result), nl=False
        )


@app.command()
def doctor() -> None:
    """Show what is installed and whether each bundled model loads."""
    settings = Settings()
    failures = 0
    for dist in (
        "voiceforge",
        "onnxruntime",
        "numpy",
        "misaki",
        "hibari-tts",
        "faster-whisper",
        "av",
        "soundfile",
    ):
        try:
            typer.echo(f"  {dist:16} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            typer.echo(f"  {dist:16} MISSING")
            failures += 1
    for name, check in _doctor_checks(settings):
        started = time.perf_counter()
        try:
            detail = check()
            typer.echo(f"ok    {name:22} {time.perf_counter() - started:6.2f} s  {detail}")
        except Exception as e:  # doctor reports every failure instead of stopping at the first
            failures += 1
            typer.echo(f"FAIL  {name:22} {e}")
    if failures:
        raise typer.Exit(1)


def _doctor_checks(settings: Settings) -> list[tuple[str, Callable[[], str]]]:
    from voiceforge.asr.whisper import Transcriber
    from voiceforge.engines.base import SynthesisRequest, synthesize
    from voiceforge.engines.registry import create_engine
    from voiceforge.text.frontend import Frontend

    engines: list[Engine] = []

    def engine() -> str:
        engines.append(create_engine(settings))
        return f"{engines[0].name}, {len(engines[0].voices())} voices"

    def speak() -> str:
        eng = engines[0] if engines else create_engine(settings)
        result = synthesize(eng, SynthesisRequest(text="你好, hello."))
        return f"{result.duration_s:.2f} s of audio"

    def whisper() -> str:
        return str(Transcriber.from_settings(settings).model_dir)

    def g2p() -> str:
        return Frontend().prepare("今天 ok.")[0].phonemes

    return [
        ("text frontend (zh+en)", g2p),
        ("kokoro engine", engine),
        ("synthesis", speak),
        ("whisper asr", whisper),
    ]
