"""`voiceforge batch` and the SDK against a real server: bad rows, a run killed half-way and
resumed, a busy server whose 503s are retried, idempotent creates, and the embedded engine."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import soundfile

from tests.integration.conftest import Server
from voiceforge import errors
from voiceforge.asr.scoring import cer
from voiceforge.client import AsyncClient, Client, RetryPolicy

pytestmark = pytest.mark.slow

TEXTS = [
    "您好，欢迎光临。",
    "Thank you for calling.",
    "请稍等片刻。",
    "Your order has shipped.",
    "今天天气很好。",
    "See you tomorrow.",
    "下一站，人民广场。",
    "Please hold the line.",
]


def _voice(server: Server) -> str:
    with Client(server.url) as client:
        return next(v.id for v in client.voices() if v.kind == "stock")


def _manifest(path: Path, voice: str, n: int = len(TEXTS), seed: int = 1) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "voice", "seed", "format"])
        for i in range(n):
            writer.writerow([f"clip-{i:02d}", TEXTS[i % len(TEXTS)], voice, seed + i, "wav"])
    return path


def _batch(*args: str) -> list[str]:
    return [sys.executable, "-m", "voiceforge", "batch", *args]


def _cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        _batch(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )


def _outputs(home: Path) -> set[Path]:
    return {p for p in home.rglob("*.wav") if "outputs" in p.parts}


def test_dry_run_lists_every_bad_row_with_its_line(server: Server, tmp_path: Path) -> None:
    voice = _voice(server)
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "voice", "seed"])
        w.writerow(["good", "你好。", voice, "3"])
        w.writerow(["no-voice", "没有声音。", "", ""])
        w.writerow(["too-long", "长" * 300, voice, ""])
        w.writerow(["bad-seed", "种子。", voice, "abc"])
        w.writerow(["unknown", "谁的声音？", "no_such_voice", ""])
    run = _cli(str(manifest), "--server", server.url, "--dry-run", cwd=tmp_path, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "line 3" not in run.stderr  # a row without a voice speaks with the default voice
    assert "line 4: text is 300 characters; an item takes at most 200" in run.stderr
    assert "line 5: seed: input should be a valid integer" in run.stderr
    assert "Traceback" not in run.stderr
    # Once the rows are well-formed, the voices are checked against the server.
    rows = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join([rows[0], rows[1], rows[5]]) + "\n", encoding="utf-8")
    run = _cli(str(manifest), "--server", server.url, "--dry-run", cwd=tmp_path, timeout=60)
    assert run.returncode == 2 and "line 3: voice 'no_such_voice' is not on" in run.stderr, run.stderr


def test_an_id_text_manifest_speaks_and_skip_invalid_reports_bad_rows_by_id(
    server: Server, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,text\nhello,你好。\nthanks,Thank you.\nlong," + "长" * 300 + "\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    run = _cli(str(manifest), "--server", server.url, "--out", str(out), cwd=tmp_path)
    assert run.returncode == 2 and "line 4: text is 300 characters" in run.stderr, run.stderr
    assert not out.exists()  # without --skip-invalid nothing runs until the file is right
    run = _cli(str(manifest), "--server", server.url, "--out", str(out), "--skip-invalid", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    results = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert {k: r["status"] for k, r in results.items()} == {
        "hello": "succeeded", "thanks": "succeeded", "long": "invalid"
    }  # fmt: skip
    assert results["long"]["line"] == 4 and "300 characters" in results["long"]["error"]
    for name in ("hello", "thanks"):
        audio, rate = soundfile.read(out / f"{name}.wav")
        assert rate == 24000 and len(audio) > rate // 4


def test_a_killed_run_resumes_with_nothing_lost_or_made_twice(server: Server, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "m.csv", _voice(server), seed=101)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    before = _outputs(server.home)
    cli = subprocess.Popen(
        _batch(str(manifest), "--server", server.url, "--out", str(out), "--concurrency", "2"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cli.poll() is None:
        if results.is_file() and len(results.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert cli.poll() is None, "the run ended before it could be killed"
    cli.send_signal(signal.SIGKILL)
    cli.wait(10)
    finished = [json.loads(line) for line in results.read_text().splitlines()]
    assert 3 <= len(finished) < len(TEXTS)
    for r in finished:  # every recorded item is complete on disk
        assert r["status"] == "succeeded" and soundfile.info(out / r["path"]).duration > 0.3

    again = _cli(
        str(manifest),
        "--server",
        server.url,
        "--out",
        str(out),
        "--concurrency",
        "2",
        cwd=tmp_path,
        timeout=180,
    )
    assert (
        again.returncode == 2 and "--resume" in again.stderr
    )  # an earlier run's results are not overwritten
    resumed = _cli(
        str(manifest),
        "--server",
        server.url,
        "--out",
        str(out),
        "--concurrency",
        "2",
        "--resume",
        cwd=tmp_path,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stderr.strip().splitlines()[-1])
    assert summary["skipped"] == len(finished) and summary["succeeded"] == len(TEXTS) - len(finished)
    final = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["id"] for r in final) == [f"clip-{i:02d}" for i in range(len(TEXTS))]  # each once
    assert all(r["status"] == "succeeded" and r["attempts"] >= 1 and r["error"] is None for r in final)
    for r in final:
        assert soundfile.info(out / f"{r['id']}.wav").duration == pytest.approx(r["duration"], abs=0.01)
    assert not list(out.glob(".*.part"))
    # The server made each clip once: items in flight at the kill came back by Idempotency-Key.
    assert len(_outputs(server.home) - before) == len(TEXTS)


def test_a_busy_server_makes_items_wait_not_fail(start_server: Callable[..., Server], tmp_path: Path) -> None:
    busy = start_server(VOICEFORGE_WORKERS="1", VOICEFORGE_MAX_QUEUE="1")
    manifest = _manifest(tmp_path / "m.csv", _voice(busy), n=6, seed=201)
    out = tmp_path / "out"
    run = _cli(
        str(manifest),
        "--server",
        busy.url,
        "--out",
        str(out),
        "--concurrency",
        "6",
        "--attempts",
        "20",
        cwd=tmp_path,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    final = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(final) == 6 and all(r["status"] == "succeeded" for r in final)
    assert sum(r["attempts"] for r in final) > 6  # some were refused (503) and sent again
    assert "503" in busy.log or "overloaded" in busy.log


def test_sdk_round_trip_and_idempotent_creates(server: Server) -> None:
    voice = _voice(server)
    with Client(server.url, retry=RetryPolicy(attempts=3)) as client:
        first = client.tts("你好，这是一次测试。", voice=voice, seed=77, idempotency_key="sdk-tts-1")
        again = client.tts("你好，这是一次测试。", voice=voice, seed=77, idempotency_key="sdk-tts-1")
        assert again.task_id == first.task_id and again.audio_url == first.audio_url
        with pytest.raises(errors.Conflict, match="different request"):
            client.tts("另一句话。", voice=voice, idempotency_key="sdk-tts-1")
        wav = client.download(first.audio_url)
        assert wav[:4] == b"RIFF"
        heard = client.transcribe(wav, language="zh")
        # a round trip, not a quality judge: most characters come back (a clone can blur a tone)
        assert heard.language == "zh" and cer("你好，这是一次测试。", heard.text) < 0.5 and heard.segments
        upload = client.upload(wav, filename="hello.wav")
        assert upload.status == "complete" and upload.size == len(wav) and upload.duration
        with pytest.raises(errors.InvalidInput, match="at most 200"):
            client.tts("长" * 300, voice=voice)
        with pytest.raises(errors.NotFound):
            client.job("0" * 32)
        job = client.create_job("tts", text="短句。", voice=voice, idempotency_key="sdk-job-1")
        same = client.create_job("tts", text="短句。", voice=voice, idempotency_key="sdk-job-1")
        assert same.id == job.id
        states = [j.status for j in client.job_events(job.id)]
        assert states[-1] == "succeeded"
        done = client.wait_job(job.id)
        assert done.result is not None and done.result["duration"] > 0.2
        pcm = b"".join(client.stream_speech("Hello there.", voice=voice, format="pcm"))
        assert len(pcm) > 24000  # over half a second of 16-bit audio
    with httpx.Client(base_url=server.url) as raw:
        replay = raw.post("/tts", json={"text": "你好，这是一次测试。", "voice_id": voice, "seed": 77},
                          headers={"Idempotency-Key": "sdk-tts-1"})  # fmt: skip
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"

    async def concurrently() -> list[str]:
        import asyncio

        async with AsyncClient(server.url) as client:
            results = await asyncio.gather(
                *(client.tts(t, voice=voice, seed=301) for t in ("一。", "二。", "三。"))
            )
        return [r.task_id for r in results]

    import asyncio

    assert len(set(asyncio.run(concurrently()))) == 3


def test_a_retried_voice_create_returns_the_same_voice(server: Server, shared_audio: Path) -> None:
    recording = shared_audio / "en_prompt_f5.wav"
    with Client(server.url) as client:
        first = client.create_voice("Idempotent Ida", recording, consent=True, idempotency_key="voice-key-1")
        again = client.create_voice("Idempotent Ida", recording, consent=True, idempotency_key="voice-key-1")
        assert again.id == first.id  # not a 409 for the name the first request took, not a second voice
        assert sum(v.name == "Idempotent Ida" for v in client.voices()) == 1
        with pytest.raises(errors.Conflict, match="different request"):
            client.create_voice("Another Name", recording, consent=True, idempotency_key="voice-key-1")
        with pytest.raises(errors.Conflict):  # without a key, the taken name is a clash as before
            client.create_voice("Idempotent Ida", recording, consent=True)
        client.delete_voice(first.id)


def test_local_runs_without_a_server(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"id": "a", "text": "本地合成。"}\n{"id": "b", "text": "Local synthesis.", "format": "flac"}\n',
        encoding="utf-8",
    )
    run = _cli(str(manifest), "--local", "--out", str(tmp_path / "o"), "--voice", "jf_alpha", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert soundfile.info(tmp_path / "o" / "a.wav").duration > 0.5
    assert soundfile.info(tmp_path / "o" / "b.flac").duration > 0.5
