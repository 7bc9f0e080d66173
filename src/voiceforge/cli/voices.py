"""`voiceforge voices`: list, add (learned, or --fast), learn a house voice, rm, rename, export, import."""

from __future__ import annotations

import dataclasses
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voiceforge.cli.app import check_writable, open_library, voices_app
from voiceforge.config import Settings
from voiceforge.errors import InvalidInput
from voiceforge.voices.library import NO_CONSENT

if TYPE_CHECKING:
    from voiceforge.engines.base import Engine
    from voiceforge.service.cloning import ClonedVoice
    from voiceforge.service.models import Models
    from voiceforge.voices.library import VoiceRecord
    from voiceforge.voices.profile import VoiceProfile


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
    for record in open_library(settings).list():
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
    library = open_library(settings)
    engine = create_engine(settings)
    cloned = clone(settings, engine, prompt, transcript, language, fast=fast)
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
    library = open_library(Settings())
    record = library.get(name)
    library.delete(record.id)
    typer.echo(f"deleted {record.name} ({record.id})")


@voices_app.command("rename")
def voices_rename(old: str, new: str) -> None:
    """Rename a saved voice."""
    record = open_library(Settings()).rename(old, new)
    typer.echo(f"renamed to {record.name} ({record.id})")


@voices_app.command("export")
def voices_export(
    name: str, output: Annotated[Path, typer.Option("--output", "-o", help="file to write (.zip)")]
) -> None:
    """Write a saved voice (profile, prompt, metadata) to one file."""
    check_writable(output)
    output.write_bytes(open_library(Settings()).export(name))
    typer.echo(f"wrote {output}")


@voices_app.command("import")
def voices_import(
    archive: Path, name: Annotated[str | None, typer.Option(help="save under this name instead")] = None
) -> None:
    """Add a voice exported by `voiceforge voices export`."""
    if not archive.is_file():
        raise InvalidInput(f"voice file {str(archive)!r} does not exist")
    record = open_library(Settings()).import_(archive.read_bytes(), name=name)
    typer.echo(f"imported {record.name} ({record.id})")


def clone(
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
            progress=lambda p: bar.update(
                task, completed=max(learning.fraction(p), bar.tasks[0].completed), description=p.stage
            ),
        )


def _learned(cloned: ClonedVoice) -> dict[str, object]:
    """The learning state a voice saved by the CLI starts with (learned here, or not at all)."""
    from voiceforge.service.learning import META_KEY, LearnState

    return {META_KEY: LearnState("learned", 1.0, "done").as_meta()} if cloned.profile.learned else {}
