"""Run a batch: at most ``concurrency`` items in flight, each retried with backoff, each result
recorded as it finishes, outputs named by item id.

Two synthesizers: :class:`RemoteSynthesizer` (a voiceforge server through the async SDK; every
item carries an Idempotency-Key derived from its request, so a retry or a resumed run never makes
the server synthesise it twice) and :class:`LocalSynthesizer` (the embedded engine, no server).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from voiceforge import errors as e
from voiceforge.batch.manifest import Item
from voiceforge.batch.results import Result, ResultsFile
from voiceforge.client import NO_RETRY, AsyncClient, ConnectionFailed, RetryPolicy

if TYPE_CHECKING:
    from voiceforge.config import Settings
    from voiceforge.engines.base import Engine
    from voiceforge.voices.profile import VoiceProfile

log = logging.getLogger(__name__)

# Worth another attempt: the server was busy, down, slow, or the engine failed on a good input.
RETRYABLE = (
    e.RateLimited,
    e.Overloaded,
    e.EngineUnavailable,
    e.Timeout,
    e.EngineFailure,
    e.ModelUnavailable,
    e.StorageUnavailable,
    e.SlowRequest,
    ConnectionFailed,
)


class Synthesizer(Protocol):
    async def synthesize(self, item: Item) -> tuple[bytes, float]:
        """The encoded audio of ``item`` and its duration in seconds."""
        ...

    async def close(self) -> None: ...


class RemoteSynthesizer:
    """POST /tts then GET the output, through :class:`~voiceforge.client.AsyncClient`."""

    def __init__(self, url: str, *, api_key: str | None = None, connections: int = 16) -> None:
        # The runner retries whole items (and counts the attempts); the client sends each once.
        self.client = AsyncClient(url, api_key=api_key, retry=NO_RETRY, max_connections=connections)

    async def synthesize(self, item: Item) -> tuple[bytes, float]:
        key = f"batch-{item.fingerprint()[:48]}"
        try:
            return await self._once(item, key)
        except e.NotFound:  # a replayed answer whose output the server has since removed
            return await self._once(item, None)  # a new key: spoken (or served from cache) again

    async def _once(self, item: Item, key: str | None) -> tuple[bytes, float]:
        result = await self.client.tts(
            item.text,
            voice=item.voice,
            prompt_audio=item.prompt,
            prompt_text=item.prompt_text,
            mode=item.mode,
            instruct=item.instruct,
            seed=item.seed,
            speed=item.speed,
            format=item.format,
            idempotency_key=key,
        )
        return await self.client.download(result.audio_url), result.duration

    async def close(self) -> None:
        await self.client.aclose()


class LocalSynthesizer:
    """The embedded engine in this process; items run one at a time (each uses every core)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._profiles: dict[str, VoiceProfile] = {}

    async def synthesize(self, item: Item) -> tuple[bytes, float]:
        return await asyncio.to_thread(self._run, item)

    async def close(self) -> None:
        return None

    def _run(self, item: Item) -> tuple[bytes, float]:
        from voiceforge.audio.encode import encode, parse_format
        from voiceforge.engines.base import SynthesisRequest, synthesize
        from voiceforge.service.plan import infer_mode

        with self._lock:
            engine = self._load()
            profile = self._profile(engine, item)
            mode = item.mode or infer_mode(item.instruct, cloned=profile is not None)
            request = SynthesisRequest(
                text=item.text,
                voice=None if profile else item.voice,
                speed=item.speed,
                seed=item.seed,
                mode=mode,  # type: ignore[arg-type]
                instruct=item.instruct,
                profile=profile,
            )
            result = synthesize(engine, request)
        data = encode(result.samples, result.sample_rate, parse_format(item.format))
        return data, round(result.duration_s, 3)

    def _load(self) -> Engine:
        if self._engine is None:
            from voiceforge.engines.registry import create_engine

            self._engine = create_engine(self.settings)
        return self._engine

    def _profile(self, engine: Engine, item: Item) -> VoiceProfile | None:
        if item.prompt is not None:
            key = f"prompt:{item.prompt}:{item.prompt_text}"
            if key not in self._profiles:
                from voiceforge.service.models import Models

                models = Models(self.settings, engine_factory=lambda _settings: engine)
                cloned = models.clone(item.prompt.read_bytes(), transcript=item.prompt_text)
                self._profiles[key] = cloned.profile
            return self._profiles[key]
        if item.voice is None or item.voice in {v.name for v in engine.voices()}:
            return None
        if item.voice not in self._profiles:
            from voiceforge.voices.library import VoiceLibrary

            library = VoiceLibrary(self.settings.data_dir, self.settings.database_url)
            try:
                self._profiles[item.voice] = library.profile(item.voice)
            except e.NotFound:
                stock = ", ".join(v.name for v in engine.voices())
                raise e.InvalidInput(
                    f"unknown voice {item.voice!r}; choose a stock voice ({stock}) or a saved one "
                    "(`voiceforge voices` lists them)"
                ) from None
        return self._profiles[item.voice]


