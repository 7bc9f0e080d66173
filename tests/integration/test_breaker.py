"""The engine circuit breaker end to end: a real server whose real engine is made to fail through
the fault-injection file (engines/faults.py), then made healthy again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

OPEN_S = 2


def set_fault(path: Path, **fault: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fault), encoding="utf-8")
    os.replace(tmp, path)  # atomic: the engine never reads half a file


def breaker_state(client: httpx.Client) -> str:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "voiceforge_breaker_state":
            states = [s.labels["state"] for s in family.samples if s.value == 1]
            assert len(states) == 1, family.samples
            return states[0]
    raise AssertionError("no voiceforge_breaker_state in /metrics")


def test_failing_engine_opens_the_breaker_and_a_probe_closes_it(start_server: Any, tmp_path: Path) -> None:
    fault = tmp_path / "fault.json"
    srv: Server = start_server(
        VOICEFORGE_FAULT_FILE=str(fault),
        VOICEFORGE_BREAKER_OPEN_S=str(OPEN_S),
        VOICEFORGE_BREAKER_MIN_CALLS="3",
        VOICEFORGE_WORKERS="1",
    )
    with srv.client() as c:
        assert c.post("/tts", json={"text": "Healthy before the fault."}).status_code == 200
        assert breaker_state(c) == "closed"

        set_fault(fault, mode="raise")
        failures = []
        for i in range(8):  # distinct texts: the cache must not answer
            r = c.post("/tts", json={"text": f"Attempt {i} meets a broken engine."})
            if r.status_code != 500:
                break
            failures.append(r.json())
        assert 2 <= len(failures) <= 3, failures  # 3 calls in the window, most of them failed
        assert all(f["code"] == "engine_failure" and "injected fault" in f["error"] for f in failures)

        assert r.status_code == 503, r.text
        refused = r.json()
        assert refused["success"] is False and refused["code"] == "engine_unavailable"
        assert "failed too often" in refused["error"] and "retry" in refused["error"]
        assert 1 <= int(r.headers["retry-after"]) <= OPEN_S
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "engine circuit breaker open" in ready.json()["problems"]
        assert breaker_state(c) == "open"

        set_fault(fault, mode=None)
        time.sleep(OPEN_S + 0.2)
        assert breaker_state(c) == "half_open"
        probe = c.post("/tts", json={"text": "The probe finds the engine healthy."})
        assert probe.status_code == 200, probe.text
        assert breaker_state(c) == "closed"
        assert c.get("/readyz").status_code == 200
        assert c.post("/tts", json={"text": "And service is back to normal."}).status_code == 200

        # Broken numerics (NaN audio) are an engine failure too, never a file served as success.
        set_fault(fault, mode="garbage")
        try:
            r = c.post("/tts", json={"text": "This request meets broken numerics."})
        finally:
            set_fault(fault, mode=None)
        assert r.status_code == 500 and "invalid audio" in r.json()["error"], r.text
        assert c.post("/tts", json={"text": "This request meets broken numerics."}).status_code == 200

    archive = list((srv.home / "logs" / "error_archive").glob("errors-*.log"))
    assert archive and "injected fault" in archive[0].read_text(encoding="utf-8")
    assert "circuit breaker open" in srv.log and "circuit breaker closed: probe succeeded" in srv.log


def test_hung_engine_times_out(start_server: Any, tmp_path: Path) -> None:
    """A stuck engine gives 504 at the request limit, not a hung client."""
    fault = tmp_path / "fault.json"
    set_fault(fault, mode=None)
    srv: Server = start_server(VOICEFORGE_FAULT_FILE=str(fault), VOICEFORGE_REQUEST_TIMEOUT_S="5")
    with srv.client() as c:
        set_fault(fault, mode="hang", hang_s=6)
        started = time.monotonic()
        r = c.post("/tts", json={"text": "This request meets a stuck engine."})
        waited = time.monotonic() - started
        set_fault(fault, mode=None)
        assert r.status_code == 504 and r.json()["code"] == "timeout", r.text
        assert waited < 15
