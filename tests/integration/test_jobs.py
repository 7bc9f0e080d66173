"""/v1/jobs end to end against a real server: submit, poll, events, cancel, idempotency, webhooks,
batch, transcription, and a job that survives the server being killed."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile

from tests.integration.conftest import Server, launch
from tests.integration.jobs import finished, wait_for
from voiceforge.asr.scoring import cer, wer
from voiceforge.jobs.webhooks import verify

pytestmark = pytest.mark.slow

SECRET = "test-webhook-secret"
# Eight short sentences: long enough to cancel or kill mid-way, short enough to keep the tests quick.
WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
LONG = " ".join(f"Sentence {w} is short." for w in WORDS)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(
        tmp_path_factory.mktemp("jobs"),
        {"VOICEFORGE_WEBHOOK_SECRET": SECRET, "VOICEFORGE_WEBHOOK_ALLOW_PRIVATE": "1"},
    )
    yield server
    server.stop()


def submit(c: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = c.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    return job


def events(c: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Read the whole SSE stream (it ends after the final state)."""
    got: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with c.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                got.append((kind, json.loads(line.split(":", 1)[1])))
    return got


def test_tts_job_runs_to_success_and_its_audio_plays(srv: Server) -> None:
    text = "A job speaks long texts. This one has two sentences."
    with srv.client() as c:
        job = submit(c, {"kind": "tts", "text": text, "voice": "jf_alpha", "seed": 5, "format": "flac"})
        assert job["status"] == "queued" and job["progress"] == 0 and job["result"] is None
        done = wait_for(c, job["id"], finished)
        assert done["status"] == "succeeded", done
        assert done["progress"] == 1 and done["attempts"] == 1 and done["error"] is None
        assert done["started_at"] and done["finished_at"] and done["finished_at"] >= done["started_at"]
        result = done["result"]
        assert result["audio_url"] == f"{srv.url}/outputs/{job['id']}.flac"
        audio = c.get(result["audio_url"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
        samples, rate = soundfile.read(io.BytesIO(audio.content))
        assert rate == 24000 and len(samples) / rate == pytest.approx(result["duration"], abs=0.01)


def test_events_report_rising_progress_and_end_with_the_final_state(srv: Server) -> None:
    text = "First sentence here. Second sentence here. Third sentence here. Fourth and last."
    with srv.client() as c:
        job = submit(c, {"kind": "tts", "text": text})
        stream = events(c, job["id"])
        assert stream[-1][0] == "state" and stream[-1][1]["status"] == "succeeded"
        progress = [e["progress"] for kind, e in stream if kind == "progress"]
        assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] > progress[0]
        assert any(e["stage"] == "synthesising 2/4" for _, e in stream)
        # A client that connects late gets the current (final) state at once, then the end.
        late = events(c, job["id"])
        assert [(kind, e["status"]) for kind, e in late] == [("state", "succeeded")]


def test_bad_requests_are_400_naming_the_field_and_create_no_job(srv: Server) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "tts", "text": ""}, "text"),
        ({"kind": "tts", "text": "hi", "seed": 0}, "seed"),
        ({"kind": "tts", "text": "hi", "voice": "nobody"}, "unknown voice 'nobody'"),
        ({"kind": "tts", "text": "hi", "instruct": "用四川话说"}, "cannot speak a dialect"),
        ({"kind": "batch", "items": [{"text": "hi", "instruct": "用四川话说"}]}, "items[0]: engine kokoro"),
        ({"kind": "longform", "text": "一句。两句。", "instruct": "用粤语说"}, "cannot speak a dialect"),
        ({"kind": "tts", "text": "Привет"}, "script that cannot be spoken"),
        ({"kind": "batch", "items": [{"text": "ok"}, {"text": "hi", "speed": 9}]}, "items.1.speed"),
        (
            {"kind": "batch", "items": [{"text": "ok"}, {"text": "hi", "voice": "x"}]},
            "items[1]: unknown voice",
        ),
        ({"kind": "transcription", "audio": base64.b64encode(b"not audio").decode()}, "audio:"),
        ({"kind": "transcription", "audio": "QUFB", "language": "klingon"}, "language"),
        ({"kind": "tts", "text": "hi", "webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"kind": "karaoke"}, "kind"),
    ]
    with srv.client() as c:
        before = len(c.get("/v1/jobs", params={"limit": 100}).json()["data"])
        for body, says in cases:
            r = c.post("/v1/jobs", json=body)
            assert r.status_code == 400, (body, r.text)
            assert says in r.json()["error"], (body, r.json())
        assert len(c.get("/v1/jobs", params={"limit": 100}).json()["data"]) == before


def test_cancel_a_queued_job_at_once_and_a_running_one_after_its_sentence(srv: Server) -> None:
    with srv.client() as c:
        running = submit(c, {"kind": "tts", "text": LONG, "seed": 11})
        waiting = submit(c, {"kind": "tts", "text": LONG, "seed": 12})  # behind it: one job at a time
        r = c.delete(f"/v1/jobs/{waiting['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text

        wait_for(c, running["id"], lambda j: j["progress"] > 0)
        r = c.delete(f"/v1/jobs/{running['id']}")
        assert r.status_code == 202 and r.json()["cancel_requested"] is True, r.text
        done = wait_for(c, running["id"], finished, timeout=30)
        assert done["status"] == "cancelled" and done["progress"] < 1 and done["result"] is None
        assert c.get(f"/outputs/{running['id']}.wav").status_code == 404  # no partial audio kept
        again = c.delete(f"/v1/jobs/{running['id']}")
        assert again.status_code == 409 and "already cancelled" in again.json()["error"]
        assert c.get(f"/v1/jobs/{waiting['id']}").json()["started_at"] is None
    assert "cancelled after" in srv.log


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_body(srv: Server) -> None:
    body = {"kind": "tts", "text": "Submitted twice, made once."}
    key = f"order-{time.time_ns()}"
    with srv.client() as c:
        first = submit(c, body, **{"Idempotency-Key": key})
        r = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 202 and r.json()["id"] == first["id"]
        assert r.headers["idempotent-replayed"] == "true"
        clash = c.post("/v1/jobs", json={**body, "seed": 2}, headers={"Idempotency-Key": key})
        assert clash.status_code == 409 and first["id"] in clash.json()["error"]
        assert submit(c, body)["id"] != first["id"]  # no key: a new job
        wait_for(c, first["id"], finished)


class _Receiver(BaseHTTPRequestHandler):
    calls: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.put((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_is_delivered_with_a_valid_signature(srv: Server) -> None:
    calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"calls": calls})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        with srv.client() as c:
            job = submit(c, {"kind": "tts", "text": "Call me back when done.", "webhook_url": url})
            headers, body = calls.get(timeout=90)
        payload = json.loads(body)
        assert payload["id"] == job["id"] and payload["status"] == "succeeded"
        assert payload["result"]["audio_url"].startswith(srv.url)
        assert verify(SECRET, body, headers["X-Voiceforge-Signature"])
        assert not verify("another secret", body, headers["X-Voiceforge-Signature"])
        assert abs(int(headers["X-Voiceforge-Timestamp"]) - time.time()) < 120
        assert headers["X-Voiceforge-Event"] == "job.succeeded"
        time.sleep(1)
        assert calls.empty()  # once
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_batch_keeps_going_when_one_item_fails(srv: Server) -> None:
    """A saved voice deleted after submit fails only its own item."""
    from tests.test_library import WAV, make_profile
    from voiceforge.db import Database
    from voiceforge.voices.library import VoiceLibrary

    db = Database(srv.home / "data")
    library = VoiceLibrary(srv.home / "data", db=db)
    voice = library.create(f"Gone{time.time_ns()}", prompt=WAV, profile=make_profile(), consent=True)
    items = [
        {"text": "The first item is fine."},
        {"text": "The second item is fine too.", "format": "mp3"},
        {"text": "This voice will be gone.", "voice": voice.id},
    ]
    try:
        with srv.client() as c:
            job = submit(c, {"kind": "batch", "items": items})
            library.delete(voice.id)
            done = wait_for(c, job["id"], finished)
            assert done["status"] == "succeeded", done
            result = done["result"]
            assert (result["total"], result["succeeded"], result["failed"]) == (3, 2, 1)
            first, second, third = result["items"]
            assert first["status"] == second["status"] == "succeeded"
            assert second["audio_url"].endswith(f"{job['id']}-1.mp3")
            assert c.get(second["audio_url"]).headers["content-type"] == "audio/mpeg"
            assert third["status"] == "failed" and "unknown voice" in third["error"]["message"]
    finally:
        library.close()
        db.close()


def test_transcription_jobs_from_inline_audio_and_from_an_upload(
    srv: Server, shared_audio: Path, manifest: dict[str, dict[str, Any]]
) -> None:
    english, chinese = "en_prompt_f5.wav", "zh_prompt_cosyvoice.wav"
    with srv.client() as c:
        audio = base64.b64encode((shared_audio / english).read_bytes()).decode()
        inline = submit(c, {"kind": "transcription", "audio": audio, "language": "en"})
        data = (shared_audio / chinese).read_bytes()
        upload = c.post("/v1/uploads", json={"size": len(data)}).json()
        assert (
            c.put(f"/v1/uploads/{upload['upload_id']}", content=data, params={"offset": 0}).status_code == 200
        )
        assert c.post(f"/v1/uploads/{upload['upload_id']}/complete").status_code == 200
        uploaded = submit(c, {"kind": "transcription", "upload_id": upload["upload_id"]})
        c.delete(f"/v1/uploads/{upload['upload_id']}")  # the job has its own copy
        for job, clip in ((inline, english), (uploaded, chinese)):
            done = wait_for(c, job["id"], finished, timeout=120)
            assert done["status"] == "succeeded", done
            result = done["result"]
            assert result["language"] == clip[:2] and result["segments"]
            score = cer if clip.startswith("zh") else wer
            assert score(str(manifest[clip]["transcript"]), result["text"]) < 0.25, result["text"]
        for body, says in (
            ({"kind": "transcription", "upload_id": "nope"}, "upload_id:"),
            ({"kind": "transcription", "upload_id": upload["upload_id"], "audio": audio}, "exactly one"),
            ({"kind": "transcription"}, "exactly one"),
        ):
            r = c.post("/v1/jobs", json=body)
            assert r.status_code == 400 and says in r.json()["error"], r.text


def test_list_filters_and_pages(srv: Server) -> None:
    with srv.client() as c:
        first = c.get("/v1/jobs", params={"limit": 2}).json()
        assert len(first["data"]) == 2 and first["has_more"] is True
        second = c.get("/v1/jobs", params={"limit": 2, "before": first["next_before"]}).json()
        ids = [j["id"] for j in first["data"] + second["data"]]
        assert len(set(ids)) == len(ids)
        created = [j["created_at"] for j in first["data"] + second["data"]]
        assert created == sorted(created, reverse=True)
        cancelled = c.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]
        assert cancelled and all(j["status"] == "cancelled" for j in cancelled)
        assert c.get("/v1/jobs", params={"status": "nonsense"}).status_code == 400
        assert c.get("/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404
        assert c.get("/v1/jobs/../../etc/passwd").status_code == 404


def test_a_running_job_survives_a_stop_and_a_kill(start_server: Callable[..., Server]) -> None:
    """SIGTERM: the job stops after its sentence, goes back to the queue and its event stream ends
    with a goodbye. SIGKILL: the next start finds it running and runs it again."""
    first = start_server(VOICEFORGE_WEBHOOK_SECRET=SECRET)
    with first.client() as c:
        # Webhooks to private addresses are refused unless the operator allows them.
        r = c.post("/v1/jobs", json={"kind": "tts", "text": "hi", "webhook_url": "http://127.0.0.1:9/x"})
        assert r.status_code == 400 and "webhook_url" in r.json()["error"]
        job = submit(c, {"kind": "tts", "text": LONG, "seed": 21})
        wait_for(c, job["id"], lambda j: j["progress"] > 0)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            stream = pool.submit(events, c, job["id"])
            time.sleep(0.5)
            first.stop(signal.SIGTERM)
            kind, farewell = stream.result(timeout=30)[-1]
            assert (kind, farewell["code"]) == ("error", "shutting_down")
    assert "job stopped with the server" in first.log and "Application shutdown complete" in first.log
    assert " ERROR " not in first.log

    second = start_server(home=first.home, VOICEFORGE_WEBHOOK_SECRET=SECRET)
    with second.client() as c:
        requeued = wait_for(c, job["id"], lambda j: j["status"] == "running" and j["progress"] > 0)
        assert requeued["attempts"] == 1  # a stop does not count as a failed attempt
    second.stop(signal.SIGKILL)

    third = start_server(home=first.home, VOICEFORGE_WEBHOOK_SECRET=SECRET)
    with third.client() as c:
        done = wait_for(c, job["id"], finished)
        assert done["status"] == "succeeded" and done["attempts"] == 2, done
        assert c.get(done["result"]["audio_url"]).status_code == 200
    assert f"[{job['id']}] tts job resumed after a restart" in third.log


def test_a_busy_engine_queues_jobs_and_only_a_full_queue_is_503(start_server: Callable[..., Server]) -> None:
    srv = start_server(VOICEFORGE_MAX_QUEUED_JOBS="2", VOICEFORGE_WORKERS="1", VOICEFORGE_MAX_QUEUE="1")
    with srv.client() as c:
        answers = [
            c.post("/v1/jobs", json={"kind": "tts", "text": f"Job {n}.", "seed": n}) for n in range(1, 6)
        ]
        accepted = [r.json()["id"] for r in answers if r.status_code == 202]
        refused = [r for r in answers if r.status_code != 202]
        assert 2 <= len(accepted) <= 3 and refused, [r.status_code for r in answers]
        for r in refused:
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert "jobs are already waiting" in r.json()["error"]
        for job_id in accepted:
            assert wait_for(c, job_id, finished)["status"] == "succeeded"
