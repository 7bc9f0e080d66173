"""The :class:`RemoteEngine`: the remote's voices, one upstream request per synthesis turned into
audio chunks as the bytes arrive, behind its own circuit breaker, and cloned voices uploaded once."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from voiceforge.breaker import CircuitBreaker
from voiceforge.config import Settings
from voiceforge.engines.base import (
    AudioChunk,
    Prompt,
    SynthesisRequest,
    VoiceInfo,
    check_supported,
    pcm16_chunk,
)
from voiceforge.engines.remote.probe import (
    PROBE_EVERY_S,
    PROBE_RETRY_S,
    Probe,
    default_capabilities,
    read_models,
)
from voiceforge.engines.remote.upstream import as_error, open_speech
from voiceforge.errors import EngineFailure, EngineUnavailable, InvalidInput, Timeout

log = logging.getLogger(__name__)

_FIRST_CHUNK_S, _CHUNK_S = 0.1, 0.5  # the first audio leaves early; later pieces are bigger
_FALLBACK_VOICE = "alloy"  # for servers that list no voices: the name OpenAI-compatible ones accept


class RemoteEngine:
    name = "remote"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str = "tts-1",
        default_voice: str | None = None,
        sample_rate: int = 24000,
        connect_timeout_s: float = 5.0,
        timeout_s: float = 120.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.default_voice = default_voice
        self.sample_rate = sample_rate
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._remote_ids: dict[str, str] = {}  # prompt key → the remote's voice id
        self._voice_api: bool | None = None
        self._probed_at = 0.0
        self._probed_ok = False
        self._probing = False
        self._probe = Probe(default_capabilities(sample_rate), [])
        self.capabilities = self._probe.capabilities
        self._refresh()  # blocking once, at construction: the voice list is there from the start

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEngine:
        if not settings.remote_url:
            raise InvalidInput(
                "engine remote needs the speech server's address: set VOICEFORGE_REMOTE_URL "
                "(e.g. http://gpu-node:8091 for vLLM-Omni, or another voiceforge's http://host:7860)"
            )
        if not settings.remote_url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"VOICEFORGE_REMOTE_URL {settings.remote_url[:80]!r} is not an http(s) URL; "
                "give one such as http://gpu-node:8091"
            )
        return cls(
            settings.remote_url,
            api_key=settings.remote_api_key,
            model=settings.remote_model,
            default_voice=settings.remote_voice,
            sample_rate=settings.remote_sample_rate,
            connect_timeout_s=settings.remote_connect_timeout_s,
            timeout_s=settings.remote_timeout_s,
            retries=settings.remote_retries,
            breaker=CircuitBreaker.from_settings(settings),
        )

    # -- what the remote offers ------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        """The remote's stock voices; for a server that lists none, its default voice by name."""
        self._refresh_later()
        if self._probe.voices:
            return list(self._probe.voices)
        # OpenAI voice names then map onto this one (and a request may still name any voice the
        # remote knows through a saved voice); vLLM-Omni's CosyVoice3 has no presets at all.
        return [VoiceInfo(self.default_voice or _FALLBACK_VOICE, "unknown", "unknown", "default")]

    def dropped_tags(self, text: str) -> list[str]:
        return []  # markup goes to the remote verbatim; it renders or drops tags itself

    def close(self) -> None:
        self._client.close()

    def _refresh_later(self) -> None:
        """Re-read the remote's models list in the background when it is stale (never blocks)."""
        with self._lock:
            every = PROBE_EVERY_S if self._probed_ok else PROBE_RETRY_S
            if self._probing or time.monotonic() - self._probed_at < every:
                return
            self._probing = True
        threading.Thread(target=self._refresh, name="remote-probe", daemon=True).start()

    def _refresh(self) -> None:
        try:
            response = self._client.get("/v1/models", timeout=5.0)
            probe = (
                read_models(response.json(), self.model, self.sample_rate)
                if response.status_code == 200
                else None
            )
        except (httpx.HTTPError, ValueError, RuntimeError) as e:  # RuntimeError: client closed
            log.warning(
                "remote engine at %s: cannot read /v1/models (%s); keeping what was known", self.url, e
            )
            probe = None
        with self._lock:
            if probe is not None:
                self._probe, self.capabilities = probe, probe.capabilities
            self._probed_at = time.monotonic()
            self._probed_ok = probe is not None
            self._probing = False

    # -- synthesis -------------------------------------------------------------------------------
    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        check_supported(self, request)
        self._refresh_later()
        try:
            self.breaker.before_call()
        except EngineUnavailable as e:
            raise EngineUnavailable(
                f"the remote engine at {self.url} failed too often recently; requests to it are paused "
                f"for {e.retry_after} s (check that server, then retry)",
                retry_after=e.retry_after,
            ) from None
        failed = False  # every call that passed the breaker reports its outcome, however it ends
        try:
            yield from self._pcm(request)
        except (EngineFailure, EngineUnavailable, Timeout):
            failed = True
            raise
        finally:
            self.breaker.record(failed=failed)

    def _pcm(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        body = self._body(request)
        rate = self.sample_rate
        bytes_per_s = rate * 2
        index = 0
        offset = 0.0
        pending = b""
        started = time.perf_counter()
        opened = open_speech(self._client, self.url, body, retries=self.retries, timeout_s=self._timeout_s)
        with opened as response:
            try:
                for data in response.iter_bytes():
                    pending += data
                    wanted = _FIRST_CHUNK_S if index == 0 else _CHUNK_S
                    if len(pending) >= wanted * bytes_per_s:
                        usable = len(pending) - len(pending) % 2
                        chunk = pcm16_chunk(pending[:usable], rate, index, offset, started, request)
                        pending = pending[usable:]
                        offset += chunk.duration_s
                        index += 1
                        started = time.perf_counter()
                        yield chunk
            except httpx.TimeoutException as e:
                raise Timeout(
                    f"the remote engine at {self.url} sent nothing for {self._timeout_s:.0f} s "
                    f"after {offset:.1f} s of audio (raise VOICEFORGE_REMOTE_TIMEOUT_S, or check the remote)"
                ) from e
            except httpx.HTTPError as e:
                raise EngineFailure(
                    f"the remote engine at {self.url} broke off after {offset:.1f} s of audio: "
                    f"{type(e).__name__}: {e}"
                ) from e
        usable = len(pending) - len(pending) % 2
        if usable or index == 0:
            yield pcm16_chunk(pending[:usable], rate, index, offset, started, request)

    def _body(self, request: SynthesisRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": request.text,  # markup and tags verbatim: the remote's own frontend reads them
            "response_format": "pcm",
            "stream_format": "audio",
            "stream": True,  # vLLM-Omni streams PCM only when asked; voiceforge always streams
            "speed": request.speed,
        }
        if request.instruct:
            body["instructions"] = request.instruct
        if request.prompt is not None:
            # Only a saved voice with its speaker's consent on record is saved on the remote too; a
            # one-off clone travels with its request and is kept nowhere.
            remote_id = self._remote_voice(request.prompt) if request.prompt.consent else None
            if remote_id is not None:
                body["voice"] = remote_id
            else:  # no voice API: the recording travels with the request
                audio = base64.b64encode(request.prompt.path.read_bytes()).decode("ascii")
                body["ref_audio"] = f"data:audio/wav;base64,{audio}"
                body["ref_text"] = request.prompt.transcript
                body["voice"] = self._default_voice() or _FALLBACK_VOICE
        else:
            body["voice"] = request.voice or self._default_voice() or _FALLBACK_VOICE
        return body

    def _default_voice(self) -> str | None:
        if self.default_voice:
            return self.default_voice
        voices = self._probe.voices
        chosen = next((v for v in voices if v.description == "default"), voices[0] if voices else None)
        return chosen.name if chosen else None

    # -- cloned voices ---------------------------------------------------------------------------
    def _remote_voice(self, prompt: Prompt) -> str | None:
        """The remote's id for this prompt, uploading it once; None when it has no voice API."""
        with self._lock:
            known = self._remote_ids.get(prompt.key)
            if known is not None or self._voice_api is False:
                return known
        name = f"vf-{prompt.key[:20]}"
        try:
            response = self._client.post(
                "/v1/voices",
                data={"name": name, "transcript": prompt.transcript, "consent": str(prompt.consent).lower()},
                files={"file": ("prompt.wav", prompt.path.read_bytes(), "audio/wav")},
                timeout=httpx.Timeout(max(self._timeout_s, 300.0), connect=self._client.timeout.connect),
            )
            if response.status_code == 409:  # uploaded before (by us, or another node of ours)
                response = self._client.get(f"/v1/voices/{name}")
        except httpx.TransportError as e:
            raise EngineUnavailable(
                f"the remote engine at {self.url} is unreachable while uploading a voice ({e}); "
                "check that it is running",
                retry_after=5,
            ) from e
        if response.status_code in (404, 405):
            log.info("remote engine at %s has no voice API; prompts go with each request", self.url)
            with self._lock:
                self._voice_api = False
            return None
        if response.status_code not in (200, 201):
            raise as_error(response, self.url)
        remote_id = str(response.json()["id"])
        log.info("remote engine at %s: prompt uploaded as voice %s", self.url, remote_id)
        with self._lock:
            self._voice_api = True
            self._remote_ids[prompt.key] = remote_id
        return remote_id
