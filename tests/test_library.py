"""The voice library on real SQLite files and real profiles (random arrays of the real shapes)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from voiceforge.audio.decode import decode
from voiceforge.errors import InvalidInput, NotFound
from voiceforge.voices.library import VoiceLibrary, VoiceRecord
from voiceforge.voices.profile import VoiceProfile

SCRIPT = b"<html><script>fetch('/admin/restart', {method: 'POST'})</script></html>"


def tone(seconds: float = 0.5, rate: int = 16000, fmt: str = "WAV") -> bytes:
    """A real recording's bytes (a quiet 220 Hz tone): the library keeps only audio that decodes."""
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


WAV = tone()


def same_audio(a: bytes, b: bytes) -> bool:
    x, y = decode(a), decode(b)
    return x.sample_rate == y.sample_rate and np.allclose(x.samples, y.samples, atol=3 / 32768)


def make_profile(seed: int = 0, transcript: str = "你好，世界。", language: str = "zh") -> VoiceProfile:
    rng = np.random.default_rng(seed)

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return VoiceProfile(
        engine="kokoro", base_voice="blend:a+b", style=arr(510, 256),
        f0_log_mean=5.0, f0_log_std=0.2, source_f0_log_mean=5.3, source_f0_log_std=0.25,
        envelope_mean=arr(40), envelope_std=np.abs(arr(40)) + 0.1, source_envelope_mean=arr(40),
        source_envelope_std=np.abs(arr(40)) + 0.1, envelope_offset=arr(12), f0_shift=0.01,
        frame_source=arr(60, 39), frame_target=arr(60, 39), frame_weights=arr(40, 39),
        frame_neighbours=4, embedding=arr(256), transcript=transcript, language=language,
        meta={"sim": 0.8},
    )  # fmt: skip


def entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[VoiceLibrary]:
    library = VoiceLibrary(tmp_path / "data")
    yield library
    library.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[VoiceLibrary]:
    library = VoiceLibrary(tmp_path / "other")
    yield library
    library.close()


def add(lib: VoiceLibrary, name: str, seed: int = 0, meta: dict[str, Any] | None = None) -> VoiceRecord:
    return lib.create(name, prompt=tone(0.5 + seed / 100), profile=make_profile(seed), consent=True,
                      meta=meta)  # fmt: skip


def test_crud_round_trip(lib: VoiceLibrary, tmp_path: Path) -> None:
    profile = make_profile(1)
    rec = lib.create("  Alice  ", prompt=WAV, profile=profile, consent=True,
                     meta={"sim": 0.81, "duration_s": 6.2, "notes": "quiet room"})  # fmt: skip
    assert rec.id.startswith("voice_") and len(rec.id) == 22
    assert (rec.name, rec.language, rec.transcript, rec.engine) == ("Alice", "zh", "你好，世界。", "kokoro")
    assert rec.consent and rec.prompt_format == "wav" and rec.profile_digest == profile.digest()
    assert rec.created_at.tzinfo is not None and rec.created_at.utcoffset() == UTC.utcoffset(None)
    consent = {"consent_by": "local", "consent_at": rec.meta["consent_at"]}
    assert rec.meta == {"sim": 0.81, "duration_s": 6.2, "notes": "quiet room", **consent}
    assert rec.consent_by == "local" and rec.consent_at is not None
    assert lib.get(rec.id) == rec == lib.get("alice") == lib.get(" ALICE ")

    loaded = lib.profile(rec.id)
    assert loaded.digest() == profile.digest()
    for name in ("style", "envelope_mean", "envelope_std", "envelope_offset", "embedding"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(profile, name))
    assert lib.prompt_path("Alice") == tmp_path / "data" / "voices" / rec.id / "prompt.wav"
    assert same_audio(lib.prompt_path("Alice").read_bytes(), WAV)

    bob = add(lib, "Bob", 2)
    assert [r.name for r in lib.list()] == ["Bob", "Alice"]  # newest first

    renamed = lib.rename("alice", "Alicia")
    assert renamed.id == rec.id and renamed.name == "Alicia" and renamed.updated_at >= rec.updated_at
    with pytest.raises(NotFound, match="no voice named 'Alice'; `voiceforge voices` lists them"):
        lib.get("Alice")

    fixed = lib.update("Alicia", transcript=" 你好，朋友。 ", consent=False)
    assert (fixed.transcript, fixed.consent) == ("你好，朋友。", False)
    assert fixed.profile_digest == profile.digest()  # the digest covers the voice, not the transcript
    assert lib.profile("Alicia").transcript == "你好，朋友。"  # the profile file carries it too

    new_profile = make_profile(3, transcript="Hello there.", language="en")
    swapped = lib.update(rec.id, profile=new_profile)
    assert (swapped.profile_digest, swapped.language, swapped.transcript) == (
        new_profile.digest(), "en", "Hello there.")  # fmt: skip
    assert lib.profile(rec.id).digest() == new_profile.digest()

    lib.delete("Alicia")
    assert not (tmp_path / "data" / "voices" / rec.id).exists()
    with pytest.raises(NotFound):
        lib.get(rec.id)
    assert [r.id for r in lib.list()] == [bob.id]
    assert not [p for p in (tmp_path / "data" / "voices").rglob("*.tmp")]


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a" * 65, "bad\x00name", "tab\there", "line\u2028break", "rtl\u202eevil", "voice_alice",
     "VOICE_0123456789abcdef", "ｖｏｉｃｅ_x", 42],
)  # fmt: skip
def test_bad_names_are_refused(lib: VoiceLibrary, name: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="voice name"):
        add(lib, name)  # type: ignore[arg-type]
    assert lib.list() == []
    assert entries(tmp_path / "data" / "voices") == []


