"""Debian's headless Chromium driven by Playwright against a real `voiceforge serve`.

Playwright's own browser downloads are never used: ``executable_path`` is the system chromium.
The fake microphone plays a clip from ../shared/audio (Chromium needs 16-bit PCM WAV for it; a
clip in another encoding is converted into a temporary folder first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile

from tests.conftest import REPO, system_binary
from tests.integration.conftest import Server, launch

SCREENSHOTS = REPO / "build" / "screenshots"  # git-ignored; look at them after a run
MIC_CLIP = "en_prompt_f5.wav"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("ui-server"), {"VOICEFORGE_UI": "1"})
    yield srv
    srv.stop()


def pcm16_wav(source: Path, folder: Path) -> Path:
    """``source`` as 16-bit PCM WAV (what Chromium's fake capture reads), converted if needed."""
    info = soundfile.info(source)
    if info.format == "WAV" and info.subtype == "PCM_16":
        return source
    data, rate = soundfile.read(source, dtype="float32")
    target = folder / (source.stem + "-pcm16.wav")
    soundfile.write(target, data, rate, subtype="PCM_16")
    return target


@pytest.fixture(scope="module")
def browser(shared_audio: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = system_binary("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    mic = pcm16_wav(shared_audio / MIC_CLIP, tmp_path_factory.mktemp("mic"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
