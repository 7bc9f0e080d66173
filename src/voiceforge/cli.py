"""`voiceforge` command line: say, voices, transcribe, doctor.

A user's mistake ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, VoiceforgeError

app = typer.Typer(
    help="voiceforge: voice-cloning text-to-speech (Chinese, English, mixed) on your CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
voices_app = typer.Typer(help="Voices: list the stock voices.", invoke_without_command=True)
app.add_typer(voices_app, name="voices")

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
    voice: Annotated[str | None, typer.Option(help="stock voice (see `voiceforge voices`)")] = None,
    speed: Annotated[float, typer.Option(help="0.5 to 2.0")] = 1.0,
    seed: Annotated[int, typer.Option(help="1 to 100000000; same seed and input give the same audio")] = 1,
    fmt: Annotated[
        str | None, typer.Option("--format", help="wav, flac, mp3, opus, aac or pcm; default from -o")
    ] = None,
    lufs: Annotated[float | None, typer.Option(help="normalise loudness to this LUFS, e.g. -16")] = None,
) -> None:
    """Speak TEXT into an audio file."""
    from voiceforge.audio.encode import encode, parse_format
    from voiceforge.engines.base import SynthesisRequest, synthesize
    from voiceforge.engines.registry import create_engine

    content = _read_text(text, file)
    audio_format = parse_format(fmt or (output.suffix.lstrip(".") if output.suffix else "wav"))
    request = SynthesisRequest(text=content, voice=voice, speed=speed, seed=seed)
    _check_writable(output)
    engine = create_engine(Settings())
    started = time.perf_counter()
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
    """List the stock voices of the configured engine."""
    if ctx.invoked_subcommand is not None:
        return
    from voiceforge.engines.registry import create_engine

    engine = create_engine(Settings())
    for v in engine.voices():
        note = f"  ({v.description})" if v.description else ""
        typer.echo(f"{v.name:16} {v.language:6} {v.gender}{note}")


@app.command()
def transcribe(
    audio: Annotated[Path, typer.Argument(help="an audio file")],
    language: Annotated[str | None, typer.Option(help="zh, en, …; default: detect")] = None,
) -> None:
    """Print what is said in AUDIO (bundled Whisper base)."""
    from voiceforge.asr.whisper import Transcriber, bundled_model_dir

    if not audio.is_file():
        raise InvalidInput(f"audio file {str(audio)!r} does not exist")
    settings = Settings()
    model_dir = settings.whisper_model or bundled_model_dir(settings.cache_dir)
    result = Transcriber(model_dir, settings.threads).transcribe(audio, language=language)
    typer.echo(result.text)


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
    from voiceforge.asr.whisper import Transcriber, bundled_model_dir
    from voiceforge.engines.base import Engine, SynthesisRequest, synthesize
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
        directory = settings.whisper_model or bundled_model_dir(settings.cache_dir)
        Transcriber(directory, settings.threads)
        return str(directory)

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
