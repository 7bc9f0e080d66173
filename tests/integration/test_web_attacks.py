"""What a hostile web page or file can do to a real server on loopback (auth off, the web UI on).

Stored XSS through a voice import, files from user data rendered as pages, a page without a
Content-Security-Policy, forged log lines, DNS rebinding and cross-site requests (issue 14, items
1, 6 and 7). Each answer is a 4xx that names the value and the fix, and nothing a browser could run
as a page ever lands in the data folder or leaves the server as one.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import soundfile

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

SCRIPT = b"<html><script>fetch('/admin/restart', {method: 'POST'})</script></html>"
FORGED = "2026-01-01 00:00:00,000 ERROR voiceforge.server FORGED"
USER_FILE_TYPES = ("audio/", "text/vtt", "application/x-subrip", "application/octet-stream")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = launch(tmp_path_factory.mktemp("web-attacks"), {"VOICEFORGE_UI": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def voice(srv: Server, shared_audio: Path) -> dict[str, Any]:
    """A saved voice, enrolled from a real recording sent as FLAC."""
    samples, rate = soundfile.read(shared_audio / "en_prompt_f5.wav")
    flac = io.BytesIO()
    soundfile.write(flac, samples, rate, format="FLAC")
    data = {"name": "web-attacks", "transcript": "Some call me nature, others call me mother nature."}
    data["consent"] = "true"
    with srv.client() as c:
        r = c.post("/v1/voices", files={"file": ("clip.html", flac.getvalue(), "text/html")}, data=data)
    assert r.status_code == 201, r.text
    saved: dict[str, Any] = r.json()
    return saved


def rezip(export: bytes, *, drop: str, add: dict[str, bytes], doc: dict[str, Any] | None = None) -> bytes:
    """``export`` with the member ``drop`` replaced by ``add`` (and voice.json by ``doc``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(export)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename == drop:
                continue
            if info.filename == "voice.json" and doc is not None:
                dst.writestr("voice.json", json.dumps(doc))
            else:
                dst.writestr(info.filename, src.read(info))
        for name, data in add.items():
            dst.writestr(name, data)
    return out.getvalue()


def voice_files(srv: Server) -> list[Path]:
    return [p for p in (srv.home / "data" / "voices").rglob("*") if p.is_file()]


def assert_user_file(headers: Any, *, inline: bool = False) -> None:
    """What a file from user data carries: its real (never an HTML) type, nosniff, and
    ``attachment`` unless an <audio> element asked for it."""
    kind = headers["content-type"]
    assert kind.startswith(USER_FILE_TYPES), kind
    assert headers["x-content-type-options"] == "nosniff"
    disposition = headers["content-disposition"]
    assert disposition.startswith("inline" if inline else "attachment"), disposition
    assert "sandbox" in headers["content-security-policy"]


# -- item 1: stored XSS through voice import -----------------------------------------------------
def test_voice_creation_stores_the_prompt_as_wav(srv: Server, voice: dict[str, Any]) -> None:
    folder = srv.home / "data" / "voices" / voice["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["profile.npz", "prompt.wav"]


def test_a_hostile_import_never_puts_html_on_disk(srv: Server, voice: dict[str, Any]) -> None:
    with srv.client() as c:
        export = c.get(f"/v1/voices/{voice['id']}/export").content
        with zipfile.ZipFile(io.BytesIO(export)) as z:
            doc = json.loads(z.read("voice.json"))
            assert "prompt.wav" in z.namelist()
            wav = z.read("prompt.wav")
        hostile = {**doc, "prompt_format": "html", "name": "hostile"}

        # a script where the recording should be: refused, nothing stored
        bad = rezip(export, drop="prompt.wav", add={"prompt.html": SCRIPT}, doc=hostile)
        r = c.post("/v1/voices/import", files={"file": ("v.zip", bad, "application/zip")})
        assert r.status_code == 400, r.text
        assert "prompt.html" in r.json()["error"] and "audio" in r.json()["error"], r.text

        # real audio under an HTML name: stored re-encoded as prompt.wav, the name forgotten
        disguised = rezip(export, drop="prompt.wav", add={"prompt.html": wav}, doc=hostile)
        r = c.post("/v1/voices/import", files={"file": ("v.zip", disguised, "application/zip")})
        assert r.status_code == 201, r.text
        imported = r.json()
        folder = srv.home / "data" / "voices" / imported["id"]
        assert sorted(p.name for p in folder.iterdir()) == ["profile.npz", "prompt.wav"]
        r = c.get(f"/v1/voices/{imported['id']}/prompt")
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        assert_user_file(r.headers)

        # the round trip: its export holds prompt.wav and imports again
        again = c.get(f"/v1/voices/{imported['id']}/export").content
        with zipfile.ZipFile(io.BytesIO(again)) as z:
            assert sorted(z.namelist()) == ["profile.npz", "prompt.wav", "voice.json"]
        r = c.post(
            "/v1/voices/import", files={"file": ("v.zip", again, "application/zip")}, data={"name": "again"}
        )
        assert r.status_code == 201, r.text
    assert all(p.suffix in (".wav", ".npz") for p in voice_files(srv)), voice_files(srv)


def test_files_from_user_data_are_never_served_as_pages(srv: Server, voice: dict[str, Any]) -> None:
    prompt = srv.home / "data" / "voices" / voice["id"] / "prompt.wav"
    # A file an older version stored from a hostile import: still served as a download, not a page.
    planted = prompt.with_name("prompt.html")
    planted.write_bytes(SCRIPT)
    try:
        with srv.client() as c:
            r = c.post("/tts", json={"text": "Hello there.", "format": "wav"})
            assert r.status_code == 200, r.text
            output = r.json()["audio_url"].split("/outputs/")[1]
            r = c.get(f"/outputs/{output}")
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            assert_user_file(r.headers)
            r = c.get(f"/outputs/{output}", headers={"Sec-Fetch-Dest": "audio"})
            assert_user_file(r.headers, inline=True)
            r = c.get(f"/v1/voices/{voice['id']}/prompt")
            assert r.headers["content-type"] == "audio/wav"
            assert_user_file(r.headers)
            paths = [prompt, srv.home / "outputs" / output, planted]
            for path in paths:
                r = c.get(f"/ui/gradio_api/file={path}")
                assert r.status_code == 200, (path, r.status_code)
                assert_user_file(r.headers)
                assert not r.headers["content-type"].startswith("text/html")
            r = c.get(f"/ui/gradio_api/file={planted}", headers={"Sec-Fetch-Dest": "audio"})
            assert r.headers["content-type"] == "application/octet-stream"  # never inline HTML
            r = c.get(f"/ui/gradio_api/file={prompt}", headers={"Sec-Fetch-Dest": "audio"})
            assert r.headers["content-type"] == "audio/wav"
            assert_user_file(r.headers, inline=True)
    finally:
        planted.unlink()


@pytest.mark.parametrize("path", ["/ui/", "/m", "/login", "/admin/restart"])
def test_pages_forbid_inline_script_they_did_not_write(srv: Server, path: str) -> None:
    with srv.client() as c:
        r = c.get(path)
    assert r.status_code in (200, 303), (path, r.status_code)
    policy = r.headers["content-security-policy"]
    directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";") if d.strip())
    script = directives["script-src"]
    assert "'unsafe-inline'" not in script, policy
    # Gradio 6 renders gr.HTML templates with Function(); nothing else needs eval
    assert ("'unsafe-eval'" in script) == path.startswith("/ui"), policy
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'", policy
    assert r.headers["x-content-type-options"] == "nosniff"
    if r.headers.get("content-type", "").startswith("text/html"):
        # every inline script the page holds is allowed by its hash, and nothing else is
        for body in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", r.text, re.S):
            assert body.strip() == "" or "'sha256-" in script, policy


