"""Live transcription over a real WebSocket: text forms as audio arrives, a dropped connection
resumes with nothing lost or repeated, and auth, scopes and ownership hold as on HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

RATE = 16000
FRAME = RATE // 5  # 200 ms per frame
KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("live"), {"VOICEFORGE_AUTH": "on"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin_key(server: Server) -> str:
    return KEY_RE.findall(server.log)[0]


def _key(server: Server, name: str, scopes: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "voiceforge", "keys", "create", name, "--scopes", scopes],
        cwd=server.home, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def _pcm(shared_audio: Path) -> bytes:
    """The zh prompt, 1.2 s of silence, the F5 prompt, 1.2 s of silence: int16 at 16 kHz."""
    parts = []
    for name in ("zh_prompt_cosyvoice.wav", "en_prompt_f5.wav"):
        audio, rate = soundfile.read(shared_audio / name, dtype="float32", always_2d=True)
        parts += [soxr.resample(audio.mean(axis=1), rate, RATE), np.zeros(int(1.2 * RATE), np.float32)]
    return (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()


def _url(server: Server, key: str, **query: object) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"api_key": key, **query}.items())
    return f"{server.url.replace('http', 'ws', 1)}/v1/audio/live?{params}"


def _events(ws: ClientConnection, until: str | None = None, timeout: float = 60) -> list[dict[str, Any]]:
    """Events already sent (or, with ``until``, every event up to and including that type)."""
    out = []
    while True:
        try:
            event = json.loads(ws.recv(timeout=timeout if until else 0.05))
        except TimeoutError:
            if until:
                raise
            return out
        out.append(event)
        if event["type"] == until:
            return out


def test_a_dropped_connection_resumes_without_losing_or_repeating_text(
    server: Server, admin_key: str, shared_audio: Path
) -> None:
    pcm = _pcm(shared_audio)
    zh_end = int(4.6 * RATE) * 2  # the zh prompt and most of the silence after it
    drop_at = zh_end + int(2.6 * RATE) * 2  # mid-way through the English prompt
    finals: list[dict[str, Any]] = []
    partials = 0
    with connect(_url(server, admin_key, sample_rate=RATE)) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "session" and hello["received"] == 0
        token = hello["session"]
        for i in range(0, drop_at, 2 * FRAME):
            ws.send(pcm[i : min(i + 2 * FRAME, drop_at)])
            ended = i + 2 * FRAME >= zh_end and not finals  # the zh sentence ended: its final comes
            events = _events(ws, until="final") if ended else _events(ws)
            finals += [e for e in events if e["type"] == "final"]
            partials += sum(e["type"] == "partial" for e in events)
        assert finals, "the first sentence was final before the drop"
    # Dropped without "end" (frames still in flight may be lost). Resume with the last final seen.
    with connect(_url(server, admin_key, session=token, last_seq=finals[-1]["seq"])) as ws:
        again = json.loads(ws.recv(timeout=30))
        assert again["type"] == "session" and again["session"] == token
        offset = again["received"] * 2  # what arrived; the client sends again from there
        assert zh_end <= offset <= drop_at
        for i in range(offset, len(pcm), 2 * FRAME):
            ws.send(pcm[i : i + 2 * FRAME])
        ws.send(json.dumps({"type": "end"}))
        rest = _events(ws, until="done")
    finals += [e for e in rest if e["type"] == "final"]
    assert [f["seq"] for f in finals] == list(range(1, len(finals) + 1))  # none lost, none twice
    text = " ".join(f["text"] for f in finals).lower()
    assert "以后能够做的比我还好" in text and "nature" in text and "mother nature" in text, finals
    assert text.count("mother nature") == 1 and text.count("以后能够") == 1
    assert rest[-1] == {"type": "done", "finals": len(finals)}
    assert partials + sum(e["type"] == "partial" for e in rest) >= 1  # text showed before it was final


def test_auth_scope_and_ownership_hold_on_the_websocket(server: Server, admin_key: str) -> None:
    ws_url = server.url.replace("http", "ws", 1) + "/v1/audio/live"
    with pytest.raises(Exception, match=r"1008|401|403|rejected"), connect(ws_url) as ws:  # no key
        ws.recv(timeout=10)
    tts_only = _key(server, "speaker", "tts")
    code, reason, event = _refused(_url(server, tts_only))
    assert code == 4403 and "'asr' scope" in event["message"] and event["code"] == "forbidden"
    with connect(_url(server, admin_key)) as ws:
        token = json.loads(ws.recv(timeout=30))["session"]
    other = _key(server, "listener", "asr")
    code, _, event = _refused(_url(server, other, session=token))
    assert code == 4404 and "not yours" in event["message"]  # someone else's session
    code, reason, _ = _refused(_url(server, admin_key, sample_rate=12345))
    assert code == 4400 and "sample_rate 12345" in reason


def _refused(url: str) -> tuple[int, str, dict[str, Any]]:
    """The close code, its reason and the error event of a connection the server refuses."""
    with connect(url) as ws:
        event = json.loads(ws.recv(timeout=10))
        assert event["type"] == "error", event
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason, event