@pytest.mark.parametrize("name", ["a" * 64, "张三", "Zoë", "👩‍💻 coder", "O'Brien (take 2)"])
def test_good_names(lib: VoiceLibrary, name: str) -> None:
    assert lib.get(add(lib, name).id).name == name


def test_names_are_unique_case_insensitively(lib: VoiceLibrary, tmp_path: Path) -> None:
    alice = add(lib, "Alice")
    bob = add(lib, "Bob", 1)
    for name in ("alice", "ALICE", "Ａｌｉｃｅ"):
        with pytest.raises(InvalidInput, match="already exists; pick another name or rename it"):
            add(lib, name, 5)
    with pytest.raises(InvalidInput, match="a voice named 'alice' already exists"):
        lib.rename("Bob", "alice")
    assert lib.rename("Alice", "ALICE").id == alice.id  # its own name
    assert lib.get("bob").id == bob.id
    assert len(entries(tmp_path / "data" / "voices")) == 2  # failed creates left no files


def test_failed_create_leaves_nothing_behind(lib: VoiceLibrary, tmp_path: Path) -> None:
    unsaveable = make_profile()
    unsaveable.meta["bad"] = object()  # to_bytes cannot write it
    with pytest.raises(TypeError):
        lib.create("Ghost", prompt=WAV, profile=unsaveable, consent=True)
    with pytest.raises(InvalidInput, match="meta"):
        lib.create("Ghost", prompt=WAV, profile=make_profile(), consent=True, meta={"sim": float("nan")})
    for junk in (SCRIPT, b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28), b""):
        with pytest.raises(InvalidInput, match="prompt recording"):
            lib.create("Ghost", prompt=junk, profile=make_profile(), consent=True)
    assert lib.list() == []
    assert entries(tmp_path / "data" / "voices") == []


HOSTILE_REFS = [
    "../x", "..", ".", "voice_../../etc", "/etc/passwd", "voice_0123456789abcdef/../..",
    "voice_0123456789abcdef\n", "voice_0123456789ABCDEF", "a\x00b", "voice_\x00", "../outside/victim",
    "voices/../../outside", "", "x" * 10_000, "voice_0123456789abcdef",
]  # fmt: skip


def test_hostile_refs_never_reach_the_disk(lib: VoiceLibrary, tmp_path: Path) -> None:
    victim = tmp_path / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "profile.npz").write_bytes(make_profile().to_bytes())
    real = add(lib, "Real")
    refs = [*HOSTILE_REFS, str(victim), os.path.relpath(victim), str(tmp_path / "data" / "voices" / real.id)]
    before = snapshot(tmp_path)
    calls: dict[str, Callable[[str], object]] = {
        "get": lib.get, "profile": lib.profile, "prompt_path": lib.prompt_path, "export": lib.export,
        "delete": lib.delete, "rename": lambda r: lib.rename(r, "Other"),
        "update transcript": lambda r: lib.update(r, transcript="x"),
        "update consent": lambda r: lib.update(r, consent=False),
        "update profile": lambda r: lib.update(r, profile=make_profile(9)),
    }  # fmt: skip
    for ref in refs:
        for label, call in calls.items():
            with pytest.raises(NotFound):
                call(ref)
                pytest.fail(f"{label}({ref!r}) did not raise")
    assert snapshot(tmp_path) == before
    assert lib.get("Real") == real


