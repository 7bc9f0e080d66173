"""A recording → a house voice (a stock voice of this deployment), learned as a cloned voice is.

What ``voiceforge voices learn`` runs: the prompt checks, the learner (fit.py) with its defaults
or fewer steps, then the pack and its JSON (source, licence, consent, method, date) written to a
house-voice folder that the engine loads at start-up (engines/kokoro/catalog.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from voiceforge.audio.prompt import prepare_prompt
from voiceforge.config import Settings
from voiceforge.engines.kokoro.catalog import HouseVoice
from voiceforge.engines.kokoro.learn.enroll import learn_profile
from voiceforge.engines.kokoro.learn.fit import LearnConfig, Learner, Progress
from voiceforge.errors import InvalidInput

log = logging.getLogger(__name__)


def learn_house_voice(
    settings: Settings,
    recording: Path,
    voice: HouseVoice,
    folder: Path,
    *,
    transcript: str = "",
    steps: int | None = None,
    base: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[Path, dict[str, object]]:
    """Learn ``voice`` from ``recording`` into ``folder``; the JSON's path and the learning figures.

    ``voice.method`` and ``voice.created`` are filled in here. ``steps`` caps the timbre steps
    (default: the learner's); the language is ``voice.language``'s ("en-US" learns as en).
    ``base`` starts from that stock voice instead of the one closest to the recording: a house
    voice keeps much of its base's accent, so the clearest base (bench/house.py) can beat the closest.
    """
    language = voice.language.split("-")[0]
    prompt = prepare_prompt(recording)
    config = LearnConfig() if steps is None else LearnConfig(steps=steps, pitch_steps=min(steps, 20))
    log.info("learning house voice %s from %s (%s)", voice.id, recording.name, language)
    learner = Learner.load(settings)
    if base is not None:
        if base not in learner.packs:
            raise InvalidInput(
                f"base voice {base!r} is not a stock voice; choose one of {', '.join(learner.packs)}"
            )
        # the learner starts from the closest of its packs; its manifold spread is already taken
        learner.packs = {base: learner.packs[base]}
    profile = learn_profile(
        learner, prompt, transcript=transcript, language=language, config=config, progress=progress
    )
    meta = profile.meta
    figures: dict[str, object] = {
        "base_voice": profile.base_voice,
        "stock_sim": meta["stock_sim"],
        "calibration_sim": meta["calibration_sim"],
        "learn_steps": meta["learn_steps"],
        "learn_s": meta["enroll_s"],
        "prompt_speech_s": meta["prompt_speech_s"],
    }
    start = "chosen with --base" if base else "the closest to the recording"
    method = (
        f"learned style (engines/kokoro/learn/fit.py): pitch fit then {meta['learn_steps']} timbre steps "
        f"from stock {profile.base_voice} ({start}); "
        f"calibration SIM {meta['stock_sim']} → {meta['calibration_sim']}"
    )
    made = replace(voice, method=method, created=dt.date.today().isoformat())
    path = made.write(folder, profile.style, {"transcript": transcript, "learning": figures})
    log.info("house voice %s written to %s", made.id, path)
    return path, figures
