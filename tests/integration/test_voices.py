"""/v1/voices end to end against a real server: enroll from a file and from an upload, list, get
by id or name, rename, speak with the saved voice through POST /tts, preview, export and import,
delete; refusals (a 1 s recording, name clashes, path tricks). Enrollment takes ~15–20 s on two
cores, so this module enrolls exactly twice."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile

from tests.integration.conftest import Server, launch
from voiceforge.asr.scoring import cer, wer

pytestmark = pytest.mark.slow

F5 = "en_prompt_f5.wav"
ZH = "zh_prompt_cosyvoice.wav"
SHORT = "en_ljspeech_LJ001-0002_short.wav"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """With the cloning warm-up of a real deployment (the shared test server turns it off)."""
    srv = launch(tmp_path_factory.mktemp("voices"), {"VOICEFORGE_WARM_CLONING": "1"})
    yield srv
    srv.stop()


def test_the_server_warms_cloning_up_in_the_background(server: Server) -> None:
    deadline = time.monotonic() + 120
    while "cloning warmed up in" not in server.log:
        assert time.monotonic() < deadline, server.log[-2000:]
        time.sleep(0.5)
    assert "cloning warm-up failed" not in server.log


@pytest.fixture(scope="module")
def nature(
    server: Server, shared_audio: Path, manifest: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Enrollment 1 of 2: a saved voice from a multipart file with its transcript typed in."""
    form = {"name": "Nature", "transcript": manifest[F5]["transcript"], "language": "en", "consent": "true"}
    with server.client() as c:
        r = c.post("/v1/voices", data=form, files={"file": ("x.bin", (shared_audio / F5).read_bytes())})
    assert r.status_code == 201, r.text
    yield r.json()


def _transcribe_output(c: httpx.Client, audio: bytes) -> str:
    """What the bundled Whisper hears in ``audio``, through the server's own upload API."""
    upload_id = c.post("/v1/uploads", json={"size": len(audio)}).json()["upload_id"]
    assert c.put(f"/v1/uploads/{upload_id}", content=audio).status_code == 200
    assert c.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
    heard = c.post(f"/v1/uploads/{upload_id}/transcribe", json={"language": "en"})
    assert heard.status_code == 200, heard.text
    text: str = heard.json()["transcript"]
    return text


def test_enrolled_voice_record(nature: dict[str, Any], manifest: dict[str, dict[str, Any]]) -> None:
    assert nature["id"].startswith("voice_") and nature["kind"] == "saved" and nature["name"] == "Nature"
    assert nature["language"] == "en" and nature["consent"] is True and nature["engine"] == "kokoro"
    assert nature["transcript"] == manifest[F5]["transcript"] and nature["transcript_source"] == "given"
    assert 0 < nature["stock_sim"] <= 1 and 0 < nature["calibration_sim"] <= 1 and nature["conversion"]
    assert nature["created_at"] and nature["prompt_url"] == f"/v1/voices/{nature['id']}/prompt"
    assert nature["consent_by"] == "anonymous" and nature["consent_at"]  # who affirmed it, and when


def test_a_voice_is_not_saved_without_consent(server: Server, shared_audio: Path) -> None:
    with server.client() as c:
        for form in ({"name": "Unasked"}, {"name": "Unasked", "consent": "false"}):
            r = c.post("/v1/voices", data=form, files={"file": ("x.wav", (shared_audio / F5).read_bytes())})
            assert r.status_code == 400, r.text
            assert "consent" in r.json()["error"] and "consent=true" in r.json()["error"]
        assert c.get("/v1/voices/Unasked").status_code == 404
        assert "enrolling voice 'Unasked'" not in server.log  # refused before the enrollment's CPU


