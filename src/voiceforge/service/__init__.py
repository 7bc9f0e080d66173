"""Synthesis orchestration: voice resolution, cache, worker pool, circuit breaker, output storage.

Knows engines only through their protocol and nothing of HTTP; the server and the job backends
call it.
"""
