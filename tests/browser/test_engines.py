"""The web UI's engine picker on a server that offers kokoro and cosyvoice (the stand-in package
under tests/standins; see tests/test_cosyvoice_engine.py): controls the chosen engine lacks are
disabled with a line saying why, and a generation goes to the chosen engine.

Screenshots: build/screenshots/engines-desktop.png (cosyvoice), engines-kokoro-desktop.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_ui import DESKTOP, PROMPT, decoded_result, generate
from tests.integration.conftest import Server, cosyvoice_standin, launch

pytestmark = pytest.mark.slow

DIALECT = "四川话"  # a preset button that needs a dialect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("engines-ui")
    env = {
        "VOICEFORGE_UI": "1",
        "VOICEFORGE_ENGINES": "kokoro,cosyvoice",
        **cosyvoice_standin(home),
    }
    srv = launch(home, env)
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#vf-engine")  # shown: this server offers two engines
    yield page
    context.close()


def pick(page: Any, engine: str) -> None:
    page.locator("#vf-engine label", has_text=engine).click()


def pick_mode(page: Any, label: str) -> None:
    page.locator("#vf-mode label", has_text=label).click()


def dialect_disabled(page: Any) -> bool:
    disabled: bool = page.get_by_role("button", name=DIALECT, exact=True).is_disabled()
    return disabled


def test_picking_an_engine_disables_what_it_lacks_and_generates_with_it(
    page: Any, server: Server, shared_audio: Path, screenshots: Path
) -> None:
    # kokoro (the default): every mode, no dialects
    assert page.locator("#vf-mode label").count() == 4
    pick_mode(page, "自然语言控制")
    page.wait_for_selector("#vf-preset-note")
    assert dialect_disabled(page)
    assert "引擎 kokoro 不支持方言" in page.inner_text("#vf-preset-note")
    assert not page.get_by_role("button", name="开心", exact=True).is_disabled()

    # cosyvoice (no preset speakers in the stand-in's model directory): no preset mode, dialects on,
    # no speed change while streaming
    pick(page, "cosyvoice")
    page.wait_for_function("document.querySelectorAll('#vf-mode label').length === 3", timeout=60_000)
    assert "引擎 cosyvoice 不支持：预训练音色" in page.inner_text("#vf-mode")
    page.wait_for_selector("#vf-preset-note", state="hidden")
    assert not dialect_disabled(page)
    page.get_by_text("流式播放", exact=True).click()
    page.wait_for_function("document.querySelector('#vf-speed input[type=range]').disabled", timeout=10_000)
    assert "引擎 cosyvoice 流式播放时不能调语速" in page.inner_text("#vf-speed")
    page.get_by_text("流式播放", exact=True).click()
    page.wait_for_function("!document.querySelector('#vf-speed input[type=range]').disabled", timeout=10_000)

    # the notes follow the language
    page.get_by_text("English", exact=True).click()
    page.wait_for_function(
        "document.querySelector('#vf-mode').innerText.includes('engine cosyvoice cannot do: Preset voice')",
        timeout=10_000,
    )
    page.get_by_text("中文", exact=True).click()
    page.wait_for_function(
        "document.querySelector('#vf-mode').innerText.includes('引擎 cosyvoice 不支持')", timeout=10_000
    )

    # a dialect instruction spoken by cosyvoice in a voice cloned from a prompt
    pick_mode(page, "自然语言控制")
    page.set_input_files("#vf-prompt input[type=file]", str(shared_audio / PROMPT))
    page.wait_for_function(
        "document.querySelector('#vf-prompt-status').innerText.includes('✅')", timeout=90_000
    )
    page.get_by_role("button", name=DIALECT, exact=True).click()
    page.wait_for_function(
        "document.querySelector('#vf-instruct textarea').value === '用四川话说'", timeout=10_000
    )
    page.fill("#vf-text textarea", "今天天气很好，我们去公园散步吧。")
    status = generate(page)
    audio = decoded_result(page)
    assert audio["status"] == 200 and audio["bytes"] > 1000 and audio["seconds"] > 0.5, audio
    page.screenshot(path=str(screenshots / "engines-desktop.png"), full_page=True)
    task = status.split("任务 ")[1].split("）")[0].split("，")[0]
    line = next(x for x in server.log.splitlines() if f"[{task}] UI generate" in x)
    assert "mode instruct, engine cosyvoice" in line, line

    # back to kokoro: the dialect preset is disabled again, with the reason
    pick(page, "kokoro")
    page.wait_for_function("document.querySelectorAll('#vf-mode label').length === 4", timeout=30_000)
    page.wait_for_selector("#vf-preset-note")
    assert dialect_disabled(page)
    assert "引擎 kokoro 不支持方言" in page.inner_text("#vf-preset-note")
    page.screenshot(path=str(screenshots / "engines-kokoro-desktop.png"), full_page=True)
