"""`voiceforge` command line: say, voices, keys, serve, worker, transcribe, doctor, batch.

A user's mistake ends in one line on stderr and exit status 2, never a traceback. Each command
group is a module; importing them registers their commands on ``app``.
"""

from __future__ import annotations

import sys

import typer

from voiceforge.cli import keys, say, serve, voices  # noqa: F401  (registers their commands)
from voiceforge.cli.app import app
from voiceforge.errors import VoiceforgeError


def main() -> None:
    """Entry point: run the app, turning our errors into one line and exit status 2."""
    try:
        app()
    except VoiceforgeError as e:
        typer.echo(f"error: {e.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