@dataclass
class Summary:
    total: int
    skipped: int = 0  # finished in an earlier run (--resume)
    succeeded: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    attempts: int = 0


Listener = Callable[[Result], None]


async def run(
    items: list[Item],
    synth: Synthesizer,
    out: Path,
    *,
    concurrency: int,
    policy: RetryPolicy,
    resume: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Listener | None = None,
) -> Summary:
    """Run ``items`` (those not already finished when ``resume``); results go to ``out``."""
    if concurrency < 1:
        raise e.InvalidInput(f"concurrency is {concurrency}; use 1 or more")
    results = ResultsFile(out)
    earlier = results.load() if resume else {}
    todo = [
        item
        for item in items
        if not ((r := earlier.get(item.id)) and results.done(r) and r.fingerprint == item.fingerprint())
    ]
    summary = Summary(total=len(items), skipped=len(items) - len(todo))
    if on_start:
        on_start(len(items), summary.skipped)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker() -> None:
        # A fixed set of workers, not a task per item: never more in flight than asked.
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            result = await _one(item, synth, out, policy)
            results.append(result)
            summary.attempts += result.attempts
            if result.status == "succeeded":
                summary.succeeded += 1
                summary.audio_s += result.duration or 0.0
            else:
                summary.failed += 1
            if on_result:
                on_result(result)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
    summary.wall_s = time.perf_counter() - started
    results.compact()
    return summary


async def _one(item: Item, synth: Synthesizer, out: Path, policy: RetryPolicy) -> Result:
    started = time.perf_counter()
    fingerprint = item.fingerprint()
    attempt = 0
    while True:
        attempt += 1
        try:
            data, duration = await synth.synthesize(item)
            await asyncio.to_thread(_write, out / item.filename, data)
        except e.VoiceforgeError as error:
            if attempt < policy.attempts and isinstance(error, RETRYABLE):
                hint = getattr(error, "retry_after_s", None) or getattr(error, "retry_after", None)
                wait = policy.delay(attempt, float(hint) if hint is not None else None)
                log.info("[%s] attempt %d: %s; retrying in %.1f s", item.id, attempt, error.message, wait)
                await asyncio.sleep(wait)
                continue
            log.warning("[%s] failed after %d attempt(s): %s", item.id, attempt, error.message)
            elapsed = round(time.perf_counter() - started, 3)
            return Result(
                item.id, "failed", None, None, attempt, error.message, error.code, fingerprint, elapsed
            )
        except OSError as error:
            elapsed = round(time.perf_counter() - started, 3)
            message = f"cannot write {out / item.filename}: {error.strerror or error}"
            return Result(item.id, "failed", None, None, attempt, message, "os_error", fingerprint, elapsed)
        elapsed = round(time.perf_counter() - started, 3)
        return Result(
            item.id, "succeeded", item.filename, duration, attempt, None, None, fingerprint, elapsed
        )


def _write(path: Path, data: bytes) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(data)
    part.replace(path)
