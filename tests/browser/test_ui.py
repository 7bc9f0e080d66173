"""The web UI, the backend view, restart and the mobile page in a real browser against a real server.

Screenshots of every mode at a phone (390×844) and a desktop (1440×900) viewport land in
build/screenshots/.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile
import soxr

from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
MODES = ("preset", "zero_shot", "cross_lingual", "instruct")  # the order of the mode radio
PROMPT = "zh_prompt_cosyvoice.wav"
TEXTS = {
    "preset": "你好，欢迎使用语音合成。",
    "zero_shot": "今天天气很好，我们去公园散步吧。",
    "cross_lingual": "Good morning, this voice came from a Chinese recording.",
    "instruct": "这是一个好消息，我们成功了！",
}
DECODE = """async (url) => {
  const response = await fetch(url);
  const data = await response.arrayBuffer();
  const bytes = data.byteLength;  // decoding detaches the buffer
  const audio = await new OfflineAudioContext(1, 1, 24000).decodeAudioData(data);
  return {status: response.status, bytes, seconds: audio.duration};
}"""
FINISHED = """(before) => {
  const text = document.querySelector('#vf-status').innerText;
  const changed = before.trim() === '' || !text.includes(before);  // the old outcome is gone
  return changed && (text.includes('✅') || text.includes('⚠️'));
}"""


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(server.url + "/")  # redirects to /ui/
    page.wait_for_selector("#vf-generate")
    yield page
    context.close()


def generate(page: Any) -> str:
    """Press Generate and wait for its outcome; the status line must say it succeeded."""
    before = page.inner_text("#vf-status")
    page.click("#vf-generate")
    page.wait_for_function(FINISHED, arg=before, timeout=150_000)
    status: str = page.inner_text("#vf-status")
    assert "✅" in status, status
    return status


def decoded_result(page: Any) -> dict[str, Any]:
    href = page.get_attribute("#vf-result a[download]", "href")
    assert href, "the result has no download link"
    result: dict[str, Any] = page.evaluate(DECODE, href)
    return result


def shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(folder / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_every_mode_generates_decodable_audio(page: Any, shared_audio: Path, screenshots: Path) -> None:
    for i, mode in enumerate(MODES):
        page.locator("#vf-mode label").nth(i).click()
        if mode == "zero_shot":  # the prompt stays for the modes after it (and its clone is cached)
            page.set_input_files("#vf-prompt input[type=file]", str(shared_audio / PROMPT))
            page.wait_for_function(
                "document.querySelector('#vf-prompt-status').innerText.includes('✅')", timeout=60_000
            )
            assert page.input_value("#vf-prompt-text textarea").strip(), "ASR did not fill the transcript"
        if mode == "instruct":
            page.get_by_role("button", name="开心", exact=True).click()
            page.wait_for_function(
                "document.querySelector('#vf-instruct textarea').value === '用开心的语气说'", timeout=10_000
            )
        page.fill("#vf-text textarea", TEXTS[mode])
        generate(page)
        audio = decoded_result(page)
        assert audio["status"] == 200 and audio["bytes"] > 1000 and audio["seconds"] > 0.5, (mode, audio)
        shoot(page, screenshots, mode)

    page.get_by_role("tab", name="历史记录").click()
    assert page.locator("#vf-history .vf-hist").count() == len(MODES)
    page.get_by_text("English", exact=True).click()
    page.get_by_role("tab", name="Generate").click()
    page.wait_for_function("document.querySelector('#vf-generate').innerText.includes('Generate')")
    shoot(page, screenshots, "english")


def test_streaming_plays_the_sentences_and_keeps_the_whole_take(page: Any) -> None:
    page.get_by_text("流式播放", exact=True).click()
    page.wait_for_selector("#vf-live")
    page.fill("#vf-text textarea", "第一句先播放。第二句随后就到。")
    page.get_by_role("tab", name="历史记录").click()
    before = page.locator("#vf-history .vf-hist").count()
    page.get_by_role("tab", name="语音合成").click()
    generate(page)
    audio = decoded_result(page)
    assert audio["status"] == 200 and audio["seconds"] > 1.0, audio
    page.wait_for_function("window.vfLivePlayed >= 2", timeout=5_000)  # both sentences were played
    # The streamed take is kept like a rendered one: in /outputs and in this browser's history.
    page.get_by_role("tab", name="历史记录").click()
    page.wait_for_function(f"document.querySelectorAll('#vf-history .vf-hist').length === {before + 1}")
    newest = page.get_attribute("#vf-history .vf-hist audio", "src")
    assert newest and "/outputs/" in newest, newest


def test_voice_library_saves_lists_previews_renames_and_deletes(
    page: Any, shared_audio: Path, screenshots: Path
) -> None:
    page.locator("#vf-mode label").nth(MODES.index("zero_shot")).click()
    page.set_input_files("#vf-prompt input[type=file]", str(shared_audio / PROMPT))
    page.wait_for_function(
        "document.querySelector('#vf-prompt-status').innerText.includes('✅')", timeout=60_000
    )
    page.fill("#vf-save-name textarea", "小助手")
    page.get_by_role("button", name="保存到音色库").click()  # refused: nobody affirmed consent
    page.wait_for_function("document.querySelector('#vf-prompt-status').innerText.includes('同意')")
    page.check("#vf-consent input")
    page.get_by_role("button", name="保存到音色库").click()  # the clone the modes test made is reused
    page.wait_for_function(
        "document.querySelector('#vf-prompt-status').innerText.includes('小助手')", timeout=120_000
    )
    assert "✅" in page.inner_text("#vf-prompt-status")

    page.get_by_role("tab", name="音色库").click()
    page.wait_for_function("document.querySelector('#vf-library').innerText.includes('小助手')")
    page.click("#vf-lib-pick input")
    page.get_by_role("option", name="小助手").click()
    page.wait_for_selector("#vf-lib-preview a[download]")  # the recording plays back
    shoot(page, screenshots, "library")
    page.fill("#vf-lib-name textarea", "助手二号")
    page.get_by_role("button", name="重命名").click()
    page.wait_for_function("document.querySelector('#vf-library').innerText.includes('助手二号')")
    page.click("#vf-lib-pick input")
    page.get_by_role("option", name="助手二号").click()
    page.get_by_role("button", name="删除").click()
    page.wait_for_function("document.querySelector('#vf-lib-status').innerText.includes('助手二号')")
    page.wait_for_function("!document.querySelector('#vf-library').innerText.includes('助手二号')")


def test_an_8khz_prompt_shows_the_sample_rate_message(
    page: Any, shared_audio: Path, tmp_path: Path, screenshots: Path
) -> None:
    data, rate = soundfile.read(shared_audio / "en_prompt_f5.wav", dtype="float32")
    narrow = tmp_path / "prompt-8k.wav"
    soundfile.write(narrow, soxr.resample(data, rate, 8000), 8000, subtype="PCM_16")
    page.locator("#vf-mode label").nth(MODES.index("zero_shot")).click()
    page.set_input_files("#vf-prompt input[type=file]", str(narrow))
    page.wait_for_function(
        "document.querySelector('#vf-prompt-status').innerText.includes('8000 Hz')", timeout=30_000
    )
    message = page.inner_text("#vf-prompt-status")
    assert "16000 Hz" in message, message
    assert "Traceback" not in page.content()
    shoot(page, screenshots, "prompt-8khz")


def test_backend_view_shows_a_line_this_test_caused_within_2_s(
    page: Any, server: Server, screenshots: Path
) -> None:
    page.get_by_role("tab", name="后台查看").click()
    page.wait_for_function("document.querySelector('#vf-logview').dataset.state === 'live'")
    trace = f"uitest-{uuid.uuid4().hex[:12]}"
    sent = time.monotonic()
    request = threading.Thread(
        target=httpx.post,
        args=(server.url + "/tts",),
        kwargs={"json": {"text": "你好"}, "headers": {"X-Request-ID": trace}, "timeout": 60},
    )
    request.start()
    page.wait_for_function(
        "(trace) => document.querySelector('#vf-logview pre').innerText.includes(trace)",
        arg=trace,
        timeout=5_000,
    )
    elapsed = time.monotonic() - sent
    request.join()
    assert elapsed < 2.0, f"the log line took {elapsed:.2f} s to reach the page"
    shoot(page, screenshots, "backend")

    page.fill("#vf-logview [data-vf=task]", trace)  # the task filter keeps only that request's lines
    page.press("#vf-logview [data-vf=task]", "Enter")
    page.wait_for_function("document.querySelector('#vf-logview').dataset.state === 'live'")
    page.wait_for_function(
        "(t) => document.querySelector('#vf-logview pre').innerText.includes(t)", arg=trace
    )
    lines = page.inner_text("#vf-logview pre").strip().splitlines()
    assert lines and all(trace in line for line in lines), lines


def test_restart_keeps_the_page_up_and_a_queued_job_completes(page: Any, server: Server) -> None:
    with server.client() as c:
        body = {"kind": "tts", "text": "第一句话。第二句话。第三句话。第四句话。第五句话。第六句话。"}
        jobs = [c.post("/v1/jobs", json={**body, "seed": seed}).json()["id"] for seed in (7, 8)]
        # jobs run one at a time here, so the second waits while the first runs
        assert c.get(f"/v1/jobs/{jobs[1]}").json()["status"] == "queued"
        page.get_by_role("tab", name="后台查看").click()
        page.get_by_role("button", name="重启应用").click()
        page.wait_for_function(
            "document.querySelector('#vf-restart-status').innerText.includes('✅')", timeout=120_000
        )
        assert "⚠️" not in page.inner_text("#vf-restart-status")
        page.get_by_role("tab", name="语音合成").click()  # the same page still generates
        page.fill("#vf-text textarea", "重启之后仍然可以合成。")
        generate(page)
        deadline = time.monotonic() + 120
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [c.get(f"/v1/jobs/{job}").json()["status"] for job in jobs]
            if all(s in ("succeeded", "failed", "cancelled") for s in states):
                break
            time.sleep(0.5)
        assert states == ["succeeded", "succeeded"], states


def test_mobile_page_records_from_the_microphone_sends_and_plays(
    browser: Any, server: Server, screenshots: Path
) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(server.url + "/m")
        page.click("#record")
        page.wait_for_timeout(4500)  # the fake microphone plays a real recording
        page.click("#record")
        page.wait_for_selector("#prompt:not([hidden])")
        page.fill("#text", "Hello from the phone page.")
        page.click("#send")
        # /m forbids eval (its CSP), which Playwright's wait_for_function needs: selectors and
        # polls through the DevTools protocol instead
        page.wait_for_selector("#result[src]:not([hidden]), #status.error", timeout=150_000)
        assert page.get_attribute("#status", "class") != "error", page.inner_text("#status")
        src = page.get_attribute("#result", "src")
        audio = page.evaluate(DECODE, src)
        assert audio["status"] == 200 and audio["seconds"] > 0.5, audio
        deadline = time.monotonic() + 10
        while not page.evaluate("document.querySelector('#result').currentTime > 0"):
            assert time.monotonic() < deadline, "the answer never played"
            page.wait_for_timeout(100)
        page.screenshot(path=str(screenshots / "mobile-phone.png"), full_page=True)
    finally:
        context.close()


def test_mobile_live_transcript_survives_a_dropped_connection(browser: Any, server: Server) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:  # /m's CSP forbids eval, which wait_for_function needs: wait by selector instead
        page.goto(server.url + "/m")
        page.click("#live")  # the fake microphone plays the F5 prompt over and over
        page.wait_for_selector("#finals p", timeout=90_000)
        page.evaluate("window.voiceforgeLive.socket.close()")  # the network drops
        page.wait_for_selector("#finals p:nth-of-type(3)", timeout=120_000)
        page.click("#live")  # stop: the server sends what is left, then done
        page.wait_for_timeout(1500)
        lines = page.eval_on_selector_all(
            "#finals p", "ps => ps.map(p => [Number(p.dataset.seq), p.textContent])"
        )
        assert [seq for seq, _ in lines] == list(range(1, len(lines) + 1)), lines  # none lost, none twice
        assert any("nature" in text.lower() for _, text in lines), lines
        assert page.inner_text("#live-status") == "", page.inner_text("#live-status")
    finally:
        context.close()