def test_list_get_and_preview(server: Server, nature: dict[str, Any], shared_audio: Path) -> None:
    with server.client() as c:
        voices = c.get("/v1/voices").json()["voices"]
        kinds = {v["kind"] for v in voices}
        assert kinds == {"stock", "saved"}
        assert nature["id"] in {v["id"] for v in voices if v["kind"] == "saved"}
        stock = next(v for v in voices if v["kind"] == "stock")
        assert c.get(f"/v1/voices/{stock['id']}").json()["kind"] == "stock"
        assert c.get(f"/v1/voices/{nature['id']}").json()["name"] == "Nature"
        assert c.get("/v1/voices/nATURE").json()["id"] == nature["id"]  # names are case-insensitive
        prompt = c.get(nature["prompt_url"])
        assert prompt.status_code == 200 and prompt.headers["content-type"] == "audio/wav"
        heard, rate = soundfile.read(io.BytesIO(prompt.content), dtype="int16")  # stored re-encoded
        original, original_rate = soundfile.read(shared_audio / F5, dtype="int16")
        assert rate == original_rate and abs(heard.astype(int) - original).max() <= 1
        assert c.delete(f"/v1/voices/{stock['id']}").status_code == 400  # stock voices stay


def test_saved_voice_speaks_through_tts(server: Server, nature: dict[str, Any]) -> None:
    text = "The garden is quiet in the early morning."
    with server.client() as c:
        by_id = c.post("/tts", json={"text": text, "voice_id": nature["id"], "seed": 5})
        assert by_id.status_code == 200, by_id.text
        by_name = c.post("/tts", json={"text": text, "voice_id": "Nature", "seed": 5}).json()
        assert by_name["cached"] is True and by_name["task_id"] == by_id.json()["task_id"]
        audio = c.get(by_id.json()["audio_url"]).content
        samples, rate = soundfile.read(io.BytesIO(audio))
        assert rate == 24000 and 1.0 < len(samples) / rate < 8.0
        assert wer(text, _transcribe_output(c, audio)) <= 0.25


def test_rename_patch_clash_export_import_delete(server: Server, nature: dict[str, Any]) -> None:
    with server.client() as c:
        r = c.patch(
            f"/v1/voices/{nature['id']}",
            json={"name": "Mother Nature", "transcript": "Some call me nature.", "consent": False},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["transcript"], r.json()["consent"]) == (
            "Mother Nature",
            "Some call me nature.",
            False,
        )
        assert (r.json()["consent_by"], r.json()["consent_at"]) == (None, None)  # withdrawn
        withdrawn = c.get(f"/v1/voices/{nature['id']}/export").content
        r = c.post("/v1/voices/import", files={"file": ("v.zip", withdrawn)}, data={"name": "No consent"})
        assert r.status_code == 400 and "consent" in r.json()["error"], r.text
        r = c.patch(f"/v1/voices/{nature['id']}", json={"consent": True})  # affirmed again, by this caller
        assert (r.json()["consent"], r.json()["consent_by"]) == (True, "anonymous"), r.text
        # A clash is refused before any enrollment work, whatever the case of the name.
        clash = c.post("/v1/voices", data={"name": "mother nature"}, files={"file": ("a", b"RIFF")})
        assert clash.status_code == 409 and "already exists" in clash.json()["error"]
        assert c.patch(f"/v1/voices/{nature['id']}", json={"name": "voice_x"}).status_code == 400
        assert c.patch(f"/v1/voices/{nature['id']}", json={"owner": "x"}).status_code == 400

        exported = c.get(f"/v1/voices/{nature['id']}/export")
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
        assert f'filename="{nature["id"]}.zip"' in exported.headers["content-disposition"]
        assert set(zipfile.ZipFile(io.BytesIO(exported.content)).namelist()) == {
            "voice.json",
            "profile.npz",
            "prompt.wav",
        }
        zip_file = {"file": ("voice.zip", exported.content, "application/zip")}
        same = c.post("/v1/voices/import", files=zip_file)
        assert same.status_code == 409 and "another name" in same.json()["error"]
        imported = c.post("/v1/voices/import", files=zip_file, data={"name": "Imported"})
        assert imported.status_code == 201, imported.text
        copy = imported.json()
        assert copy["id"] != nature["id"] and copy["transcript"] == "Some call me nature."
        spoken = c.post("/tts", json={"text": "Imported voices speak too.", "voice_id": "Imported"})
        assert spoken.status_code == 200, spoken.text
        broken = c.post("/v1/voices/import", files={"file": ("v.zip", b"PK\x03\x04 not a zip")})
        assert broken.status_code == 400

        assert c.delete(f"/v1/voices/{copy['id']}").status_code == 204
        assert c.get(f"/v1/voices/{copy['id']}").status_code == 404
        assert c.delete(f"/v1/voices/{copy['id']}").status_code == 404
        assert not (server.home / "data" / "voices" / copy["id"]).exists()


