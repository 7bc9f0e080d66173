"""CosyVoice's gRPC protocol without a server: the wire contract, the committed stubs, the error
table, the prompt bytes, and what the cosyvoice-grpc engine refuses before it calls anyone.

The round trips through a real server are in tests/integration/test_grpc.py.
"""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile

from tests.conftest import REPO
from voiceforge import errors
from voiceforge.audio.decode import decode
from voiceforge.config import Settings
from voiceforge.engines.base import Prompt, SynthesisRequest
from voiceforge.engines.cosyvoice_grpc import CosyVoiceGrpcEngine
from voiceforge.grpc import cosyvoice_pb2 as pb
from voiceforge.grpc.status import CODE_KEY, RETRY_AFTER_KEY, status_of, trailers_of
from voiceforge.server.grpc_service import parse, peer_ip, prompt_wav

GRPC_DIR = REPO / "src" / "voiceforge" / "grpc"
# The wire format the issue quotes from upstream's cosyvoice.proto: message → field → (number, type).
WIRE = {
    "Request": {"sft_request": (1, "sftRequest"), "zero_shot_request": (2, "zeroshotRequest"),
                "cross_lingual_request": (3, "crosslingualRequest"),
                "instruct_request": (4, "instructRequest")},
    "sftRequest": {"spk_id": (1, "string"), "tts_text": (2, "string")},
    "zeroshotRequest": {"tts_text": (1, "string"), "prompt_text": (2, "string"),
                        "prompt_audio": (3, "bytes")},
    "crosslingualRequest": {"tts_text": (1, "string"), "prompt_audio": (2, "bytes")},
    "instructRequest": {"tts_text": (1, "string"), "spk_id": (2, "string"), "instruct_text": (3, "string")},
    "Response": {"tts_audio": (1, "bytes")},
}  # fmt: skip
_TYPES = {9: "string", 12: "bytes"}


def test_the_schema_is_upstream_s_wire_for_wire() -> None:
    file = pb.DESCRIPTOR
    assert file.package == "cosyvoice"
    assert set(file.message_types_by_name) == set(WIRE)
    for name, fields in WIRE.items():
        message = file.message_types_by_name[name]
        seen = {
            f.name: (f.number, f.message_type.name if f.message_type else _TYPES[f.type])
            for f in message.fields
        }
        assert seen == fields, name
    payload = file.message_types_by_name["Request"].oneofs_by_name["RequestPayload"]
    assert [f.name for f in payload.fields] == list(WIRE["Request"])
    method = file.services_by_name["CosyVoice"].methods_by_name["Inference"]
    assert method.full_name == "cosyvoice.CosyVoice.Inference"
    assert (method.input_type.name, method.output_type.name) == ("Request", "Response")


def test_the_committed_stubs_are_what_the_schema_generates(tmp_path: Path) -> None:
    """scripts/grpc_stubs.sh regenerates them; this fails when someone edits one without the other."""
    out = tmp_path / "voiceforge" / "grpc"
    out.mkdir(parents=True)
    (out / "cosyvoice.proto").write_bytes((GRPC_DIR / "cosyvoice.proto").read_bytes())
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.",
         "voiceforge/grpc/cosyvoice.proto"],
        cwd=tmp_path, check=True, timeout=60,
    )  # fmt: skip
    for name in ("cosyvoice_pb2.py", "cosyvoice_pb2_grpc.py"):
        assert (out / name).read_text() == (GRPC_DIR / name).read_text(), f"{name}: run scripts/grpc_stubs.sh"


