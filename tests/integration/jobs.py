"""Polling a job over HTTP until it gets somewhere, for the job tests (local and Celery)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_for(
    client: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120.0
) -> dict[str, Any]:
    """The job's JSON once ``until`` holds for it; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        time.sleep(0.1)


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")
