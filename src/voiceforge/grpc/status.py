"""Every voiceforge error to a gRPC status code, in one place (the gRPC twin of server/errors.py).

A call that fails ends with the status of the error's class and the same message HTTP sends. Its
trailing metadata carries ``voiceforge-code`` (the error's ``code``, e.g. ``unsupported``) and,
where the error has one, ``retry-after`` in seconds, so a voiceforge client can rebuild the exact
error while any other gRPC client still gets a standard code it knows how to treat.
"""

from __future__ import annotations

import grpc

from voiceforge import errors as e

CODE_KEY = "voiceforge-code"
RETRY_AFTER_KEY = "retry-after"
SAMPLE_RATE_KEY = "sample-rate"  # initial metadata: the rate of the int16 PCM that follows
TASK_ID_KEY = "task-id"  # initial metadata: the id the server's log lines carry for this call

STATUS: dict[type[e.VoiceforgeError], grpc.StatusCode] = {
    e.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    e.Unsupported: grpc.StatusCode.INVALID_ARGUMENT,
    e.TooLarge: grpc.StatusCode.INVALID_ARGUMENT,  # the caller must send less; not a server resource
    e.Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    e.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    e.NotFound: grpc.StatusCode.NOT_FOUND,
    e.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    e.Cancelled: grpc.StatusCode.CANCELLED,
    e.SlowRequest: grpc.StatusCode.DEADLINE_EXCEEDED,
    e.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    e.EngineFailure: grpc.StatusCode.INTERNAL,
    e.ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    e.Overloaded: grpc.StatusCode.UNAVAILABLE,
    e.EngineUnavailable: grpc.StatusCode.UNAVAILABLE,
    e.StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    e.Timeout: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: e.VoiceforgeError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def trailers_of(error: e.VoiceforgeError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that goes with ``error``: its code, and Retry-After where it has one."""
    trailers = [(CODE_KEY, error.code)]
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        trailers.append((RETRY_AFTER_KEY, str(retry_after)))
    return tuple(trailers)
