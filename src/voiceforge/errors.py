"""One rooted error hierarchy. Every message names the offending value and what is allowed.

The HTTP layer maps these to status codes in one place; the CLI prints ``str(error)`` and exits
non-zero. Nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class VoiceforgeError(Exception):
    """Base of every error voiceforge raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidInput(VoiceforgeError):
    """The caller sent something we cannot use (bad text, markup, parameter, file)."""

    code = "invalid_input"


class Unsupported(VoiceforgeError):
    """The request is valid but the chosen engine cannot do it."""

    code = "unsupported"


class NotFound(VoiceforgeError):
    """A named thing (voice, job, output) does not exist."""

    code = "not_found"


class ModelUnavailable(VoiceforgeError):
    """A bundled model is missing or corrupted; reinstalling the named package fixes it."""

    code = "model_unavailable"


class EngineFailure(VoiceforgeError):
    """The engine failed on input that should have worked."""

    code = "engine_failure"


class Overloaded(VoiceforgeError):
    """Too much work queued; retry later."""

    code = "overloaded"
