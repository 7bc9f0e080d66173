"""With auth on, the UI is behind the login page: a pasted key becomes an HttpOnly session cookie
that opens the UI, its audio and (for admin keys) the backend view — and nothing more."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.test_ui import DECODE, DESKTOP, generate
from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
ENV = {"VOICEFORGE_UI": "1", "VOICEFORGE_AUTH": "on", "VOICEFORGE_KEY_CACHE_S": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("ui-auth"), ENV)
    yield srv
    srv.stop()


def tts_key(server: Server) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "voiceforge", "keys", "create", "ui-user", "--scopes", "tts"],
        cwd=server.home, env={**os.environ, "HF_HUB_OFFLINE": "1", **ENV},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def sign_in(browser: Any, server: Server, key: str) -> Any:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(server.url + "/ui/")
    assert page.url.startswith(server.url + "/login"), page.url
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    return page


def test_the_ui_needs_a_key_and_an_admin_key_opens_the_backend_view(browser: Any, server: Server) -> None:
    admin = KEY_RE.findall(server.log)[0]
    assert httpx.get(server.url + "/ui/", headers={"accept": "application/json"}).status_code == 401

    page = sign_in(browser, server, "vf_000000000000_" + "x" * 43)
    page.wait_for_selector(".error:not(:empty)")
    assert "Traceback" not in page.content()
    page.context.close()

    page = sign_in(browser, server, admin)
    page.wait_for_selector("#vf-generate")
    cookie = next(c for c in page.context.cookies() if c["name"] == "voiceforge_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"].startswith("vfs1.") and admin.split("_")[-1] not in cookie["value"]
    page.fill("#vf-text textarea", "登录之后可以合成。")
    generate(page)
    href = page.get_attribute("#vf-result a[download]", "href")
    assert page.evaluate(DECODE, href)["seconds"] > 0.5
    page.get_by_role("tab", name="后台查看").click()
    page.wait_for_function("document.querySelector('#vf-logview').dataset.state === 'live'")
    page.context.close()


def test_a_tts_key_generates_but_sees_no_backend_view(browser: Any, server: Server) -> None:
    page = sign_in(browser, server, tts_key(server))
    page.wait_for_selector("#vf-generate")
    assert page.get_by_role("tab", name="后台查看").count() == 0
    status = page.evaluate("fetch('/admin/restart', {method: 'POST'}).then(r => r.status)")
    assert status == 403
    page.context.close()
