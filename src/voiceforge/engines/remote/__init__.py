"""The remote engine: any OpenAI-compatible speech server (``POST /v1/audio/speech``).

For a GPU farm serving CosyVoice3 (vLLM-Omni) or another voiceforge node. One request here is one
upstream request with ``response_format: "pcm"`` (16-bit little-endian mono at
``VOICEFORGE_REMOTE_SAMPLE_RATE``) and ``stream: true``; the bytes become audio chunks as they
arrive, so the first audio is passed on before the remote has finished.

- Retries only where nothing can be said twice: a connection that never opened, or a 503 with
  ``Retry-After`` before any audio arrived. Once audio has flowed, a failure ends the stream.
- A circuit breaker of its own (the service's window-rate breaker) counts the remote's failures;
  while open, requests fail at once with a 503 that names the remote instead of waiting on it.
- Cloned voices: the prompt recording goes to the remote's voice API where it has one (voiceforge's
  ``POST /v1/voices``) once per prompt; servers without one (404/405) get it with every request as
  ``ref_audio`` (a data URL) and ``ref_text``, the fields vLLM-Omni's CosyVoice3 serving reads.
- What the remote can do is read from its ``GET /v1/models`` (voiceforge answers with its engine's
  capabilities and stock voices); other servers get conservative defaults.

Its parts: :mod:`.engine` (the engine), :mod:`.probe` (``/v1/models`` → capabilities and voices),
:mod:`.upstream` (the request with its retries, the remote's errors as ours).
"""

from voiceforge.engines.remote.engine import RemoteEngine

__all__ = ["RemoteEngine"]