def test_every_error_has_a_grpc_status_with_its_code_and_retry_after() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.VoiceforgeError)
    ]
    assert len(classes) > 10
    for cls in classes:
        if cls is not errors.VoiceforgeError:
            error = (
                cls("x", retry_after=3) if "retry_after" in inspect.signature(cls).parameters else cls("x")
            )
            assert status_of(error) != grpc.StatusCode.UNKNOWN
    cases = {
        errors.InvalidInput("bad"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.Unsupported("no dialect"): grpc.StatusCode.INVALID_ARGUMENT,
        errors.Unauthorized("no key"): grpc.StatusCode.UNAUTHENTICATED,
        errors.Forbidden("no scope"): grpc.StatusCode.PERMISSION_DENIED,
        errors.RateLimited("slow down", retry_after=7): grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.Overloaded("busy"): grpc.StatusCode.UNAVAILABLE,
        errors.EngineUnavailable("down"): grpc.StatusCode.UNAVAILABLE,
        errors.Timeout("late"): grpc.StatusCode.DEADLINE_EXCEEDED,
        errors.EngineFailure("broke"): grpc.StatusCode.INTERNAL,
        errors.StillRunning("wait"): grpc.StatusCode.FAILED_PRECONDITION,  # a Conflict, by its parent
    }
    for error, code in cases.items():
        assert status_of(error) == code, error
    assert trailers_of(errors.RateLimited("slow down", retry_after=7)) == (
        (CODE_KEY, "rate_limited"),
        (RETRY_AFTER_KEY, "7"),
    )
    assert trailers_of(errors.Unsupported("no")) == ((CODE_KEY, "unsupported"),)


def test_upstream_s_raw_prompt_becomes_a_16k_wav_the_service_decodes() -> None:
    tone = (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000) * 2**15).astype(np.int16)
    audio = decode(prompt_wav(tone.tobytes(), "zero_shot_request.prompt_audio"))
    assert audio.sample_rate == 16000
    assert np.allclose(audio.samples, tone / 32768, atol=1e-4)
    wav = io.BytesIO()
    soundfile.write(wav, tone, 16000, format="WAV")
    assert prompt_wav(wav.getvalue(), "p") == wav.getvalue()  # a WAV file is taken as it is
    with pytest.raises(errors.InvalidInput, match="odd number of bytes"):
        prompt_wav(b"\x01\x02\x03", "zero_shot_request.prompt_audio")
    with pytest.raises(errors.InvalidInput, match=r"cross_lingual_request\.prompt_audio is empty"):
        parse(pb.Request(cross_lingual_request=pb.crosslingualRequest(tts_text="hi")))


def test_requests_become_the_service_s_terms() -> None:
    with pytest.raises(errors.InvalidInput, match="carries no payload"):
        parse(pb.Request())
    sft = parse(pb.Request(sft_request=pb.sftRequest(tts_text="hi")))
    assert (sft.voice, sft.mode, sft.prompt) == (None, None, None)  # the default voice, mode inferred
    ins = parse(
        pb.Request(instruct_request=pb.instructRequest(tts_text="hi", spk_id="jm_kumo", instruct_text="sad"))
    )
    assert (ins.voice, ins.mode, ins.instruct) == ("jm_kumo", "instruct", "sad")
    zs = parse(pb.Request(zero_shot_request=pb.zeroshotRequest(tts_text="hi", prompt_audio=b"\0\0")))
    assert (zs.mode, zs.prompt_text) == ("zero_shot", None)  # an empty transcript: Whisper writes it
    assert peer_ip("ipv4:127.0.0.1:50412") == "127.0.0.1"
    assert peer_ip("ipv6:[::1]:50412") == "::1"
    assert peer_ip("unix:/tmp/s") == "-"


def test_the_engine_refuses_what_the_protocol_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="VOICEFORGE_COSYVOICE_GRPC_TARGET"):
        CosyVoiceGrpcEngine.from_settings(Settings())
    with pytest.raises(errors.InvalidInput, match="is a URL"):
        CosyVoiceGrpcEngine.from_settings(Settings(cosyvoice_grpc_target="http://gpu:50000"))
    engine = CosyVoiceGrpcEngine.from_settings(
        Settings(cosyvoice_grpc_target="127.0.0.1:9", cosyvoice_grpc_voices="jf_alpha, jm_kumo")  # type: ignore[arg-type]
    )
    assert [v.name for v in engine.voices()] == ["jf_alpha", "jm_kumo"]
    assert engine.capabilities.modes == {"preset", "zero_shot", "cross_lingual", "instruct"}
    assert engine.capabilities.instruct_verbatim and not engine.capabilities.seed
    with pytest.raises(errors.Unsupported, match="no speed field"):
        list(engine.stream(SynthesisRequest(text="hi", speed=1.5)))
    wav = tmp_path / "p.wav"
    soundfile.write(wav, np.zeros(16000, np.float32), 16000)
    cloned = SynthesisRequest(text="hi", mode="instruct", instruct="sad", prompt=Prompt(wav, "x", "k"))
    with pytest.raises(errors.Unsupported, match="instructRequest names a stock speaker"):
        list(engine.stream(cloned))
    assert engine.breaker.state == "closed"  # refused here: nothing was sent, nothing counted
    engine.close()
