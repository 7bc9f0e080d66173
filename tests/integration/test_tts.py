"""POST /tts end to end against a real server: the contract clients already use."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
import soundfile

from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _fetch_audio(client: httpx.Client, url: str) -> tuple[int, float]:
    got = client.get(url)
    assert got.status_code == 200, got.text
    samples, rate = soundfile.read(io.BytesIO(got.content))
    return rate, len(samples) / rate


def test_json_request_returns_a_playable_url(server: Server) -> None:
    with server.client() as c:
        r = c.post("/tts", json={"text": "你好，欢迎使用 voiceforge。", "seed": 7})
        body = r.json()
        assert r.status_code == 200, body
        assert body["success"] is True and body["cached"] is False
        assert body["audio_url"].endswith(f"/outputs/{body['task_id']}.wav")
        assert body["sample_rate"] == 24000
        rate, seconds = _fetch_audio(c, body["audio_url"])
        assert rate == 24000 and seconds == pytest.approx(body["duration"], abs=0.01)
        assert 1.0 < seconds < 6.0


def test_form_request_and_cache_hit(server: Server) -> None:
    form = {"text": "Caching makes the second request free.", "format": "mp3", "speed": "1.1"}
    with server.client() as c:
        first = c.post("/tts", data=form).json()
        second = c.post("/tts", data=form).json()
        assert first["success"] and not first["cached"]
        assert second["cached"] is True
        assert second["task_id"] == first["task_id"] and second["audio_url"] == first["audio_url"]
        audio = c.get(first["audio_url"])
        assert audio.headers["content-type"] == "audio/mpeg" and audio.content[:3] in (b"ID3", b"\xff\xfb")
    assert server.log.count("cache hit") >= 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"text": ""}, "text"),
        ({"text": "长" * 201}, "text"),
        ({"text": "hi", "seed": 0}, "seed"),
        ({"text": "hi", "seed": 100_000_001}, "seed"),
        ({"text": "hi", "speed": 3}, "speed"),
        ({"text": "hi", "mode": "karaoke"}, "mode"),
        ({"text": "hi", "format": "wma"}, "format"),
        ({"text": "hi", "mode": "zero_shot"}, "prompt_audio"),
        ({"text": "hi", "prompt_audio": "not base64!!"}, "base64"),
        ({"text": "hi", "voice_id": "nobody"}, "unknown voice"),
        ({"text": "hi", "instruct": "用四川话说"}, "kokoro cannot speak a dialect"),
        ({}, "text is required"),
    ],
)
def test_bad_input_is_a_400_a_person_can_act_on(server: Server, body: dict[str, object], says: str) -> None:
    with server.client() as c:
        r = c.post("/tts", json=body)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["success"] is False and answer["code"] in ("invalid_input", "unsupported")
    assert says in answer["error"], answer


def test_body_that_is_not_a_json_object(server: Server) -> None:
    with server.client() as c:
        for content in (b"{", b"[1, 2]", b"\xff\xfe"):
            r = c.post("/tts", content=content, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["success"] is False


def test_oversized_body_is_413(start_server: object) -> None:
    srv = start_server(VOICEFORGE_MAX_BODY_BYTES="65536")  # type: ignore[operator]
    with srv.client() as c:
        r = c.post("/tts", json={"text": "hi", "prompt_audio": "A" * 200_000})
    assert r.status_code == 413 and "at most 64 KiB" in r.json()["error"]


def test_prompt_too_short_says_so(server: Server, shared_audio: Path) -> None:
    short = _b64(shared_audio / "en_ljspeech_LJ001-0002_short.wav")
    with server.client() as c:
        r = c.post("/tts", json={"text": "hello", "prompt_audio": short, "mode": "zero_shot"})
    assert r.status_code == 400
    assert "at least 3" in r.json()["error"]


def test_zero_shot_clone_then_cached_and_cross_lingual(server: Server, shared_audio: Path) -> None:
    prompt = _b64(shared_audio / "zh_prompt_cosyvoice.wav")
    request = {
        "text": "收到，我们明天见。",
        "prompt_audio": prompt,
        "prompt_text": "希望你以后能够做的比我还好呦。",
        "mode": "zero_shot",
        "seed": 3,
    }
    with server.client() as c:
        first = c.post("/tts", json=request)
        assert first.status_code == 200, first.text
        again = c.post("/tts", json=request).json()
        assert again["cached"] is True
        # Same prompt, new text: the enrolled voice is reused, only synthesis runs.
        english = c.post("/tts", json={**request, "text": "See you tomorrow.", "mode": "cross_lingual"})
        assert english.status_code == 200, english.text
        _rate, seconds = _fetch_audio(c, english.json()["audio_url"])
        assert seconds > 0.5
    assert server.log.count("prompt already enrolled") >= 1


def test_kokoro_takes_no_seed_so_another_seed_is_the_same_cached_take(server: Server) -> None:
    with server.client() as c:
        models = c.get("/v1/models").json()["data"]
        caps = next(m for m in models if m["id"] == "kokoro")["voiceforge"]["capabilities"]
        assert caps["seeding"] is False and caps["seed"] is False
        first = c.post("/tts", json={"text": "One take, whatever the seed.", "seed": 11}).json()
        other = c.post("/tts", json={"text": "One take, whatever the seed.", "seed": 12}).json()
        assert (first["cached"], other["cached"]) == (False, True), other  # not synthesised again
        assert other["audio_url"].split("?")[0] == first["audio_url"].split("?")[0]


def test_instruct_mode(server: Server) -> None:
    with server.client() as c:
        r = c.post(
            "/tts", json={"text": "今天真是太好了！", "mode": "instruct", "instruct": "用开心的语气说"}
        )
    assert r.status_code == 200, r.text


def test_outputs_support_ranges_and_refuse_odd_names(server: Server) -> None:
    with server.client() as c:
        url = c.post("/tts", json={"text": "Range requests let players seek."}).json()["audio_url"]
        whole = c.get(url).content
        part = c.get(url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == whole[:100]
        assert part.headers["content-range"].startswith("bytes 0-99/")
        for name in ("..%2F..%2Fetc%2Fpasswd", "nothing.wav", "%2Fetc%2Fpasswd", "a.wav%00.txt"):
            r = c.get(f"/outputs/{name}")
            assert r.status_code == 404, name


def test_health_and_readiness(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["database"] is True
        assert c.get("/no/such/route").status_code == 404


def test_timeout_is_504_and_full_queue_is_503(start_server: object) -> None:
    import concurrent.futures

    srv = start_server(  # type: ignore[operator]
        VOICEFORGE_REQUEST_TIMEOUT_S="0.05", VOICEFORGE_WORKERS="1", VOICEFORGE_MAX_QUEUE="1"
    )
    texts = [f"Request number {i} waits in line behind the others." for i in range(6)]
    with srv.client() as c, concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda t: c.post("/tts", json={"text": t}), texts))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {503, 504}, statuses
    assert 503 in statuses and 504 in statuses, statuses
    for r in answers:
        body = r.json()
        assert body["success"] is False and body["error"]
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1 and "busy" in body["error"]
        else:
            assert body["code"] == "timeout" and "longer than" in body["error"]
