"""CosyVoice's own gRPC service, served next to HTTP: ``voiceforge serve --grpc-port N``.

A grpc.aio server on the same event loop, host and :class:`Services` as the HTTP app answers
``cosyvoice.CosyVoice/Inference`` (schema: :mod:`voiceforge.grpc`). Each request kind asks the
speech service what the HTTP routes ask it:

- ``sft_request``: ``spk_id`` is a stock voice or a saved voice (id or name); empty: the default.
- ``zero_shot_request``: ``prompt_audio`` cloned, ``prompt_text`` its transcript (empty: Whisper's).
- ``cross_lingual_request``: the same in mode cross_lingual; the transcript is always Whisper's.
- ``instruct_request``: ``spk_id`` as for sft, ``instruct_text`` checked like HTTP's ``instruct``.

Prompt audio is what upstream's client sends: raw mono int16 PCM at 16 kHz (a WAV file is accepted
too); it then passes the same checks as an HTTP upload. The answer is one ``Response`` per sentence
as it is made, raw mono int16 PCM at the engine's rate (or ``grpc_sample_rate``), which the
initial metadata states (``sample-rate``; voiceforge's engine: 24000), with ``task-id`` for the
log. Request metadata ``model`` picks one of the deployment's engines, as HTTP's ``model`` does.

Admission is HTTP's (:func:`admit`): the credential from metadata, the ``tts`` scope and rate
limit, the word filter and the daily quota, and an audit row. Errors end the call with the status
:mod:`voiceforge.grpc.status` gives and the message HTTP would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from voiceforge.audio.encode import AudioFormat
from voiceforge.engines.base import Mode
from voiceforge.errors import InvalidInput, Unauthorized, VoiceforgeError
from voiceforge.grpc import cosyvoice_pb2 as pb
from voiceforge.grpc import cosyvoice_pb2_grpc as pb_grpc
from voiceforge.grpc.status import SAMPLE_RATE_KEY, TASK_ID_KEY, status_of, trailers_of
from voiceforge.logs import key_id, trace_id
from voiceforge.server import errors as http_errors
from voiceforge.server.admission import Ticket, check_text, creator, enter, record
from voiceforge.server.auth import ANONYMOUS, HOW
from voiceforge.server.state import Services
from voiceforge.service.speech import new_task_id
from voiceforge.service.streaming import EncodedPiece, PoolStream, encoded_speech

log = logging.getLogger(__name__)

METHOD = "/cosyvoice.CosyVoice/Inference"
PROMPT_RATE = 16000  # what upstream's client sends: load_wav(prompt, 16000) as int16
_KINDS = "sft_request, zero_shot_request, cross_lingual_request or instruct_request"


@dataclass(frozen=True)
class Ask:
    """One gRPC request in the speech service's terms."""

    kind: str
    text: str
    voice: str | None = None
    prompt: bytes | None = None
    prompt_text: str | None = None
    mode: Mode | None = None
    instruct: str | None = None


def parse(request: pb.Request) -> Ask:
    """The request's payload, with its prompt audio as a WAV file; InvalidInput when it has none."""
    kind = request.WhichOneof("RequestPayload")
    if kind == "sft_request":
        sft = request.sft_request
        return Ask(kind, sft.tts_text, voice=sft.spk_id or None)
    if kind == "zero_shot_request":
        zs = request.zero_shot_request
        prompt = prompt_wav(zs.prompt_audio, "zero_shot_request.prompt_audio")
        return Ask(kind, zs.tts_text, prompt=prompt, prompt_text=zs.prompt_text or None, mode="zero_shot")
    if kind == "cross_lingual_request":
        cl = request.cross_lingual_request
        prompt = prompt_wav(cl.prompt_audio, "cross_lingual_request.prompt_audio")
        return Ask(kind, cl.tts_text, prompt=prompt, mode="cross_lingual")
    if kind == "instruct_request":
        ins = request.instruct_request
        return Ask(kind, ins.tts_text, voice=ins.spk_id or None, mode="instruct", instruct=ins.instruct_text)
    raise InvalidInput(f"the request carries no payload; set one of {_KINDS}")


def prompt_wav(data: bytes, field: str) -> bytes:
    """Upstream's prompt (raw 16 kHz mono int16 PCM) as a WAV file; a WAV file passes as it is."""
    if not data:
        raise InvalidInput(f"{field} is empty; send the prompt recording as 16 kHz mono int16 PCM")
    if data[:4] == b"RIFF":
        return data
    if len(data) % 2:
        raise InvalidInput(
            f"{field} has an odd number of bytes ({len(data)}); send 16 kHz mono int16 PCM, 2 bytes a sample"
        )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(PROMPT_RATE)
        w.writeframes(data)
    return out.getvalue()


async def admit(svc: Services, context: grpc.aio.ServicerContext, ask: Ask) -> Ticket:
    """HTTP's admission (server/admission.py) for a gRPC call: who (metadata ``authorization:
    Bearer <key or JWT>`` or ``x-api-key``), then the tts scope and rate limit, the word filter and
    the daily quota. The one place the gRPC door calls admission."""
    ip = peer_ip(context.peer())
    principal = ANONYMOUS
    if svc.auth.required:
        try:
            credential = _credential(context.invocation_metadata() or ())
            if credential is None:
                raise Unauthorized(f"{METHOD} needs an API key: {HOW}")
            principal = await svc.auth.verify(credential)
        except Unauthorized:
            await svc.limiter.failed_auth(ip)  # RateLimited once an address fails too often
            raise
    key_id.set(principal.id)
    ticket = Ticket(principal, ip)
    await enter(svc, ticket, "tts", METHOD)
    await check_text(svc, ticket, ask.text, field="tts_text", prompt_text=ask.prompt_text)
    return ticket