def test_a_voice_is_saved_only_with_consent(lib: VoiceLibrary) -> None:
    with pytest.raises(InvalidInput, match=r"consent is missing or false.*consent=true") as refused:
        lib.create("Nobody asked", prompt=WAV, profile=make_profile(), consent=False)
    assert refused.value.detail == {"param": "consent"} and lib.list() == []
    rec = lib.create("Asked", prompt=WAV, profile=make_profile(), consent=True,
                     consent_by="key123")  # fmt: skip
    assert (rec.consent, rec.consent_by) == (True, "key123") and rec.consent_at is not None
    withdrawn = lib.update("Asked", consent=False)
    assert (withdrawn.consent, withdrawn.consent_by, withdrawn.consent_at) == (False, None, None)
    with pytest.raises(InvalidInput, match="consent: false"):
        lib.import_(lib.export("Asked"), name="Copy")


def test_export_import_round_trip(lib: VoiceLibrary, other: VoiceLibrary) -> None:
    rec = add(lib, "Alice", 4, meta={"sim": 0.77})
    lib.update("Alice", transcript="改过的文本。")
    data = lib.export("alice")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["profile.npz", "prompt.wav", "voice.json"]
        assert json.loads(z.read("voice.json"))["name"] == "Alice"

    imported = other.import_(data)
    assert imported.id != rec.id
    assert (imported.name, imported.transcript, imported.meta, imported.consent) == (
        "Alice", "改过的文本。", rec.meta, True)  # fmt: skip
    assert imported.meta["sim"] == 0.77 and imported.consent_at == rec.consent_at  # consent travels
    assert imported.profile_digest == rec.profile_digest == other.profile(imported.id).digest()
    assert same_audio(other.prompt_path(imported.id).read_bytes(), lib.prompt_path(rec.id).read_bytes())

    with pytest.raises(InvalidInput, match=r"a voice named 'Alice' already exists; .*--name"):
        other.import_(data)
    assert other.import_(data, name="Alice 2").name == "Alice 2"
    with pytest.raises(InvalidInput, match="voice name"):
        other.import_(data, name="voice_x")
    assert len(other.list()) == 2


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return buf.getvalue()


