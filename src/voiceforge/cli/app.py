"""The `voiceforge` Typer apps (the top level, `voices`, `keys`) and what their commands share."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voiceforge.batch.cli import batch
from voiceforge.config import Settings
from voiceforge.errors import InvalidInput

if TYPE_CHECKING:
    from voiceforge.voices.library import VoiceLibrary

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


def open_library(settings: Settings) -> VoiceLibrary:
    from voiceforge.voices.library import VoiceLibrary

    return VoiceLibrary(settings.data_dir, settings.database_url)


def check_writable(path: Path) -> None:
    if str(path) == "-":
        return
    if path.is_dir():
        raise InvalidInput(f"output path {str(path)!r} is a directory; give a file name such as out.wav")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(f"cannot write {str(path)!r}: permission denied; choose a writable path")
