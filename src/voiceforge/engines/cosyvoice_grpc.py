"""The cosyvoice-grpc engine: a server speaking CosyVoice's gRPC protocol (``cosyvoice.CosyVoice``).

Upstream's ``runtime/python/grpc/server.py`` in front of a CosyVoice model on a GPU, or another
voiceforge with ``--grpc-port``. One request here is one ``Inference`` call; each ``Response``
(a sentence or a chunk of int16 PCM) is passed on as an audio chunk as it arrives.

- Modes map onto the request kinds: preset → ``sft_request``, zero_shot → ``zero_shot_request``
  (the prompt as 16 kHz int16 PCM plus its transcript), cross_lingual → ``cross_lingual_request``,
  instruct → ``instruct_request`` (a stock ``spk_id`` and the instruction verbatim).
- What the protocol cannot carry is refused before the call, naming the engine: a speed other than
  1, an instruction with a cloned voice (``instructRequest`` names a stock speaker only), seeds.
- The rate of the PCM is the server's ``sample-rate`` metadata (voiceforge sends it), else
  ``VOICEFORGE_COSYVOICE_GRPC_SAMPLE_RATE``. The protocol lists no voices: the ``spk_id`` values
  offered are ``VOICEFORGE_COSYVOICE_GRPC_VOICES``, the first the default.
- Errors and outages as the remote engine maps them: retries only while nothing was heard (the
  server unreachable, or busy), errors named after the server, and a circuit breaker of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import soundfile
import soxr

from voiceforge import errors as e
from voiceforge.breaker import CircuitBreaker
from voiceforge.config import Settings
from voiceforge.engines.base import (
    AudioChunk,
    Capabilities,
    SynthesisRequest,
    VoiceInfo,
    check_supported,
    pcm16_chunk,
)
from voiceforge.grpc import cosyvoice_pb2 as pb
from voiceforge.grpc import cosyvoice_pb2_grpc as pb_grpc
from voiceforge.grpc.status import CODE_KEY, RETRY_AFTER_KEY, SAMPLE_RATE_KEY

log = logging.getLogger(__name__)

PROMPT_RATE = 16000  # upstream's server reads the prompt as 16 kHz int16
_MAX_RETRY_AFTER_S = 10.0
# Our error codes (trailing metadata voiceforge-code) that say the caller's request was at fault.
_CALLER_ERRORS: dict[str, type[e.VoiceforgeError]] = {
    "invalid_input": e.InvalidInput,
    "unsupported": e.Unsupported,
    "too_large": e.TooLarge,
    "not_found": e.InvalidInput,  # a voice the server does not know is a bad request here
}


class CosyVoiceGrpcEngine:
    name = "cosyvoice-grpc"

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        voices: list[str] | None = None,
        sample_rate: int = 24000,
        connect_timeout_s: float = 5.0,
        timeout_s: float = 300.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.target = target
        self.sample_rate = sample_rate
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()
        self._voices = list(voices or [])
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        limit = 64 * 2**20
        self._channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self._stub = pb_grpc.CosyVoiceStub(self._channel)
        self.capabilities = Capabilities(
            languages=frozenset({"zh", "en"}),
            modes=frozenset({"preset", "zero_shot", "cross_lingual", "instruct"}),
            # The instruction goes verbatim; the server judges it (voiceforge's Kokoro refuses a
            # dialect with INVALID_ARGUMENT, which comes back as a 400 naming the server).
            instruct_controls=frozenset({"speed", "volume", "pitch", "emotion", "dialect"}),
            streaming=True,
            max_text_chars=4096,
            sample_rate=sample_rate,
            renders_tags=True,  # markup goes verbatim; the server's frontend reads or drops it
            cloning="prompt",
            seed=False,  # no seed field in the protocol
            local=False,
            instruct_verbatim=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> CosyVoiceGrpcEngine:
        target = (settings.cosyvoice_grpc_target or "").strip()
        if not target:
            raise e.InvalidInput(
                "engine cosyvoice-grpc needs the server's address: set VOICEFORGE_COSYVOICE_GRPC_TARGET "
                "(host:port, e.g. gpu-node:50000 for upstream's grpc server, or a voiceforge's --grpc-port)"
            )
        if "://" in target:
            raise e.InvalidInput(
                f"VOICEFORGE_COSYVOICE_GRPC_TARGET {target[:80]!r} is a URL; "
                "give host:port such as gpu-node:50000"
            )
        return cls(
            target,
            api_key=settings.cosyvoice_grpc_api_key,
            voices=settings.cosyvoice_grpc_voices,
            sample_rate=settings.cosyvoice_grpc_sample_rate,
            connect_timeout_s=settings.cosyvoice_grpc_connect_timeout_s,
            timeout_s=settings.cosyvoice_grpc_timeout_s,
            retries=settings.cosyvoice_grpc_retries,
            breaker=CircuitBreaker.from_settings(settings),
        )

    def voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(name, "unknown", "unknown", "default" if i == 0 else "")
            for i, name in enumerate(self._voices)
        ]

    def dropped_tags(self, text: str) -> list[str]:
        return []  # markup goes to the server verbatim

    def close(self) -> None:
        self._channel.close()

    # -- synthesis -------------------------------------------------------------------------------
    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        check_supported(self, request)
        message = self._request(request)  # before the breaker: the caller's mistakes are not counted
        try:
            self.breaker.before_call()
        except e.EngineUnavailable as err:
            raise e.EngineUnavailable(
                f"the cosyvoice-grpc server at {self.target} failed too often recently; requests to it "
                f"are paused for {err.retry_after} s (check that server, then retry)",
                retry_after=err.retry_after,
            ) from None
        failed = False  # every call that passed the breaker reports its outcome, however it ends
        try:
            yield from self._pcm(message, request)
        except (e.EngineFailure, e.EngineUnavailable, e.Timeout):
            failed = True
            raise
        finally:
            self.breaker.record(failed=failed)

    def _request(self, request: SynthesisRequest) -> pb.Request:
        """The protocol's request for ``request``; Unsupported for what it cannot carry."""
        if request.speed != 1.0:
            raise e.Unsupported(
                f"engine {self.name} cannot change the speed (speed {request.speed:g}): CosyVoice's gRPC "
                "protocol has no speed field; leave speed at 1, or ask for it in an instruction"
            )
        text = request.text
        voice = request.voice or (self._voices[0] if self._voices else "")
        if request.mode == "instruct":
            if request.prompt is not None:
                raise e.Unsupported(
                    f"engine {self.name} cannot follow an instruction with a cloned voice: the protocol's "
                    "instructRequest names a stock speaker (spk_id); choose a stock voice for instructions"
                )
            return pb.Request(
                instruct_request=pb.instructRequest(
                    tts_text=text, spk_id=voice, instruct_text=request.instruct
                )
            )
        if request.prompt is None:
            return pb.Request(sft_request=pb.sftRequest(spk_id=voice, tts_text=text))
        audio = _prompt_pcm(request.prompt.path)
        if request.mode == "cross_lingual":
            return pb.Request(cross_lingual_request=pb.crosslingualRequest(tts_text=text, prompt_audio=audio))
        return pb.Request(
            zero_shot_request=pb.zeroshotRequest(
                tts_text=text, prompt_text=request.prompt.transcript, prompt_audio=audio
            )
        )

    def _pcm(self, message: pb.Request, request: SynthesisRequest) -> Iterator[AudioChunk]:
        call = self._call(message)
        rate = _rate(call, self.sample_rate)
        index, offset, pending = 0, 0.0, b""
        started = time.perf_counter()
        try:
            for response in call:
                pending += response.tts_audio
                usable = len(pending) - len(pending) % 2
                if not usable:
                    continue
                chunk = pcm16_chunk(pending[:usable], rate, index, offset, started, request)
                pending = pending[usable:]
                offset += chunk.duration_s
                index += 1
                started = time.perf_counter()
                yield chunk
        except grpc.RpcError as err:
            raise self._error(err, f" after {offset:.1f} s of audio" if index else "") from err
        finally:
            call.cancel()  # a consumer that stopped early stops the server's work too
        if index == 0:
            yield pcm16_chunk(b"", rate, 0, 0.0, started, request)

    def _call(self, message: pb.Request) -> Any:
        """The started call with its initial metadata in, retried while nothing was heard."""
        attempt = 0
        while True:
            call = self._stub.Inference(message, timeout=self.timeout_s, metadata=self._metadata)
            call.initial_metadata()  # blocks until the server answers or the call fails
            if not call.done() or call.code() == grpc.StatusCode.OK:
                return call
            # The call is its own RpcError: it failed before any audio, so a retry says nothing twice.
            wait = _retry_after(call)
            if call.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                attempt += 1
                pause = min(wait, _MAX_RETRY_AFTER_S) if wait is not None else 0.2 * 2**attempt
                log.warning(
                    "cosyvoice-grpc server at %s: %s; retry %d in %.1f s",
                    self.target,
                    call.details(),
                    attempt,
                    pause,
                )
                time.sleep(pause)
                continue
            raise self._error(call, "")

    def _error(self, err: Any, when: str) -> e.VoiceforgeError:
        """The server's status as our error, named after the server (what counts on the breaker:
        outages, timeouts, its own failures and a refused key; never the caller's bad input)."""
        code: grpc.StatusCode = err.code()
        details = err.details() or code.name
        ours = _trailer(err, CODE_KEY)
        wait = int(_retry_after(err) or 5)
        message = f"the cosyvoice-grpc server at {self.target} answered {code.name}{when}: {details}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return _CALLER_ERRORS.get(ours or "", e.InvalidInput)(message)
        if code == grpc.StatusCode.NOT_FOUND:
            return e.InvalidInput(message)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return e.Overloaded(message, retry_after=wait)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return e.EngineUnavailable(
                message + " (check VOICEFORGE_COSYVOICE_GRPC_API_KEY)", retry_after=wait
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            if ours == "overloaded":
                return e.Overloaded(message, retry_after=wait)
            return e.EngineUnavailable(
                message + " (check that it is running and VOICEFORGE_COSYVOICE_GRPC_TARGET is right)",
                retry_after=wait,
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return e.EngineUnavailable(
                message + " (it does not serve cosyvoice.CosyVoice/Inference)", retry_after=wait
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return e.Timeout(message + f" (VOICEFORGE_COSYVOICE_GRPC_TIMEOUT_S is {self.timeout_s:g} s)")
        return e.EngineFailure(message)


def _prompt_pcm(path: Any) -> bytes:
    """The prompt WAV as upstream's client sends it: 16 kHz mono int16 PCM."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != PROMPT_RATE:
        mono = soxr.resample(mono, rate, PROMPT_RATE)
    return bytes((np.clip(mono, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes())


def _rate(call: Any, default: int) -> int:
    for key, value in call.initial_metadata() or ():
        if key == SAMPLE_RATE_KEY and str(value).isdigit() and 8000 <= int(value) <= 192000:
            return int(value)
    return default


def _trailer(err: Any, key: str) -> str | None:
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for name, value in trailing or ():
        if name == key:
            return str(value)
    return None


def _retry_after(err: Any) -> float | None:
    value = _trailer(err, RETRY_AFTER_KEY)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
