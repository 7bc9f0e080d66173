"""`voiceforge` command line: say, voices, transcribe, doctor.

A user's mistake ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import getpass
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voiceforge.batch.cli import batch
from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, NotFound, VoiceforgeError
from voiceforge.voices.library import NO_CONSENT

if TYPE_CHECKING:
    from voiceforge.engines.base import Engine
    from voiceforge.service.cloning import ClonedVoice
    from voiceforge.service.keys import KeyStore
    from voiceforge.service.models import Models
    from voiceforge.voices.library import VoiceLibrary, VoiceRecord
    from voiceforge.voices.profile import VoiceProfile

app = typer.Typer(
    help="voiceforge: voice-cloning text-to-speech (Chinese, English, mixed) on your CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
voices_app = typer.Typer(
    help="Voices: list, clone from a recording, rename, delete, export, import.", invoke_without_command=True
)
app.add_typer(voices_app, name="voices")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.command("batch")(batch)  # implementation: voiceforge/batch/cli.py

log = logging.getLogger("voiceforge.cli")


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each stage")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _read_text(text: str | None, file: Path | None) -> str:
    if text is not None and file is not None:
        raise InvalidInput("give the text either as an argument or with --file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidInput(f"cannot read text file {str(file)!r}: {e}") from e
    if text is None or text == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInput("no text given; pass it as an argument, with --file PATH, or on stdin")
        return sys.stdin.read()
    return text


def _check_writable(path: Path) -> None:
    if str(path) == "-":
        return
    if path.is_dir():
        raise InvalidInput(f"output path {str(path)!r} is a directory; give a file name such as out.wav")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(f"cannot write {str(path)!r}: permission denied; choose a writable path")


@app.command()
def say(
    text: Annotated[str | None, typer.Argument(help="text to speak; '-' or nothing reads stdin")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="audio file to write ('-' = stdout)")] = Path(
        "out.wav"
    ),
    file: Annotated[Path | None, typer.Option("--file", "-f", help="read the text from this file")] = None,
    voice: Annotated[str | None, typer.Option(help="stock or saved voice (see `voiceforge voices`)")] = None,
    prompt: Annotated[
        Path | None, typer.Option(help="clone this 3–15 s recording on the fly (not saved)")
    ] = None,
    prompt_text: Annotated[str | None, typer.Option(help="what the prompt says; default: recognised")] = None,
    instruct: Annotated[
        str | None, typer.Option(help="how to say it, e.g. 'slower and sadder', '大声一点'")
    ] = None,
    speed: Annotated[float, typer.Option(help="0.5 to 2.0")] = 1.0,
    seed: Annotated[int, typer.Option(help="1 to 100000000; same seed and input give the same audio")] = 1,
    fmt: Annotated[
        str | None, typer.Option("--format", help="wav, flac, mp3, opus, aac or pcm; default from -o")
    ] = None,
    lufs: Annotated[float | None, typer.Option(help="normalise loudness to this LUFS, e.g. -16")] = None,
    fast: Annotated[bool, typer.Option(help="with --prompt: enroll in seconds instead of learning")] = False,
) -> None:
    """Speak TEXT into an audio file."""
    from voiceforge.audio.encode import encode, parse_format
    from voiceforge.engines.base import SynthesisRequest, synthesize
    from voiceforge.engines.registry import create_engine
    from voiceforge.service.plan import infer_mode
    from voiceforge.text.instruct import parse_instruct

    content = _read_text(text, file)
    audio_format = parse_format(fmt or (output.suffix.lstrip(".") if output.suffix else "wav"))
    if voice and prompt:
        raise InvalidInput("give either --voice or --prompt, not both")
    SynthesisRequest(text=content, voice=voice, speed=speed, seed=seed)  # validate before loading models
    if instruct:
        parse_instruct(instruct)
    _check_writable(output)
    settings = Settings()
    engine = create_engine(settings)
    started = time.perf_counter()
    profile = None
    if prompt is not None:
        profile = _clone(settings, engine, prompt, prompt_text, None, fast=fast).profile
    elif voice and voice not in (stock := [v.name for v in engine.voices()]):
        try:
            profile = _library(settings).profile(voice)
        except NotFound:
            raise InvalidInput(
                f"unknown voice {voice!r}; choose a stock voice ({', '.join(stock)}) "
                "or a saved one (`voiceforge voices` lists them)"
            ) from None
    mode = infer_mode(instruct, cloned=profile is not None)
    request = SynthesisRequest(
        text=content,
        voice=None if profile else voice,
        speed=speed,
        seed=seed,
        mode=mode,
        instruct=instruct,
        profile=profile,
    )
    result = synthesize(engine, request)
    data = encode(result.samples, result.sample_rate, audio_format, loudness_lufs=lufs)
    if result.dropped_tags:
        typer.echo(
            f"note: engine {engine.name} cannot render {', '.join(result.dropped_tags)}; left out", err=True
        )
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            output.write_bytes(data)
        except OSError as e:
            raise InvalidInput(f"cannot write {str(output)!r}: {e.strerror or e}") from e
    elapsed = time.perf_counter() - started
    typer.echo(
        f"wrote {output} ({result.duration_s:.2f} s of audio, {len(result.sentences)} sentences, "
        f"{elapsed:.2f} s, RTF {elapsed / max(result.duration_s, 1e-9):.2f})",
        err=True,
    )


@voices_app.callback()
def voices(ctx: typer.Context) -> None:
    """List the stock voices and the saved (cloned) ones."""
    if ctx.invoked_subcommand is not None:
        return
    from voiceforge.engines.registry import create_engine

    settings = Settings()
    engine = create_engine(settings)
    for v in engine.voices():
        langs = [{"*": "other text"}.get(lang, lang) for lang in v.default_for]
        note = f"  (default for {', '.join(langs)})" if langs else ""
        typer.echo(f"{v.name:16} {v.language:6} {v.gender:7} {v.label}{note}")
    for record in _library(settings).list():
        sim = record.meta.get("calibration_sim")
        typer.echo(
            f"{record.name:16} {record.language:6} cloned  {record.id}  SIM {sim}  "
            f"{_learning_label(record):13} {record.transcript[:30]}"
        )


def _learning_label(record: VoiceRecord) -> str:
    """``learned``, ``learning 40%``, ``queued``, ``failed`` or ``enrolled`` (never learned)."""
    from voiceforge.service.learning import LearnState

    state = LearnState.of(record)
    if state is None:
        return "enrolled"
    return f"learning {state.progress:.0%}" if state.state == "learning" else state.state


@voices_app.command("list")
def voices_list(ctx: typer.Context) -> None:
    """The same list as `voiceforge voices`."""
    voices(ctx)


@voices_app.command("add")
def voices_add(
    name: Annotated[str, typer.Argument(help="a name for the voice")],
    prompt: Annotated[Path, typer.Argument(help="3–15 s recording of the speaker (any common format)")],
    transcript: Annotated[
        str | None, typer.Option(help="what the recording says; default: recognised")
    ] = None,
    language: Annotated[str | None, typer.Option(help="zh or en; default: detected")] = None,
    consent: Annotated[
        bool, typer.Option(help="required: the speaker agreed to be cloned (recorded with your user name)")
    ] = False,
    fast: Annotated[bool, typer.Option(help="enroll in seconds (WORLD) instead of learning")] = False,
) -> None:
    """Clone a voice from a recording and save it under NAME (needs --consent)."""
    from voiceforge.engines.registry import create_engine

    if not consent:  # before the enrollment's seconds of CPU; the library refuses it too
        typer.echo(f"error: {NO_CONSENT.replace('consent=true', '--consent')}", err=True)
        raise typer.Exit(2)

    settings = Settings()
    library = _library(settings)
    engine = create_engine(settings)
    cloned = _clone(settings, engine, prompt, transcript, language, fast=fast)
    record = library.create(
        name,
        prompt=prompt.read_bytes(),
        profile=cloned.profile,
        consent=consent,
        meta={**cloned.profile.meta, "transcript_source": cloned.transcript_source, **_learned(cloned)},
        consent_by=f"cli:{getpass.getuser()}",
    )
    for note in cloned.prompt.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"saved {record.name} ({record.id}): {record.language}, transcript {record.transcript!r} "
        f"({cloned.transcript_source}), {cloned.profile.meta['conversion']} on {cloned.profile.base_voice}, "
        f"SIM {cloned.profile.meta['stock_sim']} → {cloned.profile.meta['calibration_sim']}, "
        f"{cloned.profile.meta['enroll_s']} s"
    )


@voices_app.command("learn")
def voices_learn(
    recording: Annotated[Path, typer.Argument(help="3–15 s of one speaker (any common format)")],
    voice_id: Annotated[str, typer.Option("--id", help="Kokoro-style id: zf_qinghe, af_maple, …")],
    name: Annotated[str, typer.Option(help="display name, e.g. 'Qinghe (Chinese, female)'")],
    language: Annotated[str, typer.Option(help="zh or en (en-US, en-GB)")],
    gender: Annotated[str, typer.Option(help="female or male")],
    source: Annotated[str, typer.Option(help="where the recording comes from (dataset, file, URL)")],
    licence: Annotated[str, typer.Option(help="the recording's licence, e.g. Apache-2.0, public domain")],
    consent: Annotated[
        bool, typer.Option(help="required: the speaker agreed to be a house voice (recorded with your name)")
    ] = False,
    transcript: Annotated[
        str, typer.Option(help="what the recording says (recorded, not learned from)")
    ] = "",
    folder: Annotated[
        Path | None,
        typer.Option(help="house-voice folder; default VOICEFORGE_HOUSE_VOICES, else the package's"),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="timbre steps at most (default: the learner's)")
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="start from this stock voice (default: the closest to the recording)")
    ] = None,
) -> None:
    """Learn a house voice (a stock voice of this deployment) from RECORDING (needs --consent)."""
    from rich.progress import Progress

    from voiceforge.engines.kokoro.catalog import HouseVoice, packaged_folder
    from voiceforge.engines.kokoro.learn.house import learn_house_voice

    if not consent:  # before minutes of learning
        raise InvalidInput(
            "a house voice needs --consent: confirm that the speaker agreed to it; never make one from "
            "an identifiable person without their consent"
        )
    if not recording.is_file():
        raise InvalidInput(f"recording {str(recording)!r} does not exist")
    settings = Settings()
    confirmed = f"confirmed by cli:{getpass.getuser()} (voiceforge voices learn --consent)"
    meta = HouseVoice(voice_id, name, language, gender, source, licence, confirmed, "", "")
    target = folder or settings.house_voices or packaged_folder()
    with Progress(transient=True) as bar:
        task = bar.add_task(f"learning {voice_id}", total=None)
        path, figures = learn_house_voice(
            settings, recording, meta, target, transcript=transcript, steps=steps, base=base,
            progress=lambda p: bar.update(task, total=p.total, completed=p.step, description=p.stage),
        )  # fmt: skip
    typer.echo(f"wrote {path} ({json.dumps(figures)}); restart the server to offer it")


@voices_app.command("rm")
def voices_rm(name: Annotated[str, typer.Argument(help="name or id")]) -> None:
    """Delete a saved voice and its files."""
    library = _library(Settings())
    record = library.get(name)
    library.delete(record.id)
    typer.echo(f"deleted {record.name} ({record.id})")


@voices_app.command("rename")
def voices_rename(old: str, new: str) -> None:
    """Rename a saved voice."""
    record = _library(Settings()).rename(old, new)
    typer.echo(f"renamed to {record.name} ({record.id})")


@voices_app.command("export")
def voices_export(
    name: str, output: Annotated[Path, typer.Option("--output", "-o", help="file to write (.zip)")]
) -> None:
    """Write a saved voice (profile, prompt, metadata) to one file."""
    _check_writable(output)
    output.write_bytes(_library(Settings()).export(name))
    typer.echo(f"wrote {output}")


@voices_app.command("import")
def voices_import(
    archive: Path, name: Annotated[str | None, typer.Option(help="save under this name instead")] = None
) -> None:
    """Add a voice exported by `voiceforge voices export`."""
    if not archive.is_file():
        raise InvalidInput(f"voice file {str(archive)!r} does not exist")
    record = _library(Settings()).import_(archive.read_bytes(), name=name)
    typer.echo(f"imported {record.name} ({record.id})")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what the key is for")],
    scopes: Annotated[
        str, typer.Option(help="comma-separated: tts, asr, voices, jobs, uploads, admin")
    ] = "tts",
    quota_chars: Annotated[int, typer.Option(help="characters per UTC day; 0 = unlimited")] = 0,
) -> None:
    """Create a key and print it once on stdout; only its hash is stored."""
    record, key = _keys(Settings()).create(name, scopes, quota_chars)
    quota = f"{record.quota_chars} chars/day" if record.quota_chars else "no quota"
    typer.echo(f"created key {record.id} ({record.name}): {', '.join(record.scopes)}; {quota}", err=True)
    typer.echo("it is shown only now; store it safely:", err=True)
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves): id, name, scopes, quota, created, last used, state."""
    for k in _keys(Settings()).list():
        used = f"{k.last_used:%Y-%m-%d %H:%M}" if k.last_used else "never"
        state = f"revoked {k.revoked:%Y-%m-%d %H:%M}" if k.revoked else "active"
        quota = f"{k.quota_chars}/day" if k.quota_chars else "-"
        typer.echo(
            f"{k.id}  {k.name[:24]:24} {','.join(k.scopes):34} {quota:>10}  "
            f"created {k.created:%Y-%m-%d %H:%M}  used {used}  {state}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(metavar="ID", help="id from `keys list`")]) -> None:
    """Revoke a key; running servers refuse it within VOICEFORGE_KEY_CACHE_S seconds."""
    record = _keys(Settings()).revoke(key_id)
    typer.echo(f"revoked {record.id} ({record.name})")


def _keys(settings: Settings) -> KeyStore:
    from voiceforge.db import Database
    from voiceforge.service.keys import KeyStore

    return KeyStore(Database(settings.data_dir, settings.database_url))


def _library(settings: Settings) -> VoiceLibrary:
    from voiceforge.voices.library import VoiceLibrary

    return VoiceLibrary(settings.data_dir, settings.database_url)


def _clone(
    settings: Settings,
    engine: Engine,
    prompt: Path,
    transcript: str | None,
    language: str | None,
    *,
    fast: bool,
) -> ClonedVoice:
    """Enroll ``prompt``: learned (with a progress bar) unless ``fast`` or learning is unavailable."""
    from voiceforge.service import learning
    from voiceforge.service.models import Models

    if not prompt.is_file():
        raise InvalidInput(f"prompt file {str(prompt)!r} does not exist")
    models = Models(settings, engine_factory=lambda _settings: engine)
    learn = not fast and learning.available(settings)
    if not fast and not learn:
        typer.echo("note: learning needs torch (pip install 'voiceforge[learn]'); enrolling fast", err=True)
    cloned = models.clone(prompt.read_bytes(), transcript=transcript, language=language, quick=learn)
    if not learn or cloned.profile.language not in learning.LANGUAGES:
        return cloned
    return dataclasses.replace(cloned, profile=_learn(settings, models, cloned))


def _learn(settings: Settings, models: Models, cloned: ClonedVoice) -> VoiceProfile:
    """Learn the prompt speaker's style, showing the steps."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from voiceforge.engines.kokoro.learn.enroll import learn_profile
    from voiceforge.service import learning

    columns = (TextColumn("learning the voice: {task.description:7}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("loading", total=1.0)
        return learn_profile(
            models.learner,
            cloned.prompt,
            transcript=cloned.profile.transcript,
            language=cloned.profile.language,
            config=learning.config_of(settings),
            progress=lambda p: bar.update(task, completed=learning.fraction(p), description=p.stage),
        )


def _learned(cloned: ClonedVoice) -> dict[str, object]:
    """The learning state a voice saved by the CLI starts with (learned here, or not at all)."""
    from voiceforge.service.learning import META_KEY, LearnState

    return {META_KEY: LearnState("learned", 1.0, "done").as_meta()} if cloned.profile.learned else {}


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


def main() -> None:
    """Entry point: run the app, turning our errors into one line and exit status 2."""
    try:
        app()
    except VoiceforgeError as e:
        typer.echo(f"error: {e.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
