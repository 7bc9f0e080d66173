"""What people upload is checked, not only what they type: recognised speech meets the word filter
(refused or flagged in the audit row, as the operator chooses), and transcripts say who spoke."""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from tests.integration.conftest import Server
from tests.integration.jobs import finished, wait_for

pytestmark = pytest.mark.slow

KEY_RE = re.compile(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
F5 = "en_prompt_f5.wav"  # "Some call me nature, others call me mother nature."


def _server(
    start_server: Callable[..., Server], tmp_path: Path, action: str
) -> tuple[Server, dict[str, str]]:
    words = tmp_path / f"words-{action}.txt"
    words.write_text("[testwords]\nmother nature\n", encoding="utf-8")
    srv = start_server(
        home=tmp_path / action,
        VOICEFORGE_AUTH="on",
        VOICEFORGE_WORD_LIST=str(words),
        VOICEFORGE_SPEECH_FILTER=action,
    )
    return srv, {"Authorization": f"Bearer {KEY_RE.findall(srv.log)[0]}"}


def test_a_listed_word_heard_in_uploaded_speech_is_refused_without_naming_it(
    start_server: Callable[..., Server], tmp_path: Path, shared_audio: Path
) -> None:
    srv, auth = _server(start_server, tmp_path, "refuse")
    clip = (shared_audio / F5).read_bytes()
    with srv.client(headers=auth, timeout=300) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("f5.wav", clip)}, data={"model": "whisper-1"})
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert "sensitive-word list" in message and "testwords" in message
        assert "mother" not in message.lower()  # the reason, never the matched term
        # the prompt of a one-off clone, before any enrollment work
        started = time.monotonic()
        r = c.post("/tts", json={"text": "Hello.", "prompt_audio": base64.b64encode(clip).decode()})
        assert r.status_code == 400 and "testwords" in r.json()["error"], r.text
        assert time.monotonic() - started < 60
        # a transcription job fails with the same reason; the typed text path is unchanged
        job = c.post("/v1/jobs", json={"kind": "transcription", "audio": base64.b64encode(clip).decode()})
        assert job.status_code == 202, job.text
        done = wait_for(c, job.json()["id"], finished, timeout=240)
        assert done["status"] == "failed" and "testwords" in done["error"]["message"], done
    assert "mother nature" not in srv.log.lower()


def test_flagged_speech_goes_through_and_the_audit_row_says_so(
    start_server: Callable[..., Server], tmp_path: Path, shared_audio: Path
) -> None:
    srv, auth = _server(start_server, tmp_path, "flag")
    clip = (shared_audio / F5).read_bytes()
    with srv.client(headers=auth, timeout=300) as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("f5.wav", clip)}, data={"model": "whisper-1"})
        assert r.status_code == 200 and "mother nature" in r.json()["text"].lower(), r.text
    time.sleep(1.5)  # the audit writer flushes every second
    db = sqlite3.connect(srv.home / "data" / "voiceforge.db")
    outcomes = [row[0] for row in db.execute("SELECT outcome FROM audit WHERE endpoint = ?",
                                              ("/v1/audio/transcriptions",))]  # fmt: skip
    db.close()
    assert "flagged:testwords" in outcomes, outcomes
    assert re.search(r"holds a term on the sensitive-word list \(category testwords\); flagged", srv.log)


def test_transcriptions_say_who_spoke_when(server: Server, shared_audio: Path, tmp_path: Path) -> None:
    parts = []
    for name in ("zh_prompt_cosyvoice.wav", F5, "zh_prompt_cosyvoice.wav"):
        audio, rate = soundfile.read(shared_audio / name, dtype="float32", always_2d=True)
        parts += [soxr.resample(audio.mean(axis=1), rate, 16000), np.zeros(8000, np.float32)]
    path = tmp_path / "dialogue.wav"
    soundfile.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    with server.client(timeout=300) as c:
        r = c.post(
            "/v1/audio/transcriptions",
            files={"file": ("dialogue.wav", path.read_bytes())},
            data={"response_format": "verbose_json", "diarize": "true"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["speakers"] == ["SPEAKER_1", "SPEAKER_2"], body
        who = [(s["speaker"], s["text"]) for s in body["segments"]]
        assert who[0][0] == who[-1][0] == "SPEAKER_1" and any(
            s == "SPEAKER_2" and "nature" in t.lower() for s, t in who
        ), who
        srt = c.post(
            "/v1/audio/transcriptions",
            files={"file": ("dialogue.wav", path.read_bytes())},
            data={"response_format": "srt", "speakers": "2"},
        )
        assert srt.status_code == 200 and "[SPEAKER_2]" in srt.text, srt.text
        bad = c.post(
            "/v1/audio/transcriptions", files={"file": ("d.wav", path.read_bytes())}, data={"speakers": "9"}
        )
        assert bad.status_code == 400 and "speakers" in bad.json()["error"]["message"]
