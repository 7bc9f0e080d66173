"""The OpenAI-compatible audio API: ``/v1/audio/speech`` (:mod:`.speech`), ``/v1/audio/transcriptions``
(:mod:`.transcriptions`), ``/v1/models`` (:mod:`.models`), under one router.

The official ``openai`` SDKs work against it unmodified (``base_url=<server>/v1``). Differences:

- ``model``: ``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts`` (dated or not) and ``voiceforge`` mean the
  deployment's default engine; an engine's name (``kokoro``, ``remote``, ``cosyvoice``, as
  ``VOICEFORGE_ENGINES`` offers them) picks that engine; anything else is a 400 listing these.
  ``instructions`` work with every model (they go to the engine's instruct mode).
- ``voice``: a stock voice, a saved voice (id or name, or ``{"id": ...}``), or an OpenAI voice name.
  OpenAI names map onto stock voices by a fixed rule (:func:`.speech.openai_voices`): the engine's namesake
  when it has one (Kokoro's ``af_alloy`` for ``alloy``), otherwise the stock voices of the same gender
  in turn, the default voice first. With the five voices that come with pip that gives alloy,
  shimmer → jf_gongitsune; coral, marin → jf_alpha; nova → jf_nezumi; sage → jf_tebukuro; ash,
  ballad, cedar, echo, fable, onyx, verse → jm_kumo. A saved voice with an OpenAI name wins.
  ``GET /v1/models`` lists the mapping in force.
- ``speed``: 0.5–2.0. OpenAI allows 0.25–4.0; outside our range is a 400 naming it, never a silent clamp.
- Speech always streams (:mod:`voiceforge.server.speech_stream`): ``stream_format=audio`` (default)
  sends the encoded bytes with chunked transfer as each sentence is made, ``sse`` sends OpenAI's
  ``speech.audio.delta`` / ``speech.audio.done`` events. The first sentence is cut after a clause
  where that is safe (``quick_start``), so the first audio leaves sooner. A streamed FLAC cannot
  state its length up front: ffmpeg and browsers read it, libsndfile (soundfile) fails at its end.
- Transcription uses the bundled Whisper base whatever ``model`` says; ``prompt`` and ``temperature``
  are accepted and ignored; the response formats are :mod:`voiceforge.asr.formats`.
"""

from __future__ import annotations

from fastapi import APIRouter

from voiceforge.server.routes.openai import models, speech, transcriptions

router = APIRouter()
for _module in (speech, transcriptions, models):
    router.include_router(_module.router)