def _npz_claiming(shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return _zip({f"{n}.npy": header.getvalue() + bytes(16) for n in ("style", "meta")})


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def hostile_exports(good: bytes) -> dict[str, bytes]:
    m = _unzip(good)
    doc, arrays = json.loads(m["voice.json"]), _unzip(m["profile.npz"])
    scalars = json.loads(str(np.load(io.BytesIO(m["profile.npz"]))["meta"]))

    def swap(changes: dict[str, bytes], drop: str = "") -> bytes:
        return _zip({**{k: v for k, v in m.items() if k != drop}, **changes})

    def doc_with(**fields: object) -> bytes:
        return swap({"voice.json": json.dumps({**doc, **fields}).encode()})

    def profile_with(changes: dict[str, bytes]) -> bytes:
        return swap({"profile.npz": _zip({**arrays, **changes})})

    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for name, blob in [*m.items(), ("voice.json", b"{}")]:
            z.writestr(name, blob)
    big = bytes(65 * 2**20)
    return {
        "not a zip": b"RIFF this is a wav, not a zip",
        "empty": b"",
        "extra member": swap({"notes.txt": b"hi"}),
        "missing member": swap({}, drop="prompt.wav"),
        "duplicate member": dup.getvalue(),
        "member with path": swap({"../prompt.wav": m["prompt.wav"]}, drop="prompt.wav"),
        "member in a folder": _zip({f"x/{k}": v for k, v in m.items()}),
        "absolute member": swap({"/etc/voice.json": m["voice.json"]}, drop="voice.json"),
        "oversized member": swap({"prompt.wav": big}),
        "lying size": _understate(swap({"prompt.wav": big}), "prompt.wav"),
        "bz2 member": _zip(m, zipfile.ZIP_BZIP2),
        "bad profile bytes": swap({"profile.npz": b"not an npz"}),
        "profile bomb": profile_with({"pad.npy": bytes(17 * 2**20)}),
        "profile lying shape": swap({"profile.npz": _npz_claiming((100_000, 100_000))}),
        "profile extra field": profile_with({"meta.npy": _npy(np.array(json.dumps({**scalars, "x": 1})))}),
        "profile NaN": profile_with({"style.npy": _npy(np.full((510, 256), np.nan, np.float32))}),
        "empty prompt": swap({"prompt.wav": b""}),
        "script as prompt": _zip({**doc_files(m, doc, "html"), "prompt.html": SCRIPT}),
        "text as prompt": swap({"prompt.wav": b"just text, no audio"}),
        "digest mismatch": doc_with(profile_digest="0" * 32),
        "voice.json not json": swap({"voice.json": b"{nope"}),
        "voice.json a list": swap({"voice.json": b"[]"}),
        "consent not bool": doc_with(consent="yes"),
        "format mismatch": doc_with(prompt_format="mp3"),
        "bad name": doc_with(name="\x00bad"),
        "meta not object": doc_with(meta=[1, 2]),
    }


def doc_files(m: dict[str, bytes], doc: dict[str, Any], fmt: str) -> dict[str, bytes]:
    """voice.json (saying prompt.<fmt>) and profile.npz of an export."""
    return {"voice.json": json.dumps({**doc, "prompt_format": fmt}).encode(), "profile.npz": m["profile.npz"]}


def test_an_imported_prompt_is_stored_as_wav_whatever_its_name(
    lib: VoiceLibrary, other: VoiceLibrary, tmp_path: Path
) -> None:
    """A stored prompt.html was served as a page (issue 14): only decoded audio, as prompt.wav."""
    add(lib, "Alice")
    m = _unzip(lib.export("Alice"))
    doc = json.loads(m["voice.json"])
    for fmt, audio in (("html", m["prompt.wav"]), ("flac", tone(fmt="FLAC")), ("webm", tone())):
        imported = other.import_(_zip({**doc_files(m, doc, fmt), f"prompt.{fmt}": audio}), name=fmt)
        assert imported.prompt_format == "wav"
        folder = tmp_path / "other" / "voices" / imported.id
        assert sorted(p.name for p in folder.iterdir()) == ["profile.npz", "prompt.wav"]
        assert same_audio(other.prompt_path(imported.id).read_bytes(), audio)
        with zipfile.ZipFile(io.BytesIO(other.export(imported.id))) as z:
            assert sorted(z.namelist()) == ["profile.npz", "prompt.wav", "voice.json"]


def _understate(data: bytes, member: str) -> bytes:
    """The zip with `member`'s uncompressed size in the central directory rewritten to 100 bytes."""
    at = data.index(b"PK\x01\x02")  # central directory entries: size at +24, name at +46
    while data[at + 46 : at + 46 + len(member)] != member.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    return data[: at + 24] + (100).to_bytes(4, "little") + data[at + 28 :]


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_hostile_imports_are_refused(lib: VoiceLibrary, other: VoiceLibrary, tmp_path: Path) -> None:
    add(lib, "Alice")
    for label, data in hostile_exports(lib.export("Alice")).items():
        with pytest.raises(InvalidInput) as caught:
            other.import_(data)
        assert caught.value.message, label
    assert other.list() == []
    assert entries(tmp_path / "other" / "voices") == []
    assert other.import_(lib.export("Alice")).name == "Alice"  # the untouched export still imports


def test_threads_create_concurrently_and_another_instance_sees_them(
    lib: VoiceLibrary, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda i: add(lib, f"Voice {i}", i), range(24)))
    second = VoiceLibrary(tmp_path / "data")
    try:
        assert {r.id for r in second.list()} == {r.id for r in records}
        assert second.profile("voice 7").digest() == make_profile(7).digest()
    finally:
        second.close()


def test_one_name_raced_by_threads_wins_once(lib: VoiceLibrary, tmp_path: Path) -> None:
    start = threading.Barrier(8)

    def attempt(i: int) -> str:
        start.wait()
        try:
            add(lib, "Same", i)
        except InvalidInput:
            return "clash"
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(attempt, range(8)))
    assert outcomes == ["clash"] * 7 + ["ok"]
    assert len(entries(tmp_path / "data" / "voices")) == 1


_WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_library import add
from voiceforge.voices.library import VoiceLibrary, VoiceRecord
lib = VoiceLibrary(Path({data!r}))
for i in range(10):
    add(lib, f"p{{sys.argv[1]}} v{{i}}", i)
lib.update(f"p{{sys.argv[1]}} v0", transcript="edited")
"""


@pytest.mark.slow
def test_processes_share_one_library(tmp_path: Path) -> None:
    code = _WORKER.format(tests=str(Path(__file__).parent), data=str(tmp_path / "data"))
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], env=env) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lib = VoiceLibrary(tmp_path / "data")
    try:
        assert len(lib.list()) == 40
        assert lib.get("p3 v0").transcript == "edited"
    finally:
        lib.close()
