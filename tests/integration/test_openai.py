"""The OpenAI-compatible audio API against a real server, driven by the official ``openai`` package
unmodified (``OpenAI(base_url=server.url + "/v1")``): speech in every format, real streaming, SSE,
instructions, errors, transcription in every response format, models; and, with raw httpx, a client
that leaves mid-stream and a full queue."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
import soundfile
from openai import OpenAI

from tests.integration.conftest import Server, launch
from voiceforge.asr.scoring import cer, wer

pytestmark = pytest.mark.slow

RATE = 24000
EN = "Streaming speech starts at once. It keeps going while you listen."
# Six sentences: the last one is made seconds after the first has left.
LONG = (
    "The first sentence leaves the server early. The second one follows it. A third sentence comes next. "
    "Then there is a fourth. The fifth is nearly the end. This sixth sentence is the last one."
)
F5 = "en_prompt_f5.wav"
ZH = "zh_prompt_cosyvoice.wav"


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120) as c:
        yield c


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Mono float samples and rate, read by a decoder that is not ours."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, RATE
    if fmt == "wav":
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
        return samples, int(rate)
    # PyAV for FLAC too: a streamed FLAC cannot state its length up front (STREAMINFO says
    # "unknown"), and libsndfile fails with "psf_fseek() failed" at the end of such a file.
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        samples = np.concatenate(frames)
        if samples.dtype.kind == "i":  # FLAC decodes to int16
            samples = samples.astype(np.float32) / 32768
        return samples, int(stream.rate)


def _synthesis_lines(log: str, task_id: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(rf"\[{task_id}\] synthesising (\d+)/(\d+) ", log)]


# -- speech ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_in_every_format(client: OpenAI, fmt: str) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=EN, response_format=fmt)  # type: ignore[arg-type]
    samples, rate = decode(audio.content, fmt)
    assert rate == {"opus": 48000}.get(fmt, RATE)
    assert 2.0 < len(samples) / rate < 10.0
    assert 0.05 < float(np.max(np.abs(samples))) <= 1.0


def test_speech_round_trip_through_transcription(client: OpenAI) -> None:
    wav = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="jf_gongitsune", input=EN, response_format="wav"
    )
    heard = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav.content), language="en"
    )
    assert wer(EN, heard.text) <= 0.25, heard.text


def test_streaming_sends_the_first_sentence_before_the_last_is_made(client: OpenAI, server: Server) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=LONG, response_format="pcm"
    ) as response:
        task_id = response.headers["x-task-id"]
        chunks = response.iter_bytes()
        first = next(chunk for chunk in chunks if chunk)
        log_at_first_bytes = server.log  # what the server had done when the first bytes arrived
        rest = b"".join(chunks)
    made = _synthesis_lines(log_at_first_bytes, task_id)
    assert made, f"no synthesis line for {task_id} before its first bytes arrived"
    total = made[0][1]
    assert total >= 6
    assert (total, total) not in made, f"all {total} sentences were made before the first bytes arrived"
    assert (total, total) in _synthesis_lines(server.log, task_id)
    samples, _ = decode(first + rest, "pcm")
    assert len(samples) / RATE > 8.0


def test_sse_events(client: OpenAI) -> None:
    events: list[dict[str, Any]] = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="echo", input=EN, response_format="pcm", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] == len(EN)
    samples, _ = decode(b"".join(base64.b64decode(e["audio"]) for e in deltas), "pcm")
    assert len(samples) / RATE == pytest.approx(events[-1]["usage"]["audio_seconds"], abs=0.05)


def test_instructions_change_the_delivery(client: OpenAI) -> None:
    text = "We will meet again tomorrow morning."

    def seconds(**extra: Any) -> float:
        audio = client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="coral", input=text, response_format="pcm", **extra
        )
        return len(audio.content) / 2 / RATE

    plain, slow = seconds(), seconds(instructions="speak much slower")
    assert slow > plain * 1.2, (plain, slow)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"model": "tts-9"}, "unknown model 'tts-9'; choose one of tts-1, tts-1-hd"),
        ({"voice": "nobody"}, "unknown voice 'nobody'"),
        ({"speed": 4.0}, "speed"),
        ({"input": "x" * 4097}, "input is 4097 characters; at most 4096"),
        ({"input": "今天天气很好。", "instructions": "用四川话说"}, "cannot speak a dialect"),
        ({"input": "!!!"}, "nothing to speak"),
        ({"response_format": "wma"}, "response_format"),
    ],
)
def test_bad_requests_are_openai_errors(client: OpenAI, params: dict[str, Any], says: str) -> None:
    request: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **params}
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(**request)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and says in body["message"], body


def test_saved_voice_by_name_and_by_id(
    client: OpenAI, server: Server, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    form = {"name": "Narrator", "transcript": manifest[F5]["transcript"], "language": "en", "consent": "true"}
    with server.client() as c:
        made = c.post("/v1/voices", data=form, files={"file": ("clip", (shared_audio / F5).read_bytes())})
    assert made.status_code == 201, made.text
    voice_id = made.json()["id"]
    by_name = client.audio.speech.create(
        model="tts-1", voice="narrator", input="Hello there.", response_format="wav"
    )
    by_id = client.audio.speech.create(
        model="tts-1", voice={"id": voice_id}, input="Hello there.", response_format="wav"
    )
    assert by_name.content == by_id.content
    stock = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello there.", response_format="wav"
    )
    assert stock.content != by_name.content
    assert f"voice Narrator ({voice_id})" in server.log
    listed = client.models.retrieve("tts-1").model_extra["voiceforge"]["saved_voices"]  # type: ignore[index]
    assert {"id": voice_id, "name": "Narrator"} in listed


# -- transcription -----------------------------------------------------------------------------------
def test_transcription_in_every_format(client: OpenAI, shared_audio: Path, manifest: dict[str, Any]) -> None:
    clip = (shared_audio / F5).read_bytes()
    said = manifest[F5]["transcript"]

    def transcribe(response_format: str) -> Any:
        # A misleading name: the server sniffs the content.
        return client.audio.transcriptions.create(
            model="whisper-1",
            file=("notes.txt", clip),
            response_format=response_format,  # type: ignore[arg-type]
        )

    assert wer(said, transcribe("json").text) <= 0.15
    assert wer(said, transcribe("text")) <= 0.15
    srt = transcribe("srt")
    assert (
        srt.startswith("1\n00:00:00,")
        and " --> 00:00:05," in srt
        and wer(said, srt.split("\n", 2)[2]) <= 0.15
    )
    vtt = transcribe("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and " --> 00:00:05." in vtt
    verbose = transcribe("verbose_json")
    assert verbose.language == "en" and verbose.duration == pytest.approx(
        manifest[F5]["duration_s"], abs=0.05
    )
    assert wer(said, verbose.text) <= 0.15
    segments = verbose.segments or []
    assert segments and segments[0].id == 0 and 0 <= segments[0].start < segments[-1].end <= verbose.duration


def test_transcription_of_chinese_in_another_container(
    client: OpenAI, shared_audio: Path, manifest: dict[str, Any]
) -> None:
    from voiceforge.audio.decode import decode as read
    from voiceforge.audio.encode import encode

    clip = read(shared_audio / ZH)
    mp3 = encode(clip.samples, clip.sample_rate, "mp3")
    heard = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", mp3), language="zh")
    assert cer(manifest[ZH]["transcript"], heard.text) <= 0.15, heard.text


def test_transcription_refusals(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not a recognised audio format"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"not audio at all" * 100))
    with pytest.raises(openai.BadRequestError, match="language 'klingon'"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"), language="klingon")
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"), response_format="xml")  # type: ignore[arg-type]


# -- models -------------------------------------------------------------------------------------------
def test_models(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "kokoro", "voiceforge", "whisper-1"} <= set(ids)
    model = client.models.retrieve("kokoro")
    info = model.model_extra["voiceforge"]  # type: ignore[index]
    assert model.object == "model" and info["kind"] == "speech" and info["streaming"] is True
    assert info["sample_rate"] == RATE and info["max_chars"] == 4096 and "instruct" in info["modes"]
    assert {"zh", "en"} <= set(info["languages"]) and "emotion" in info["instruct_controls"]
    stock = {v["name"] for v in info["voices"]}
    assert set(info["openai_voices"]) >= {"alloy", "echo", "nova", "shimmer"}
    assert set(info["openai_voices"].values()) <= stock
    assert client.models.retrieve("whisper-1").model_extra["voiceforge"]["kind"] == "transcription"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError, match="no model 'dall-e-3'"):
        client.models.retrieve("dall-e-3")


# -- streaming under pressure (raw httpx) --------------------------------------------------------------
def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_client_leaving_mid_stream_stops_synthesis_and_a_full_queue_is_503(start_server: Any) -> None:
    """One worker and a queue of one: a stream holds the worker, a second waits, a third is refused;
    when the first client leaves, synthesis stops after the current sentence and the second runs."""
    srv: Server = start_server(VOICEFORGE_WORKERS="1", VOICEFORGE_MAX_QUEUE="1")
    request = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "mp3"}
    with httpx.Client(base_url=srv.url, timeout=120) as c, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with c.stream("POST", "/v1/audio/speech", json=request) as first:
            assert first.status_code == 200
            task_id = first.headers["x-task-id"]
            received = first.iter_raw()  # kept: dropping the iterator would close the connection
            assert next(received)
            waiting = pool.submit(c.post, "/v1/audio/speech", json={**request, "input": "I waited my turn."})
            _wait_for(lambda: srv.log.count("received /v1/audio/speech") == 2, "the second request to queue")
            refused = c.post("/v1/audio/speech", json=request)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) >= 1 and "busy" in refused.json()["error"]["message"]
        # The first client has gone (its connection closed with the block above).
        _wait_for(lambda: f"[{task_id}] stream ended by the client" in srv.log, "the server to notice")
        second = waiting.result(120)
        assert second.status_code == 200 and len(second.content) > 1000
    log = srv.log
    made = _synthesis_lines(log, task_id)
    total = made[0][1]
    assert len(made) < total, f"all {total} sentences were made for a client that had left"
    after_leaving = _synthesis_lines(log[log.index(f"[{task_id}] stream ended by the client") :], task_id)
    assert len(after_leaving) <= 1, "synthesis went on past the sentence in progress"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a 3 s time limit and a 64 KiB upload limit."""
    env = {"VOICEFORGE_REQUEST_TIMEOUT_S": "3", "VOICEFORGE_MAX_UPLOAD_BYTES": "65536"}
    srv = launch(tmp_path_factory.mktemp("limited"), env)
    yield srv
    srv.stop()


