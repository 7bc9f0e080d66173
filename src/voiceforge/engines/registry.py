"""Engines by name. A new engine is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from voiceforge.config import Settings
from voiceforge.engines.base import Engine
from voiceforge.errors import InvalidInput


def _kokoro(settings: Settings) -> Engine:
    from voiceforge.engines.kokoro import KokoroEngine

    return KokoroEngine.from_settings(settings)


def _remote(settings: Settings) -> Engine:
    from voiceforge.engines.remote import RemoteEngine

    return RemoteEngine.from_settings(settings)


def _cosyvoice(settings: Settings) -> Engine:
    from voiceforge.engines.cosyvoice import CosyVoiceEngine

    return CosyVoiceEngine.from_settings(settings)


def _cosyvoice_grpc(settings: Settings) -> Engine:
    from voiceforge.engines.cosyvoice_grpc import CosyVoiceGrpcEngine

    return CosyVoiceGrpcEngine.from_settings(settings)


ENGINES: dict[str, Callable[[Settings], Engine]] = {
    "kokoro": _kokoro,
    "remote": _remote,
    "cosyvoice": _cosyvoice,
    "cosyvoice-grpc": _cosyvoice_grpc,
}


def create_engine(settings: Settings) -> Engine:
    """Build the engine named by `settings.engine` (loads its model)."""
    try:
        factory = ENGINES[settings.engine]
    except KeyError:
        raise InvalidInput(
            f"unknown engine {settings.engine!r}; available: {', '.join(sorted(ENGINES))}"
        ) from None
    engine = factory(settings)
    if settings.fault_file is not None:  # tests and chaos drills only (engines/faults.py)
        from voiceforge.engines.faults import FaultyEngine

        return FaultyEngine(engine, settings.fault_file)
    return engine
