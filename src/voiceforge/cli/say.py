"""`voiceforge say`: speak text into an audio file (a stock, saved or on-the-fly cloned voice)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from voiceforge.cli.app import app, check_writable, open_library
from voiceforge.cli.voices import clone
from voiceforge.config import Settings
from voiceforge.errors import InvalidInput, NotFound


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
    check_writable(output)
    settings = Settings()
    engine = create_engine(settings)
    started = time.perf_counter()
    profile = None
    if prompt is not None:
        profile = clone(settings, engine, prompt, prompt_text, None, fast=fast).profile
    elif voice and voice not in (stock := [v.name for v in engine.voices()]):
        try:
            profile = open_library(settings).profile(voice)
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