def _credential(metadata: Any) -> str | None:
    values = {str(k).lower(): v for k, v in metadata}
    authorization, api_key = values.get("authorization"), values.get("x-api-key")
    if isinstance(authorization, str):
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(f"the authorization metadata must read 'Bearer <key or token>'; {HOW}")
        return token.strip()
    if isinstance(api_key, str):
        return api_key.strip() or None
    return None


def peer_ip(peer: str) -> str:
    """The address in a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or "-"
    if kind == "ipv4":
        return rest.rpartition(":")[0] or "-"
    return "-"


class CosyVoiceServicer(pb_grpc.CosyVoiceServicer):  # type: ignore[misc]
    """``Inference``: admission, then the speech service's stream as int16 PCM, one message a piece."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    async def Inference(  # noqa: N802 (the generated servicer's name)
        self, request: pb.Request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Response]:
        received = time.perf_counter()
        task_id = new_task_id()
        trace = trace_id.set(task_id)
        who = key_id.set("-")
        ticket: Ticket | None = None
        stream: PoolStream[EncodedPiece] | None = None
        ask: Ask | None = None
        status, sent = 500, 0
        try:
            ask = parse(request)
            ticket = await admit(self.svc, context, ask)
            log.info("[%s] received gRPC %s: %d chars", task_id, ask.kind, len(ask.text))
            stream, rate = await self._start(ask, task_id, _metadata(context, "model"))
            try:
                piece = await stream.next(self.svc.settings.request_timeout_s)
            except StopAsyncIteration:
                raise InvalidInput("the input produced no audio; give words to speak") from None
            ttfa = time.perf_counter() - received
            log.info("[%s] first audio after %.0f ms (sentence 1/%d)", task_id, ttfa * 1000, piece.total)
            self.svc.metrics.observe_ttfa(ttfa)
            await context.send_initial_metadata(((SAMPLE_RATE_KEY, str(rate)), (TASK_ID_KEY, task_id)))
            status = 200
            while True:
                sent += len(piece.data)
                yield pb.Response(tts_audio=piece.data)
                try:
                    piece = await stream.next(self.svc.settings.request_timeout_s)
                except StopAsyncIteration:
                    break
            log.info("[%s] streamed %d bytes over gRPC (%.2f s of audio)", task_id, sent, piece.audio_s)
        except VoiceforgeError as e:
            status = http_errors.status_of(e)
            level = logging.WARNING if status >= 500 else logging.INFO
            log.log(level, "[%s] gRPC %s -> %s %s: %s", task_id, METHOD, status_of(e).name, e.code, e.message)
            await context.abort(status_of(e), e.message, trailing_metadata=trailers_of(e))
        except Exception:
            log.exception("[%s] unhandled error on gRPC %s", task_id, METHOD)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")
        finally:
            if stream is not None:
                stream.close(f"ended after {sent} bytes")
            who_ = creator(ticket.principal) if ticket is not None else None
            record(self.svc, ticket, who=who_, ip=peer_ip(context.peer()), method="GRPC", endpoint=METHOD,
                   status=status, started=received)  # fmt: skip
            with contextlib.suppress(ValueError):  # a generator closed from another context
                key_id.reset(who)
                trace_id.reset(trace)

    async def _start(self, ask: Ask, task_id: str, model: str | None) -> tuple[PoolStream[EncodedPiece], int]:
        """The speech stream for ``ask`` queued on the engine pool, and the rate of its PCM."""
        settings, speech = self.svc.settings, self.svc.speech
        if len(ask.text) > settings.max_speech_chars:
            raise InvalidInput(
                f"tts_text is {len(ask.text)} characters; at most {settings.max_speech_chars} are accepted "
                "per request (split it, or submit a long-form job at POST /v1/jobs)"
            )
        engine = await asyncio.to_thread(speech.models.get, model)  # built on first use: off the loop

        def produce(cancelled: threading.Event) -> Iterator[EncodedPiece]:
            planned = speech.plan(
                ask.text,
                voice=ask.voice,
                prompt=ask.prompt,
                prompt_text=ask.prompt_text,
                mode=ask.mode,
                instruct=ask.instruct,
                fmt=AudioFormat.PCM,
                engine=model,
                door="grpc",
                task_id=task_id,
                quick_start=True,  # the first sentence cut after a clause: the first audio leaves sooner
            )
            yield from encoded_speech(
                speech, task_id, planned.request(), planned.format, cancelled, pcm_rate=rate
            )

        rate = settings.grpc_sample_rate or engine.capabilities.sample_rate
        timeout = settings.request_timeout_s
        stream = PoolStream(self.svc.pool, produce, task_id=task_id, stall_s=timeout)
        return stream, rate


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if str(name).lower() == key and isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def start(svc: Services) -> grpc.aio.Server:
    """Serve :class:`CosyVoiceServicer` on ``settings.host:settings.grpc_port``; InvalidInput when
    the port cannot be bound."""
    settings = svc.settings
    if settings.grpc_port == settings.port:
        raise InvalidInput(
            f"--grpc-port {settings.grpc_port} is the HTTP port too; give gRPC a port of its own"
        )
    limit = settings.max_body_bytes  # a prompt of 30 s at 16 kHz is ~1 MB; gRPC's default cap is 4 MB
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    pb_grpc.add_CosyVoiceServicer_to_server(CosyVoiceServicer(svc), server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as e:
        raise InvalidInput(
            f"cannot serve gRPC on {address} ({e}); is the port taken? choose another --grpc-port"
        ) from e
    await server.start()
    log.info("gRPC: cosyvoice.CosyVoice/Inference on %s", address)
    return server
