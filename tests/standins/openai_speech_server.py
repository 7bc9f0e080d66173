"""Stand-in for a vLLM-Omni speech server (``vllm serve FunAudioLLM/Fun-CosyVoice3-0.5B-2512 --omni``).

Not vLLM-Omni: a small real HTTP server, run as its own process, speaking the part of the protocol
that vLLM-Omni documents for CosyVoice3 and that voiceforge's ``remote`` engine uses:

- ``GET /v1/models``: the one served model, no voiceforge fields.
- ``POST /v1/audio/speech``: JSON with ``model`` (must be the served name, else 404 as vLLM answers),
  ``input``, ``voice``, ``response_format`` (``pcm``: 16-bit little-endian mono at 24 kHz, sent as it
  is made when ``stream`` is true), ``speed``, and voice cloning by ``ref_audio`` (a URL or a
  ``data:audio/...;base64,`` URL) with ``ref_text``. CosyVoice3 has no presets, so cloning fields are
  required, as the vLLM-Omni docs say ("supply ref_audio + ref_text per request").
- No voice API: ``POST /v1/voices`` is a 404.

For the tests: ``POST /test/busy?count=N`` makes the next N speech requests a 503 with
``Retry-After: 1``; ``GET /test/requests`` lists the speech requests seen (``ref_audio`` replaced by
its decoded size). The audio is real speech from voiceforge's Kokoro engine, not a clone.

Run: ``python tests/standins/openai_speech_server.py PORT``.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

MODEL = "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"


def create_app() -> FastAPI:
    app = FastAPI()
    state: dict[str, Any] = {"busy": 0, "requests": [], "engine": None}
    lock = threading.Lock()

    def engine() -> Any:
        with lock:
            if state["engine"] is None:
                from voiceforge.config import Settings
                from voiceforge.engines.kokoro import KokoroEngine

                state["engine"] = KokoroEngine.from_settings(Settings(threads=1))
            return state["engine"]

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm-omni"}]}

    @app.post("/test/busy")
    def busy(count: int = 1) -> dict[str, int]:
        state["busy"] = count
        return {"busy": count}

    @app.get("/test/requests")
    def requests() -> list[dict[str, Any]]:
        return list(state["requests"])

    @app.post("/v1/audio/speech", response_model=None)
    async def speech(request: Request) -> Response:
        body = await request.json()
        if state["busy"] > 0:
            state["busy"] -= 1
            return JSONResponse({"error": {"message": "server busy"}}, 503, headers={"Retry-After": "1"})
        if body.get("model") != MODEL:
            message = f"The model `{body.get('model')}` does not exist."
            return JSONResponse({"error": {"message": message, "code": 404}}, 404)
        ref_audio, ref_text = body.get("ref_audio"), body.get("ref_text")
        if not ref_audio or not ref_text:
            message = "CosyVoice3 requires ref_audio and ref_text for voice cloning"
            return JSONResponse({"error": {"message": message, "code": 400}}, 400)
        header, _, data = str(ref_audio).partition(",")
        prompt, rate = soundfile.read(io.BytesIO(base64.b64decode(data)), dtype="float32")
        state["requests"].append(
            body | {"ref_audio": {"header": header, "seconds": round(len(prompt) / rate, 2), "rate": rate}}
        )
        if body.get("response_format") != "pcm" or body.get("stream") is not True:
            return JSONResponse({"error": {"message": "this stand-in streams pcm only", "code": 400}}, 400)
        return StreamingResponse(_pcm(engine(), str(body["input"]), float(body.get("speed", 1.0))))

    return app


def _pcm(engine: Any, text: str, speed: float) -> Iterator[bytes]:
    from voiceforge.engines.base import SynthesisRequest

    for chunk in engine.stream(SynthesisRequest(text=text, speed=speed)):
        yield (np.clip(chunk.samples, -1, 1) * 32767).astype("<i2").tobytes()


if __name__ == "__main__":
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