# -- item 6: log injection -----------------------------------------------------------------------
def test_control_characters_forge_no_log_line(srv: Server) -> None:
    with srv.client() as c:
        r = c.get("/v1/voices/nobody" + quote(f"\n{FORGED} in a path\x1b[2J"))
        assert r.status_code == 404
        r = c.post("/tts", json={"text": "Hello.", "voice_id": f"nobody\r\n{FORGED} in a voice"})
        assert r.status_code == 400
        r = c.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": f"x\n{FORGED} v"})
        assert r.status_code == 400
    log = (srv.home / "logs" / "runtime.log").read_text(encoding="utf-8")
    assert "FORGED in a path" in log  # the line is there, escaped inside the real record
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith(FORGED)], "a request forged a log line"
    assert not [line for line in lines if "\x1b" in line or "\r" in line]
    assert "\\n" + FORGED + " in a path" in log and "\\r\\n" + FORGED + " in a voice" in log


# -- item 7: DNS rebinding and cross-site requests -----------------------------------------------
def test_a_foreign_host_is_refused(srv: Server) -> None:
    with srv.client() as c:
        r = c.post("/admin/restart", headers={"Host": "attacker.example:7860"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert "attacker.example" in error and "VOICEFORGE_ALLOWED_HOSTS" in error
        r = c.get("/ui/", headers={"Host": "attacker.example"})
        assert r.status_code == 400
        port = srv.url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
            assert c.get("/readyz", headers={"Host": host}).status_code == 200, host
        assert c.get("/admin/restart").json()["state"] == "idle"  # nothing restarted


def test_a_foreign_origin_cannot_change_state(srv: Server, shared_audio: Path) -> None:
    with srv.client() as c:
        r = c.post("/admin/restart", headers={"Origin": "http://attacker.example"})
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert "http://attacker.example" in error and "VOICEFORGE_ALLOWED_ORIGINS" in error
        r = c.post("/v1/voices/import", headers={"Origin": "null"}, files={"file": ("v.zip", b"PK", "x")})
        assert r.status_code == 403, r.text
        r = c.post("/tts", json={"text": "Hi."}, headers={"Origin": "http://localhost:1"})
        assert r.status_code == 403, r.text  # another port is another origin
        assert c.get("/admin/restart").json()["state"] == "idle"
        # the page's own origin, a GET from anywhere, and clients that send no Origin are fine
        r = c.post("/tts", json={"text": "Hi."}, headers={"Origin": srv.url})
        assert r.status_code == 200, r.text
        assert c.get("/v1/voices", headers={"Origin": "http://attacker.example"}).status_code == 200
        assert c.post("/tts", json={"text": "Hi."}).status_code == 200


def test_allowed_hosts_and_origins_are_configurable(start_server: Any) -> None:
    server = start_server(
        VOICEFORGE_ALLOWED_HOSTS="tts.example.com", VOICEFORGE_ALLOWED_ORIGINS="https://app.example.com"
    )
    with server.client() as c:
        assert c.get("/readyz", headers={"Host": "tts.example.com"}).status_code == 200
        assert c.get("/readyz", headers={"Host": "other.example.com"}).status_code == 400
        r = c.post("/tts", json={"text": "Hi."}, headers={"Origin": "https://app.example.com"})
        assert r.status_code == 200, r.text
        # behind a TLS proxy the page's origin is https://<the Host it forwards>
        r = c.post(
            "/tts",
            json={"text": "Hi."},
            headers={"Host": "tts.example.com", "Origin": "https://tts.example.com"},
        )
        assert r.status_code == 200, r.text
        r = c.post("/tts", json={"text": "Hi."}, headers={"Origin": "https://evil.example.com"})
        assert r.status_code == 403
