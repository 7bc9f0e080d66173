"""Fault injection: a test and chaos facility, never on in production.

When ``VOICEFORGE_FAULT_FILE`` names a file, the registry wraps the real engine in
:class:`FaultyEngine`. At every synthesis call it reads that file, a small JSON object::

    {"mode": "raise" | "hang" | "garbage" | null, "rate": 1.0, "hang_s": 30}

``raise``   the call fails with a RuntimeError (an engine bug, as the pool sees it);
``hang``    the call sleeps ``hang_s`` seconds before synthesising (a stuck engine);
``garbage`` the chunks carry NaN samples of the right length (broken numerics);
``null``, a missing file or ``rate`` 0: the real engine, untouched.

``rate`` is the chance (0–1) that a call misbehaves. Everything else is the real engine's, so
tests of the breaker, timeouts and restarts run the service's own code paths end to end.
Edit the file atomically (write a temporary file, then rename) so a call never reads half of it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voiceforge.engines.base import AudioChunk, Engine, SynthesisRequest, VoiceInfo

log = logging.getLogger(__name__)

MODES = ("raise", "hang", "garbage")


@dataclass(frozen=True)
class Fault:
    mode: str | None = None
    rate: float = 1.0
    hang_s: float = 30.0

    @classmethod
    def read(cls, path: Path) -> Fault:
        """The fault the file asks for; a missing or unreadable file means none (logged)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fault = cls(
                mode=data.get("mode"), rate=float(data.get("rate", 1.0)), hang_s=float(data.get("hang_s", 30))
            )
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.warning("fault file %s is not valid (%s); injecting nothing", path, e)
            return cls()
        if fault.mode is not None and fault.mode not in MODES:
            log.warning("fault file %s: unknown mode %r (use %s or null)", path, fault.mode, "/".join(MODES))
            return cls()
        return fault


class FaultyEngine:
    """The real ``inner`` engine, misbehaving as ``fault_file`` says at the time of each call."""

    def __init__(self, inner: Engine, fault_file: Path) -> None:
        self.inner = inner
        self.fault_file = Path(fault_file)
        self.name = inner.name  # cache keys and voice profiles stay those of the real engine
        self.capabilities = inner.capabilities
        self._random = random.Random()
        log.warning("fault injection is on: engine %s obeys %s", inner.name, self.fault_file)

    def voices(self) -> list[VoiceInfo]:
        return self.inner.voices()

    def dropped_tags(self, text: str) -> list[str]:
        return self.inner.dropped_tags(text)

    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        fault = Fault.read(self.fault_file)
        if fault.mode is None or self._random.random() >= fault.rate:
            yield from self.inner.stream(request)
            return
        log.warning("injecting fault %r into engine %s", fault.mode, self.name)
        if fault.mode == "raise":
            raise RuntimeError(f"injected fault from {self.fault_file}")
        if fault.mode == "hang":
            time.sleep(fault.hang_s)
            yield from self.inner.stream(request)
            return
        for chunk in self.inner.stream(request):
            yield replace(chunk, samples=np.full_like(chunk.samples, np.nan))
