"""Progressive enrollment on a real server: a new voice answers at once from the quick enrollment,
learns Kokoro's own style in the background while /tts keeps serving, resumes after a restart,
and keeps its learned profile through export and import. A few learning steps (the settings
below) keep it to a minute or two; bench/learned.py measures what full learning buys."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

ZH = "zh_prompt_cosyvoice.wav"
SHORT = {"VOICEFORGE_LEARN_VOICES": "1", "VOICEFORGE_LEARN_STEPS": "2", "VOICEFORGE_LEARN_PITCH_STEPS": "2"}
LEARN_S = 600.0  # bound on one learning run here (the machine is shared while the suite runs)


def _state(c: httpx.Client, voice_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/voices/{voice_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _until_learned(srv: Server, voice_id: str, *, serving: bool) -> dict[str, Any]:
    """Poll the voice until it is learned; meanwhile (``serving``) /tts answers a stock voice."""
    deadline = time.monotonic() + LEARN_S
    with srv.client() as c:
        n = 0
        while True:
            body = _state(c, voice_id)
            learning = body["learning"]
            assert learning is not None and learning["state"] != "failed", body
            if learning["state"] == "learned":
                return body
            assert time.monotonic() < deadline, srv.log[-3000:]
            if serving:  # the learner must not stop the service answering
                n += 1
                r = c.post("/tts", json={"text": f"第{n}句，服务照常。"}, timeout=120)
                assert r.status_code == 200, r.text
            time.sleep(3.0)


def test_a_saved_voice_learns_in_the_background_and_survives_restart_and_export(
    start_server: Any, shared_audio: Path, manifest: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    home = tmp_path / "learning"
    srv = start_server(home, **SHORT)
    form = {"name": "小希", "transcript": manifest[ZH]["transcript"], "language": "zh", "consent": "true"}
    with srv.client(timeout=LEARN_S) as c:  # a cold quick enrollment renders the stock voices first
        started = time.monotonic()
        r = c.post("/v1/voices", data=form, files={"file": ("p.wav", (shared_audio / ZH).read_bytes())})
        answered_s = time.monotonic() - started
        assert r.status_code == 201, r.text
        voice = r.json()
        assert voice["learning"]["state"] in ("queued", "learning")
        assert voice["conversion"] == "statistics only"  # the quick enrollment answers first
        quick = c.post("/tts", json={"text": "你好。", "voice_id": voice["id"]})
        assert quick.status_code == 200, quick.text
    print(f"saved (quick enrollment) in {answered_s:.1f} s")

    # Stopped while learning, the voice resumes at the next start.
    srv.stop()
    srv = start_server(home, **SHORT)
    assert "learning resumes after the restart" in srv.log
    learned = _until_learned(srv, voice["id"], serving=True)
    assert learned["conversion"] == "learned style" and learned["learning"]["progress"] == 1.0
    with srv.client() as c:
        r = c.post("/tts", json={"text": "你好。", "voice_id": voice["id"]})
        assert r.status_code == 200 and r.json()["cached"] is False, r.text  # a new profile, new audio
        exported = c.get(f"/v1/voices/{voice['id']}/export")
        assert exported.status_code == 200
        again = c.post(
            "/v1/voices/import", files={"file": ("v.zip", exported.content)}, data={"name": "again"}
        )
        assert again.status_code == 201, again.text
        assert again.json()["learning"]["state"] == "learned"  # not queued again: already learned
        assert again.json()["conversion"] == "learned style"
    srv.stop()
    srv = start_server(home, **SHORT)
    with srv.client() as c:
        assert _state(c, voice["id"])["learning"]["state"] == "learned"
        r = c.post("/tts", json={"text": "你好。", "voice_id": "again"})
        assert r.status_code == 200, r.text


def test_a_request_prompt_answers_quick_then_speaks_with_the_learned_voice(
    start_server: Any, shared_audio: Path, manifest: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    srv = start_server(tmp_path / "prompted", **SHORT)
    body = {
        "text": "我们一起去公园吧。",
        "prompt_audio": base64.b64encode((shared_audio / ZH).read_bytes()).decode(),
        "prompt_text": manifest[ZH]["transcript"],
    }
    with srv.client(timeout=LEARN_S) as c:
        first = c.post("/tts", json=body)
        assert first.status_code == 200, first.text
        clones = srv.home / "data" / "clones"
        deadline = time.monotonic() + LEARN_S
        while not list(clones.glob("*.learned.npz")):
            assert time.monotonic() < deadline, srv.log[-3000:]
            time.sleep(1.0)
        second = c.post("/tts", json=body)
        assert second.status_code == 200, second.text
        assert second.json()["cached"] is False  # the learned voice: a new cache entry
        third = c.post("/tts", json=body)
        assert third.json()["cached"] is True
    assert "being learned in the background" in srv.log and "prompt already learned" in srv.log
