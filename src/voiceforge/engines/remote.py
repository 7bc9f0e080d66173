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
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from voiceforge.breaker import CircuitBreaker
from voiceforge.config import Settings
from voiceforge.engines.base import (
    AudioChunk,
    Capabilities,
    Prompt,
    SynthesisRequest,
    VoiceInfo,
    check_supported,
    pcm16_chunk,
)
from voiceforge.errors import (
    EngineFailure,
    EngineUnavailable,
    InvalidInput,
    Overloaded,
    Timeout,
    TooLarge,
)

log = logging.getLogger(__name__)

_PROBE_EVERY_S = 60.0  # how stale the remote's voice list and capabilities may get
_PROBE_RETRY_S = 5.0  # after a failed read: soon again, so a remote that was down is seen quickly
_MAX_RETRY_AFTER_S = 10.0  # a longer Retry-After is passed to our caller instead of waited out
_FIRST_CHUNK_S, _CHUNK_S = 0.1, 0.5  # the first audio leaves early; later pieces are bigger
_FALLBACK_VOICE = "alloy"  # for servers that list no voices: the name OpenAI-compatible ones accept


@dataclass(frozen=True)
class _Probe:
    capabilities: Capabilities
    voices: list[VoiceInfo]


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
        self._probe = _Probe(self._default_capabilities(), [])
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

    def _default_capabilities(self) -> Capabilities:
        return Capabilities(
            languages=frozenset({"zh", "en"}),
            modes=frozenset({"preset", "zero_shot", "instruct"}),
            instruct_controls=frozenset({"speed", "volume", "pitch", "emotion", "dialect"}),
            streaming=True,
            max_text_chars=4096,
            sample_rate=self.sample_rate,
            renders_tags=True,
            cloning="prompt",
            seed=False,  # the OpenAI speech request has no seed
            local=False,
            instruct_verbatim=True,  # sent as `instructions`; the remote judges what it can do
        )

    def _refresh_later(self) -> None:
        """Re-read the remote's models list in the background when it is stale (never blocks)."""
        with self._lock:
            every = _PROBE_EVERY_S if self._probed_ok else _PROBE_RETRY_S
            if self._probing or time.monotonic() - self._probed_at < every:
                return
            self._probing = True
        threading.Thread(target=self._refresh, name="remote-probe", daemon=True).start()

    def _refresh(self) -> None:
        try:
            response = self._client.get("/v1/models", timeout=5.0)
            probe = self._read_models(response.json()) if response.status_code == 200 else None
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

    def _read_models(self, body: Any) -> _Probe:
        """Capabilities and voices from a voiceforge ``/v1/models``; defaults for other servers."""
        entries = body.get("data", []) if isinstance(body, dict) else []
        info = next(
            (
                e["voiceforge"]
                for e in entries
                if isinstance(e, dict)
                and isinstance(e.get("voiceforge"), dict)
                and e["voiceforge"].get("kind") == "speech"
                and e.get("id") == self.model
            ),
            None,
        ) or next(
            (
                e["voiceforge"]
                for e in entries
                if isinstance(e, dict)
                and isinstance(e.get("voiceforge"), dict)
                and e["voiceforge"].get("kind") == "speech"
            ),
            None,
        )
        base = self._default_capabilities()
        if info is None:
            return _Probe(base, [])
        caps = info.get("capabilities") if isinstance(info.get("capabilities"), dict) else info
        modes = frozenset(caps.get("modes", base.modes)) & {"preset", "zero_shot", "instruct"}
        capabilities = Capabilities(
            languages=frozenset(caps.get("languages", base.languages)),
            modes=modes,
            instruct_controls=frozenset(caps.get("instruct_controls", base.instruct_controls)),
            streaming=True,
            max_text_chars=int(caps.get("max_text_chars", info.get("max_chars", base.max_text_chars))),
            sample_rate=self.sample_rate,
            renders_tags=bool(caps.get("renders_tags", False)),
            cloning="prompt",
            dialects=frozenset(caps.get("dialects", ())),
            tags=frozenset(caps.get("tags", ())),
            pronunciation=bool(caps.get("pronunciation", True)),
            speed_when_streaming=bool(caps.get("speed_when_streaming", True)),
            seed=False,
            local=False,
            instruct_verbatim=bool(caps.get("instruct_verbatim", base.instruct_verbatim)),
        )
        voices = [
            VoiceInfo(
                name=str(v["name"]),
                language=str(v.get("language", "unknown")),
                gender=str(v.get("gender", "unknown")),
                description="default" if v.get("default") else "",
            )
            for v in info.get("voices", [])
            if isinstance(v, dict) and "name" in v
        ]
        return _Probe(capabilities, voices)

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
        with self._open(body) as response:
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

    def _open(self, body: dict[str, Any]) -> Any:
        """The streaming response to ``POST /v1/audio/speech``, retried while nothing was heard."""
        attempt = 0
        while True:
            try:
                response = self._client.send(
                    self._client.build_request("POST", "/v1/audio/speech", json=body), stream=True
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if attempt < self.retries:
                    attempt += 1
                    log.warning("remote engine at %s: %s; retry %d", self.url, type(e).__name__, attempt)
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise EngineUnavailable(
                    f"the remote engine at {self.url} is unreachable ({type(e).__name__}: {e}); "
                    "check that it is running and VOICEFORGE_REMOTE_URL is right",
                    retry_after=5,
                ) from e
            except httpx.TimeoutException as e:
                raise Timeout(
                    f"the remote engine at {self.url} did not answer within {self._timeout_s:.0f} s"
                ) from e
            except httpx.HTTPError as e:
                raise EngineUnavailable(
                    f"the remote engine at {self.url} failed: {type(e).__name__}: {e}", retry_after=5
                ) from e
            if response.status_code == 200:
                return _Closing(response)
            response.read()
            response.close()
            wait = _retry_after(response)
            if response.status_code == 503 and wait is not None and attempt < self.retries:
                attempt += 1
                log.warning("remote engine at %s is busy; retry %d in %.1f s", self.url, attempt, wait)
                time.sleep(min(wait, _MAX_RETRY_AFTER_S))
                continue
            raise self._error(response)

    def _error(self, response: httpx.Response) -> Exception:
        """The remote's error as ours, named after the remote (5xx and auth count on the breaker)."""
        status = response.status_code
        message = f"the remote engine at {self.url} answered {status}: {_message(response)}"
        wait = int(_retry_after(response) or 5)
        if status in (400, 422):
            return InvalidInput(message)
        if status == 413:
            return TooLarge(message)
        if status == 429:
            return Overloaded(message, retry_after=wait)
        if status in (401, 403):
            return EngineUnavailable(message + " (check VOICEFORGE_REMOTE_API_KEY)", retry_after=wait)
        if status == 404:
            return EngineUnavailable(
                message + " (is VOICEFORGE_REMOTE_URL the server's root, without /v1?)", retry_after=wait
            )
        if status in (502, 503, 504):
            return EngineUnavailable(message, retry_after=wait)
        return EngineFailure(message)

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
            raise self._error(response)
        remote_id = str(response.json()["id"])
        log.info("remote engine at %s: prompt uploaded as voice %s", self.url, remote_id)
        with self._lock:
            self._voice_api = True
            self._remote_ids[prompt.key] = remote_id
        return remote_id


class _Closing:
    """A streamed response as a context manager that always closes it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> httpx.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """The human part of an error body: OpenAI's ``error.message``, voiceforge's ``error``, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return str(body)[:300]
