"""``voiceforge batch``: speak every row of a manifest, against a server or the embedded engine."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from voiceforge.batch.manifest import Item, ManifestError, Problem, check
from voiceforge.batch.results import FILENAME, Result, ResultsFile
from voiceforge.batch.runner import LocalSynthesizer, RemoteSynthesizer, Summary, Synthesizer, run
from voiceforge.client import Client, RetryPolicy
from voiceforge.errors import InvalidInput, VoiceforgeError


def batch(
    manifest: Annotated[Path, typer.Argument(help="a .csv (header row) or .jsonl file, one item per row")],
    server: Annotated[
        str | None,
        typer.Option(envvar="VOICEFORGE_SERVER", help="voiceforge server URL, e.g. http://127.0.0.1:7860"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the outputs and results.jsonl")] = Path(
        "batch-out"
    ),
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="items in flight at once")] = 4,
    resume: Annotated[bool, typer.Option("--resume", help="skip items finished by an earlier run")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check the manifest only; nothing is spoken")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="use the embedded engine instead of a server")
    ] = False,
    api_key: Annotated[
        str | None, typer.Option(envvar="VOICEFORGE_API_KEY", help="the server's API key")
    ] = None,
    voice: Annotated[str | None, typer.Option(help="voice for rows that name none")] = None,
    attempts: Annotated[int, typer.Option(min=1, max=20, help="tries per item (busy server, errors)")] = 6,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="run the valid rows; each invalid one goes to results.jsonl with its reason (exit 1)",
        ),
    ] = False,
) -> None:
    """Speak every row of MANIFEST into OUT/<id>.<format>, recording each in OUT/results.jsonl."""
    if local == (server is not None) and not dry_run:
        raise InvalidInput("give --server URL, or --local to use the embedded engine (one of them)")
    items, problems = check(manifest, default_voice=voice)
    if problems and not skip_invalid:
        raise ManifestError(manifest, problems)
    if dry_run:
        _dry_run(manifest, items, server, api_key, out, resume)
        if problems:
            typer.echo(str(ManifestError(manifest, problems)), err=True)
            raise typer.Exit(1)
        return
    if (out / FILENAME).is_file() and not resume:
        raise InvalidInput(
            f"{out / FILENAME} exists from an earlier run; pass --resume to continue it, "
            "or choose another --out"
        )
    synth: Synthesizer
    if local:
        from voiceforge.config import Settings

        synth = LocalSynthesizer(Settings())
    else:
        assert server is not None
        synth = RemoteSynthesizer(server, api_key=api_key, connections=concurrency)
    _record_invalid(problems, out)
    try:
        summary = asyncio.run(_run(items, synth, out, concurrency, RetryPolicy(attempts=attempts), resume))
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished items are in {out / FILENAME}; run again with --resume", err=True)
        raise typer.Exit(130) from None
    _report(summary, out, invalid=len({p.label for p in problems}))
    if summary.failed or problems:
        raise typer.Exit(1)


def _record_invalid(problems: list[Problem], out: Path) -> None:
    """One results.jsonl line per invalid row: its id (or line), line and every reason."""
    rows: dict[str, list[Problem]] = {}
    for problem in problems:
        rows.setdefault(problem.label, []).append(problem)
    results = ResultsFile(out)
    for label, found in rows.items():
        reason = "; ".join(p.message for p in found)
        results.append(Result(label, "invalid", None, None, 0, reason, "invalid_input", line=found[0].line))
        typer.echo(f"line {found[0].line} ({label}): skipped: {reason}", err=True)


async def _run(
    items: list[Item], synth: Synthesizer, out: Path, concurrency: int, policy: RetryPolicy, resume: bool
) -> Summary:
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("batch", total=len(items), rate="", failed="")
        state = {"done": 0, "failed": 0, "audio": 0.0}
        clock = asyncio.get_running_loop().time
        began = clock()

        def on_start(total: int, skipped: int) -> None:
            progress.update(task, completed=skipped)
            if skipped:
                console.print(f"resuming: {skipped} of {total} items already done")

        def on_result(result: Result) -> None:
            state["done"] += 1
            state["failed"] += result.status == "failed"
            state["audio"] += result.duration or 0.0
            wall = max(clock() - began, 1e-9)
            rate = f"{state['done'] / wall:.2f} items/s, {state['audio'] / wall:.2f} audio s/s"
            failed = f"{state['failed']} failed" if state["failed"] else ""
            progress.update(task, advance=1, rate=rate, failed=failed)
            if result.status == "failed":
                console.print(f"[red]{result.id}[/]: {result.error}", highlight=False)

        try:
            return await run(
                items,
                synth,
                out,
                concurrency=concurrency,
                policy=policy,
                resume=resume,
                on_start=on_start,
                on_result=on_result,
            )
        finally:
            await synth.close()


def _report(summary: Summary, out: Path, *, invalid: int) -> None:
    line = {
        "total": summary.total,
        "invalid": invalid,
        "skipped": summary.skipped,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "attempts": summary.attempts,
        "audio_s": round(summary.audio_s, 2),
        "wall_s": round(summary.wall_s, 2),
        "results": str(out / FILENAME),
    }
    typer.echo(json.dumps(line), err=True)


def _dry_run(
    manifest: Path, items: list[Item], server: str | None, api_key: str | None, out: Path, resume: bool
) -> None:
    """Check voices against the server too, when one is given."""
    if server is not None:
        try:
            with Client(server, api_key=api_key, retry=RetryPolicy(attempts=2)) as client:
                voices = client.voices()
            known = {v.id for v in voices} | {v.name for v in voices}
        except VoiceforgeError as e:
            typer.echo(f"note: voices not checked against {server}: {e.message}", err=True)
        else:
            problems = [
                Problem(i.line, f"voice {i.voice!r} is not on {server}; GET /v1/voices lists the voices")
                for i in items
                if i.voice is not None and i.voice not in known
            ]
            if problems:
                raise ManifestError(manifest, problems)
    todo = len(items)
    if resume:
        results = ResultsFile(out)
        earlier = results.load()
        todo = sum(not ((r := earlier.get(i.id)) and results.done(r)) for i in items)
    typer.echo(f"{manifest}: {len(items)} items OK; {todo} to speak", err=True)
    sys.stdout.flush()
