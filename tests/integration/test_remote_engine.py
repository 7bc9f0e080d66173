"""The remote engine against a second real ``voiceforge serve`` on 127.0.0.1 acting as the remote.

The front server offers ``remote`` (its default), ``kokoro`` and ``cosyvoice`` (the stand-in package
under tests/standins, see test_cosyvoice_engine.py); requests pick one by ``model``. Real audio end
to end, streaming pass-through, prompt voices uploaded to the remote's voice API once, the remote's
errors named after it, and the remote going down: 503s that say so, then the breaker opening.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from tests.conftest import REPO
from tests.integration.conftest import Server, cosyvoice_standin, free_port, launch
from voiceforge.asr.scoring import wer
from voiceforge.engines.base import Prompt, SynthesisRequest, synthesize
from voiceforge.engines.remote import RemoteEngine
from voiceforge.errors import EngineUnavailable

pytestmark = pytest.mark.slow

RATE = 24000
EN = "The remote server speaks this sentence. Then it speaks another one."
LONG = (
    "The first sentence leaves the remote early. The second one follows it. A third sentence comes next. "
    "Then there is a fourth. The fifth is nearly the end. This sixth sentence is the last one."
)
F5 = "en_prompt_f5.wav"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("remote"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def front(remote: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("front")
    env = {
        "VOICEFORGE_ENGINE": "remote",
        "VOICEFORGE_ENGINES": "remote,kokoro,cosyvoice",
        "VOICEFORGE_REMOTE_URL": remote.url,
        "VOICEFORGE_REMOTE_MODEL": "voiceforge",
        "VOICEFORGE_BREAKER_MIN_CALLS": "2",
        # The first /tts in a saved voice waits for the remote to enroll it (20-40 s, past 120 s
        # on a loaded 2-core machine).
        "VOICEFORGE_REQUEST_TIMEOUT_S": "600",
        **cosyvoice_standin(home),
    }
    srv = launch(home, env)
    yield srv
    srv.stop()


def _wav(data: bytes) -> np.ndarray:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE
    return np.asarray(samples)


def _heard(front: Server, audio: bytes) -> str:
    with front.client() as c:
        r = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data={"language": "en"})
    assert r.status_code == 200, r.text
    return str(r.json()["text"])


def test_models_list_each_engine_with_its_capabilities(front: Server, remote: Server) -> None:
    with front.client() as c:
        models = {m["id"]: m["voiceforge"] for m in c.get("/v1/models").json()["data"]}
    assert models["tts-1"]["engine"] == "remote" and models["remote"]["default"] is True
    assert {"remote", "kokoro", "cosyvoice", "whisper-1"} <= set(models)
    far = models["remote"]
    assert far["available"] and far["capabilities"]["local"] is False
    assert far["capabilities"]["cloning"] == "prompt" and far["capabilities"]["seed"] is False
    assert far["capabilities"]["instruct_verbatim"] is False  # its kokoro refuses "whisper"; so do we
    with httpx.Client(base_url=remote.url) as c:
        theirs = {v["name"] for v in c.get("/v1/models/kokoro").json()["voiceforge"]["voices"]}
    assert {v["name"] for v in far["voices"]} == theirs  # the remote's stock voices, read from it
    cosy = models["cosyvoice"]["capabilities"]
    assert cosy["speed_when_streaming"] is False and "四川话" in cosy["dialects"] and "breath" in cosy["tags"]
    assert cosy["instruct_verbatim"] is True
    assert models["kokoro"]["capabilities"]["cloning"] == "profile"


def test_remote_speech_is_real_audio(front: Server) -> None:
    with front.client() as c:
        r = c.post(
            "/v1/audio/speech",
            json={"model": "remote", "input": EN, "voice": "alloy", "response_format": "wav"},
        )
    assert r.status_code == 200, r.text
    samples = _wav(r.content)
    assert 2.0 < len(samples) / RATE < 12.0 and 0.05 < float(np.max(np.abs(samples))) <= 1.0
    heard = _heard(front, r.content)
    assert wer(EN, heard) <= 0.25, heard
    assert "with remote (preset)" in front.log


def test_remote_audio_is_passed_on_while_the_remote_still_speaks(front: Server, remote: Server) -> None:
    mark = len(remote.log)
    body = {"model": "tts-1", "input": LONG, "voice": "alloy", "response_format": "pcm"}
    with front.client() as c, c.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        pieces = r.iter_bytes()
        first = next(pieces)
        made = [(int(a), int(b)) for a, b in re.findall(r"synthesising (\d+)/(\d+) ", remote.log[mark:])]
        rest = b"".join(pieces)
    total = max(int(b) for _, b in re.findall(r"synthesising (\d+)/(\d+) ", remote.log[mark:]))
    assert total >= 4 and made, "the remote logged no sentences"
    assert (total, total) not in made, "the front waited for the whole remote render"
    audio = np.frombuffer(first + rest, "<i2")
    assert len(audio) / RATE > 6.0


def test_a_saved_voice_is_uploaded_once_with_its_consent(
    front: Server, remote: Server, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    said = manifest[F5]["transcript"]
    form = {"name": "Remote Nature", "transcript": said, "language": "en", "consent": "true"}
    with front.client() as c:
        made = c.post("/v1/voices", data=form, files={"file": ("clip", (shared_audio / F5).read_bytes())})
        assert made.status_code == 201, made.text
    urls = []
    for text in ("Hello from a cloned voice.", "A second sentence in the same voice."):
        with front.client() as c:
            r = c.post("/tts", json={"text": text, "model": "remote", "voice_id": made.json()["id"]})
            assert r.status_code == 200, r.text
            assert r.json()["duration"] > 0.8
            urls.append(r.json()["audio_url"])
            audio = c.get(urls[-1])
        assert audio.status_code == 200 and len(_wav(audio.content)) > RATE // 2
    assert front.log.count("prompt uploaded as voice") == 1
    with httpx.Client(base_url=remote.url) as c:
        saved = [v for v in c.get("/v1/voices").json()["voices"] if v["kind"] == "saved"]
    assert len(saved) == 1 and saved[0]["name"].startswith("vf-") and saved[0]["transcript"] == said
    assert saved[0]["consent"] is True  # the real value, as the front recorded it
    assert f"voice {saved[0]['name']} ({saved[0]['id']})" in remote.log  # the remote spoke in it


def test_kokoro_and_cosyvoice_by_model_name_on_the_same_server(front: Server) -> None:
    with front.client() as c:
        for engine in ("kokoro", "cosyvoice"):
            r = c.post("/tts", json={"text": "Hello there, general.", "model": engine})
            if engine == "cosyvoice":  # no preset speakers in a CosyVoice3 model: a 400 that says so
                assert r.status_code == 400 and "mode 'preset' is not supported by engine cosyvoice" in r.text
                continue
            assert r.status_code == 200, r.text
        r = c.post("/tts", json={"text": "Hello there.", "model": "nosuch"})
        assert r.status_code == 400 and "remote, kokoro, cosyvoice" in r.json()["error"]
    assert "with kokoro (preset)" in front.log


def test_remote_refusal_is_a_400_naming_the_remote(front: Server, remote: Server) -> None:
    with front.client() as c:
        r = c.post("/v1/audio/speech", json={"model": "remote", "input": "a <wobble> b", "voice": "alloy"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert f"the remote engine at {remote.url} answered 400" in message and "wobble" in message


def test_remote_down_is_a_503_that_says_so_then_the_breaker_opens(front: Server, remote: Server) -> None:
    remote.stop()
    body = {"model": "tts-1", "input": "Is anyone there?", "voice": "alloy", "response_format": "wav"}
    answers = []
    with front.client() as c:
        # Open once VOICEFORGE_BREAKER_MIN_CALLS (2) calls are in the window and the failure rate is
        # past 5 %: after one failure when earlier tests' successes are in the window, else two.
        while len(answers) < 3 and not (answers and "too often" in answers[-1][0]):
            started = time.monotonic()
            r = c.post("/v1/audio/speech", json=body)
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            answers.append((r.json()["error"]["message"], time.monotonic() - started))
        kokoro = c.post("/v1/audio/speech", json=body | {"model": "kokoro"})
    down, _ = answers[0]
    assert f"the remote engine at {remote.url} is unreachable" in down, down
    assert "check that it is running" in down
    paused, took = answers[-1]
    assert f"the remote engine at {remote.url} failed too often recently" in paused, paused
    assert took < 1.0  # an open breaker answers at once, without trying the remote
    assert "circuit breaker open" in front.log
    assert kokoro.status_code == 200  # the other engines keep serving


# -- a server that is not voiceforge: the vLLM-Omni stand-in (tests/standins/openai_speech_server.py) --
OMNI_MODEL = "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"


@pytest.fixture(scope="module")
def omni(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("omni") / "stdout.log").open("wb")
    script = REPO / "tests" / "standins" / "openai_speech_server.py"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "the stand-in server did not start"
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(20)
    log.close()


def _omni_engine(url: str, **kwargs: Any) -> RemoteEngine:
    return RemoteEngine(url, model=kwargs.pop("model", OMNI_MODEL), **kwargs)


def test_without_a_voice_api_the_prompt_travels_with_each_request(
    omni: str, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    engine = _omni_engine(omni)
    assert [v.name for v in engine.voices()] == ["alloy"]  # it lists none: OpenAI names map here
    assert engine.capabilities.local is False and engine.capabilities.cloning == "prompt"
    prompt = Prompt(shared_audio / F5, str(manifest[F5]["transcript"]), key="p" * 32)
    text = "Cloned speech from a server without a voice list."
    for _ in range(2):
        result = synthesize(engine, SynthesisRequest(text=text, mode="zero_shot", prompt=prompt, speed=1.1))
        assert result.sample_rate == RATE and result.duration_s > 1.0
    seen = httpx.get(f"{omni}/test/requests").json()[-1]
    assert seen["ref_text"] == prompt.transcript and seen["input"] == text and seen["speed"] == 1.1
    assert seen["ref_audio"]["header"] == "data:audio/wav;base64" and seen["ref_audio"]["seconds"] > 3
    assert seen["response_format"] == "pcm" and seen["stream"] is True and seen["model"] == OMNI_MODEL
    engine.close()


def test_a_503_with_retry_after_is_retried_only_before_audio(
    omni: str, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    prompt = Prompt(shared_audio / F5, str(manifest[F5]["transcript"]), key="q" * 32)
    request = SynthesisRequest(text="Busy, then fine.", mode="zero_shot", prompt=prompt)
    engine = _omni_engine(omni, retries=1)
    httpx.post(f"{omni}/test/busy", params={"count": 1})
    started = time.monotonic()
    assert synthesize(engine, request).duration_s > 0.5
    assert time.monotonic() - started >= 1.0  # it waited out Retry-After: 1
    httpx.post(f"{omni}/test/busy", params={"count": 2})
    with pytest.raises(EngineUnavailable, match=rf"the remote engine at {omni} answered 503: server busy"):
        synthesize(engine, request)
    wrong = _omni_engine(omni, model="tts-1")
    with pytest.raises(EngineUnavailable, match=r"answered 404: The model `tts-1` does not exist"):
        synthesize(wrong, request)
    engine.close()
    wrong.close()