def test_uploads_past_the_limit_are_413(limited: Server, shared_audio: Path) -> None:
    clip = (shared_audio / F5).read_bytes()  # 250 KiB
    client = OpenAI(base_url=limited.url + "/v1", api_key="x", max_retries=0)
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", clip))
    assert caught.value.status_code == 413
    assert "at most 64 KiB" in caught.value.body["message"]  # type: ignore[index]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as the body arrives
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    with httpx.Client(base_url=limited.url, timeout=30) as c:
        r = c.post(
            "/v1/audio/transcriptions",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert r.status_code == 413 and "at most 64 KiB" in r.json()["error"]["message"]


def test_an_error_after_the_first_byte_ends_the_stream(limited: Server) -> None:
    """A stall past the time limit mid-stream: SSE ends with an error event, raw audio is cut off
    (an incomplete body, never a short file that looks whole), and neither hangs."""
    srv = limited
    # "Hi." comes at once (0.5 s on two cores); the run-on sentence after it, 16 s of audio, takes
    # over 5 s to make.
    text = "Hi. " + "and then the long sentence goes on and on without a single pause " * 4
    request = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        with c.stream("POST", "/v1/audio/speech", json={**request, "stream_format": "sse"}) as sse:
            assert sse.status_code == 200
            task_id = sse.headers["x-task-id"]
            events = [json.loads(line[6:]) for line in sse.iter_lines() if line.startswith("data: ")]
        assert events[0]["type"] == "speech.audio.delta" and events[-1]["type"] == "error"
        assert events[-1]["error"]["code"] == "timeout"
        assert "no audio came within 3 s" in events[-1]["error"]["message"]
        # The stalled sentence is finished, then the work stops; only then is the engine free again.
        _wait_for(lambda: f"[{task_id}] stream stopped" in srv.log, "the first stream to stop")
        with c.stream("POST", "/v1/audio/speech", json=request) as raw:
            assert raw.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in raw.iter_raw():
                    pass
    assert srv.log.count("stream failed after") == 2
