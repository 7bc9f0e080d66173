"""``WS /v1/audio/live``: live transcription of a browser microphone (service/live.py).

The client sends binary frames of 16-bit little-endian mono PCM at ``sample_rate`` (query; 16000
by default) and, when done, the text frame ``{"type": "end"}``. The server sends JSON text frames:
``session`` first (the token to resume with and how many samples it has), then ``partial`` and
``final`` events as the text forms, ``done`` after ``end``, or ``error`` before it closes.

To resume after a dropped connection, connect with ``session=<token>&last_seq=<last final seen>``:
the ``session`` event's ``received`` says from which sample to send again, and the finals after
``last_seq`` come again. Auth, the ``asr`` scope and its rate limit are those of HTTP; the key
may be in the query (``api_key``), as browsers cannot set headers on a WebSocket. A close code is
4000 + the HTTP status the same error would have (4400 bad input, 4404 unknown session, …).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from voiceforge.errors import Conflict, InvalidInput, VoiceforgeError
from voiceforge.server.admission import Ticket, enter
from voiceforge.server.auth import ANONYMOUS, Principal
from voiceforge.server.errors import status_of
from voiceforge.server.limits import client_ip
from voiceforge.server.state import Services
from voiceforge.service.live import LiveSession, LiveSessions
from voiceforge.service.transcribe import screen

log = logging.getLogger(__name__)

router = APIRouter(tags=["audio"])

MAX_FRAME_BYTES = 256 * 1024  # ~8 s at 16 kHz; browsers send 20–250 ms per frame
TAKEOVER_S = 15.0  # a resume waits this long for the dropped connection to let go of the session
IDLE_S = 30.0  # no frame for this long: the connection is closed (the session can be resumed)
STEP_AUDIO_S = 0.25  # look for ended utterances after this much new audio (not wall time: a client
# sending faster than real time gets the same finals as one speaking into a microphone)


def sessions(svc: Services) -> LiveSessions:
    if svc.live is None:
        svc.live = LiveSessions(resume_s=svc.settings.live_resume_s, max_s=svc.settings.max_transcription_s)
    return svc.live


@router.websocket("/v1/audio/live")
async def live(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()  # first, so that a refusal can say why (a close before it is a bare 403)
    try:
        principal = await _admit(websocket, svc)
        session, resumed_after = await _session(websocket, svc, principal)
    except VoiceforgeError as e:
        await _fail(websocket, e)
        return
    session.connected = True
    log.info("[%s] live session %s by %s", session.id, "resumed" if resumed_after is not None else "opened",
             principal.id)  # fmt: skip
    try:
        await websocket.send_json({"type": "session", "session": session.id, "sample_rate": session.rate,
                                   "received": session.received, "finals": len(session.finals)})  # fmt: skip
        for event in session.finals_after(resumed_after or 0) if resumed_after is not None else []:
            await websocket.send_json(event)
        if await _serve(websocket, svc, session):
            sessions(svc).close(session)
    except WebSocketDisconnect:
        log.info("[%s] live connection dropped after %d samples; resumable", session.id, session.received)
    except VoiceforgeError as e:
        await _fail(websocket, e)
        sessions(svc).close(session)
    finally:
        session.connected = False
        session.touched = time.monotonic()


async def _admit(websocket: WebSocket, svc: Services) -> Principal:
    """The same admission as HTTP's transcriptions: the ``asr`` scope and one request against its
    rate limit (the Guard has authenticated the connection)."""
    principal: Principal = websocket.scope.get("state", {}).get("principal", ANONYMOUS)
    await enter(svc, Ticket(principal, client_ip(websocket.scope)), "asr", "live transcription")
    return principal


async def _session(
    websocket: WebSocket, svc: Services, principal: Principal
) -> tuple[LiveSession, int | None]:
    query = websocket.query_params
    token = query.get("session")
    if token:
        try:
            last_seq = int(query.get("last_seq", "0"))
        except ValueError:
            raise InvalidInput(f"last_seq {query.get('last_seq')!r} is not a whole number") from None
        # The old connection may still be finishing a step before it sees that it was dropped.
        deadline = time.monotonic() + TAKEOVER_S
        while True:
            try:
                return sessions(svc).resume(token, principal.id), last_seq
            except Conflict:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    try:
        rate = int(query.get("sample_rate", "16000"))
    except ValueError:
        raise InvalidInput(f"sample_rate {query.get('sample_rate')!r} is not a whole number of Hz") from None
    language = query.get("language") or None
    if language is not None and not (language.isalpha() and 2 <= len(language) <= 3):
        raise InvalidInput(f"language {language!r} is not a language code such as zh or en")
    return sessions(svc).open(principal.id, rate=rate, language=language), None


async def _serve(websocket: WebSocket, svc: Services, session: LiveSession) -> bool:
    """Take frames until ``end`` (True: the session is over) or a disconnect (raises)."""
    transcriber = svc.speech.models.transcriber
    unstepped = 0  # client samples since the last step

    async def step(flush: bool = False) -> None:
        def work() -> list[dict[str, Any]]:
            events = session.step(transcriber.transcribe, flush=flush)
            for event in events:  # recognised speech meets the word filter, as every transcript does
                if event["type"] == "final":
                    flagged = screen(svc.words, svc.settings.speech_filter, event["text"], "the live speech")
                    if flagged:
                        event["flagged"] = flagged
            return events

        for event in await svc.pool.run(work, timeout=svc.settings.request_timeout_s, breaker=False):
            await websocket.send_json(event)

    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), IDLE_S)
        except TimeoutError:
            await websocket.close(code=4408, reason=f"no audio for {IDLE_S:.0f} s; resume the session")
            raise WebSocketDisconnect(4408) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            data: bytes = message["bytes"]
            if len(data) > MAX_FRAME_BYTES:
                raise InvalidInput(
                    f"an audio frame is {len(data)} bytes; send at most {MAX_FRAME_BYTES} at a time"
                )
            session.feed(data)
            session.touched = time.monotonic()
            unstepped += len(data) // 2
            if unstepped >= STEP_AUDIO_S * session.rate:
                await step()
                unstepped = 0
            continue
        if _is_end(message.get("text")):
            await step(flush=True)
            await websocket.send_json({"type": "done", "finals": len(session.finals)})
            await websocket.close(code=1000)
            return True
        raise InvalidInput('text frames must be {"type": "end"}; send audio as binary frames')


def _is_end(text: str | None) -> bool:
    try:
        return bool(text) and json.loads(text or "").get("type") == "end"
    except (json.JSONDecodeError, AttributeError):
        return False


async def _fail(websocket: WebSocket, error: VoiceforgeError) -> None:
    try:
        await websocket.send_json({"type": "error", "code": error.code, "message": error.message})
        await websocket.close(code=4000 + status_of(error), reason=error.message[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is already gone