def test_voice_from_an_upload_is_transcribed_by_whisper(
    server: Server, shared_audio: Path, manifest: dict[str, dict[str, Any]]
) -> None:
    """Enrollment 2 of 2: from a finished resumable upload, with no transcript given."""
    data = (shared_audio / ZH).read_bytes()
    with server.client() as c:
        upload = c.post("/v1/uploads", json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        upload_id = upload.json()["upload_id"]
        c.put(f"/v1/uploads/{upload_id}", content=data)
        assert c.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
        r = c.post("/v1/voices", json={"name": "希望", "upload_id": upload_id, "consent": True})
        assert r.status_code == 201, r.text
        voice = r.json()
        assert voice["transcript_source"] == "asr" and voice["language"] == "zh"
        # Whisper base on the trimmed prompt hears 希望 as 洗澡 and 呦 as 用 (3 of 14 characters).
        assert cer(manifest[ZH]["transcript"], voice["transcript"]) <= 0.25, voice["transcript"]
        spoken = c.post("/tts", json={"text": "收到，我们明天见。", "voice_id": voice["id"]})
        assert spoken.status_code == 200, spoken.text


def test_one_second_recording_is_refused_by_the_prompt_check(server: Server, shared_audio: Path) -> None:
    samples, rate = soundfile.read(shared_audio / SHORT)
    buf = io.BytesIO()
    soundfile.write(buf, samples[:rate], rate, format="WAV")
    with server.client() as c:
        form = {"name": "Too short", "consent": "true"}
        r = c.post("/v1/voices", data=form, files={"file": ("a.wav", buf.getvalue())})
        assert r.status_code == 400 and "at least 3 s is needed" in r.json()["error"], r.text
        assert c.get("/v1/voices/Too short").status_code == 404


def test_bad_requests_and_path_tricks(server: Server) -> None:
    with server.client() as c:
        neither = c.post("/v1/voices", data={"name": "Nobody"})
        assert neither.status_code == 400 and "one of them" in neither.json()["error"]
        both = c.post(
            "/v1/voices",
            data={"name": "Both", "upload_id": "up_" + "0" * 32},
            files={"file": ("a.wav", b"RIFF")},
        )
        assert both.status_code == 400
        assert c.post("/v1/voices", json={"upload_id": "up_" + "0" * 32}).status_code == 400  # no name
        for upload_id in ("../../etc/passwd", "up_" + "0" * 32, "/etc/passwd"):
            r = c.post("/v1/voices", json={"name": "Sneaky", "upload_id": upload_id})
            assert r.status_code == 404, r.text
        assert c.post("/v1/voices", json={"name": "X", "upload_id": "u", "language": "fr"}).status_code == 400
        for ref in ("..%2F..%2Fetc%2Fpasswd", "..", "voice_0123456789abcdef", "voice_..%2F..%2Fx", "%00"):
            for method, path in (
                ("GET", f"/v1/voices/{ref}"),
                ("PATCH", f"/v1/voices/{ref}"),
                ("DELETE", f"/v1/voices/{ref}"),
                ("GET", f"/v1/voices/{ref}/prompt"),
                ("GET", f"/v1/voices/{ref}/export"),
            ):
                r = c.request(method, path, json={"name": "x"} if method == "PATCH" else None)
                assert r.status_code in (400, 404), (method, path, r.status_code)
    assert (Path("/etc/passwd")).is_file()  # untouched, and nothing new outside data/
    assert not [p for p in server.home.iterdir() if p.name not in ("data", "logs", "outputs", "stdout.log")]


def test_a_restart_warms_cloning_up_again(server: Server) -> None:
    """The engine reload drops the enroller's caches; the restart starts the warm-up again."""
    warmed = server.log.count("cloning warmed up in")
    with server.client() as c:
        r = c.post("/admin/restart", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
    deadline = time.monotonic() + 120
    while server.log.count("cloning warmed up in") == warmed:
        assert time.monotonic() < deadline, server.log[-2000:]
        time.sleep(0.5)
