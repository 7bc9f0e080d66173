"""HTTP responses for streamed speech: raw chunked audio, or server-sent events in OpenAI's shape.

:func:`speech_response` waits for the first encoded piece, so anything that goes wrong before it
(a bad voice, an instruction the engine refuses, a full queue, a timeout) is an ordinary HTTP
error. After it, an SSE stream ends with an ``error`` event, and a raw audio stream is cut off so
the client sees an incomplete body rather than a short file that looks whole. However the response
ends (done, failed, or the client left, even before the body started), the stream is closed: the
engine stops after the sentence in progress.

SSE events: ``{"type": "speech.audio.delta", "audio": "<base64>"}`` per piece, then
``{"type": "speech.audio.done", "usage": {...}}``; ``usage`` counts input characters as
``input_tokens`` (nothing is tokenised; ``output_tokens`` is 0) and adds ``audio_seconds``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from voiceforge.errors import InvalidInput, VoiceforgeError
from voiceforge.server.errors import status_of
from voiceforge.service.streaming import EncodedPiece, PoolStream

log = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"


async def speech_response(
    stream: PoolStream[EncodedPiece],
    *,
    media_type: str,
    received: float,
    timeout: float,
    chars: int,
    on_first_audio: Callable[[float], None] | None = None,
) -> StreamingResponse:
    """The response for ``stream`` once its first piece is ready; SSE when ``media_type`` says so.

    ``received`` is the request's ``time.perf_counter()`` on arrival (time to first audio is
    measured from it); ``timeout`` bounds the wait for each piece.
    """
    try:
        first = await stream.next(timeout)
    except StopAsyncIteration:  # the engine yields at least one sentence for valid text
        raise InvalidInput("the input produced no audio; give words to speak") from None
    except BaseException:
        stream.close("failed before its first byte")
        raise
    ttfa = time.perf_counter() - received
    log.info("[%s] first audio after %.0f ms (sentence 1/%d)", stream.task_id, ttfa * 1000, first.total)
    if on_first_audio is not None:
        on_first_audio(ttfa)
    state = _State(stream, first, timeout)
    content = _sse_events(state, chars) if media_type == SSE_MEDIA_TYPE else _audio_bytes(state)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Task-Id": stream.task_id}
    return _StreamingSpeech(state, content, media_type=media_type, headers=headers)


@dataclass
class _State:
    stream: PoolStream[EncodedPiece]
    first: EncodedPiece
    timeout: float
    sent: int = 0  # bytes of audio handed to the server
    audio_s: float = 0.0

    async def pieces(self) -> AsyncIterator[bytes]:
        """The first piece (already made), then the rest as they come."""
        piece = self.first
        while True:
            self.sent += len(piece.data)
            self.audio_s = piece.audio_s
            yield piece.data
            try:
                piece = await self.stream.next(self.timeout)
            except StopAsyncIteration:
                log.info(
                    "[%s] streamed %d bytes (%.2f s of audio)", self.stream.task_id, self.sent, self.audio_s
                )
                return

    def failed(self, error: VoiceforgeError) -> None:
        log.warning(
            "[%s] stream failed after %d bytes: %s: %s",
            self.stream.task_id,
            self.sent,
            error.code,
            error.message,
        )


class _StreamingSpeech(StreamingResponse):
    def __init__(self, state: _State, content: AsyncIterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Abort:
            # Returning without finishing the body makes the server drop the connection: the
            # client sees an incomplete response. The cause is already logged with the task id.
            return
        finally:
            self._state.stream.close(f"ended by the client after {self._state.sent} bytes")


class _Abort(Exception):
    """A raw audio stream failed after its headers were sent; cut the connection."""


async def _audio_bytes(state: _State) -> AsyncIterator[bytes]:
    try:
        async for data in state.pieces():
            yield data
    except VoiceforgeError as e:
        state.failed(e)
        raise _Abort from e


async def _sse_events(state: _State, chars: int) -> AsyncIterator[bytes]:
    try:
        async for data in state.pieces():
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
    except VoiceforgeError as e:
        state.failed(e)
        kind = "server_error" if status_of(e) >= 500 else "invalid_request_error"
        yield _event({"type": "error", "error": {"message": e.message, "type": kind, "code": e.code}})
        return
    usage = {
        "input_tokens": chars,
        "output_tokens": 0,
        "total_tokens": chars,
        "audio_seconds": round(state.audio_s, 3),
    }
    yield _event({"type": "speech.audio.done", "usage": usage})


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()
