"""`voiceforge keys`: create (shown once), list, revoke API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from voiceforge.cli.app import keys_app
from voiceforge.config import Settings

if TYPE_CHECKING:
    from voiceforge.service.keys import KeyStore


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
