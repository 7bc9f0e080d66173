"""Shared fixtures: the real engine and the real Whisper model, loaded once per session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceforge.config import Settings

REPO = Path(__file__).resolve().parents[1]


def system_binary(name: str, package: str) -> str:
    """The path of a Debian-installed program a slow tier needs (chromium, redis-server, …).

    A developer without it gets a skip that says which package to install; CI (``CI=true``),
    whose .ci/run installs it, fails instead, so a missing install step never passes silently.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found; install it with: apt-get install {package}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """../shared/audio: real recordings with exact transcripts (read-only, never copied)."""
    path = Path(os.environ.get("VOICEFORGE_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
    assert (path / "manifest.json").is_file(), (
        f"real test clips not found at {path}; set VOICEFORGE_SHARED_AUDIO"
    )
    return path


@pytest.fixture(scope="session")
def manifest(shared_audio: Path) -> dict[str, dict[str, object]]:
    clips = json.loads((shared_audio / "manifest.json").read_text(encoding="utf-8"))["clips"]
    return {c["file"]: c for c in clips}


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[object]:
    from voiceforge.engines.kokoro import KokoroEngine

    yield KokoroEngine.from_settings(settings)


@pytest.fixture(scope="session")
def transcriber(settings: Settings) -> object:
    from voiceforge.asr.whisper import Transcriber, bundled_model_dir

    return Transcriber(bundled_model_dir(settings.cache_dir))
