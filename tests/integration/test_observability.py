"""Observability against a real server: /metrics, stage log lines, JSON logs, the live log stream,
the engine restart and the retention sweep."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

WAIT_S = 30.0  # bound on anything asynchronous the tests wait for


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker (so a request can be made to queue), a fault file (to cause warnings on demand,
    with the breaker kept out of the way) and a retention sweep every second."""
    home = tmp_path_factory.mktemp("observability")
    server = launch(
        home,
        {
            "VOICEFORGE_WORKERS": "1",
            "VOICEFORGE_FAULT_FILE": str(home / "fault.json"),
            "VOICEFORGE_BREAKER_MIN_CALLS": "100000",
            "VOICEFORGE_RETENTION_EVERY_S": "1",
        },
    )
    yield server
    server.stop()


def samples(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics keyed by (name, labels)."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    all_samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return all_samples.get((name, frozenset(labels.items())), 0.0)


def files_served(all_samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return value(
        all_samples, "voiceforge_http_requests_total", route="/outputs/{name}", method="GET", status="200"
    )


def tts(client: httpx.Client, text: str, rid: str | None = None) -> dict[str, Any]:
    headers = {"X-Request-ID": rid} if rid else {}
    r = client.post("/tts", json={"text": text}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def tts_on(srv: Server, text: str, rid: str | None = None) -> dict[str, Any]:
    """``tts`` on a client of its own (for another thread)."""
    with srv.client() as c:
        return tts(c, text, rid)


def test_metrics_count_requests_by_route_template(srv: Server) -> None:
    with srv.client() as c:
        before = samples(c)
        body = tts(c, "Metrics count this request once.")
        again = tts(c, "Metrics count this request once.")
        assert again["cached"] is True
        for _ in range(2):
            assert c.get(f"/outputs/{body['task_id']}.wav").status_code == 200
        assert c.get("/no/such/page").status_code == 404
        # A request is counted once its handler returns, which for a file can be a moment after
        # the client has the last byte: wait (at most 5 s) for the counts to settle.
        deadline = time.monotonic() + 5
        after = samples(c)
        while files_served(after) - files_served(before) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            after = samples(c)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("voiceforge_http_requests_total", route="/tts", method="POST", status="200") == 2
    assert grew("voiceforge_http_requests_total", route="/outputs/{name}", method="GET", status="200") == 2
    assert grew("voiceforge_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert grew("voiceforge_http_request_duration_seconds_count", route="/tts", method="POST") == 2
    routes = {dict(labels).get("route") for (name, labels) in after if name.startswith("voiceforge_http")}
    assert not any(body["task_id"] in str(r) or "such" in str(r) for r in routes), routes
    assert grew("voiceforge_synthesis_rtf_count") == 1
    assert (
        0 < value(after, "voiceforge_synthesis_rtf_sum") < 10 * value(after, "voiceforge_synthesis_rtf_count")
    )
    assert grew("voiceforge_cache_lookups_total", result="hit") >= 1
    assert grew("voiceforge_cache_lookups_total", result="miss") >= 1
    assert value(after, "voiceforge_breaker_state", state="closed") == 1
    assert value(after, "voiceforge_breaker_state", state="open") == 0
    assert value(after, "voiceforge_workers") == 1 and value(after, "voiceforge_queue_capacity") >= 1
    assert ("voiceforge_queue_depth", frozenset()) in after and (
        "voiceforge_workers_busy",
        frozenset(),
    ) in after
    assert value(after, "voiceforge_engine_generation") >= 1
    assert ("voiceforge_time_to_first_audio_seconds_count", frozenset()) in after
    with srv.client() as c:
        assert "# TYPE voiceforge_jobs gauge" in c.get("/metrics").text  # the job backend's counts


def test_every_stage_line_carries_the_task_id(srv: Server) -> None:
    with srv.client() as c:
        task = tts(c, "Each stage of this request is logged.")["task_id"]
    mine = [line for line in srv.log.splitlines() if f"[{task}]" in line]
    for stage in ("received /tts", "synthesising 1/1", "encoded wav", f"saved outputs/{task}.wav"):
        assert any(stage in line for line in mine), (stage, mine)
    runtime = (srv.home / "logs" / "runtime.log").read_text(encoding="utf-8")
    assert f"[{task}] saved outputs/{task}.wav" in runtime


def test_json_log_lines_parse_and_carry_trace_and_cost(start_server: Any) -> None:
    server: Server = start_server(VOICEFORGE_LOG_JSON="1")
    with server.client() as c:
        task = tts(c, "JSON logs are for collectors.", rid="json-trace-1")["task_id"]
        assert c.get("/healthz", headers={"X-Request-ID": "json-trace-2"}).status_code == 200
    wait_for(lambda: "json-trace-2" in server.log)  # the access line is written after the response
    lines = [json.loads(line) for line in server.log.splitlines() if line.strip()]
    mine = [e for e in lines if e["trace_id"] == "json-trace-1"]
    assert {e.get("task_id") for e in mine if "saved outputs" in e["message"]} == {task}
    access = [e for e in mine if e["logger"] == "voiceforge.access"]
    assert len(access) == 1, mine
    line = access[0]
    assert line["level"] == "INFO" and line["status"] == 200 and line["route"] == "/tts"
    assert line["method"] == "POST" and isinstance(line["cost_ms"], float) and line["cost_ms"] > 0
    assert line["key_id"] != "" and line["time"].endswith("Z")
    health = [e for e in lines if e["trace_id"] == "json-trace-2" and e["logger"] == "voiceforge.access"]
    assert health and health[0]["route"] == "/healthz"


# -- the live log stream ---------------------------------------------------------------------------
class Events:
    """An SSE subscription read on the test's thread: ``next()`` returns (event, data)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> tuple[str, dict[str, Any]]:
        event, data = "message", ""
        for line in self._lines:
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line and data:
                return event, json.loads(data)
        raise AssertionError("the log stream ended")

    def until(self, wanted: str, *, text: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read until a ``wanted`` event whose line contains ``text``; return it and the log lines seen."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            event, data = self.next()
            if event == "log":
                seen.append(data)
            if event == wanted and text in data.get("line", ""):
                return data, seen
        raise AssertionError(f"no {wanted} event with {text!r} within {WAIT_S} s; saw {seen}")


def subscribe(client: httpx.Client, **params: Any) -> Any:
    # The read timeout bounds every wait: a line that never comes fails the test instead of hanging it.
    return client.stream("GET", "/admin/logs/stream", params=params, timeout=httpx.Timeout(WAIT_S))


def test_log_stream_delivers_a_line_caused_after_subscribing(srv: Server) -> None:
    rid = f"stream-{uuid.uuid4().hex[:8]}"
    with (
        srv.client() as c,
        subscribe(c, task=rid, backlog=0) as r,
        concurrent.futures.ThreadPoolExecutor() as ex,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = Events(r)
        ready = events.until("ready")[0]
        assert ready == {"backlog": 0, "level": "INFO", "task": rid}
        sent = time.monotonic()
        answer = ex.submit(tts_on, srv, "The live log shows this request.", rid)
        received, _ = events.until("log", text="received /tts")
        delay = time.monotonic() - sent
        task = answer.result(WAIT_S)["task_id"]
        saved, seen = events.until("log", text="saved outputs/")
    assert delay < 5, f"the line took {delay:.1f} s to arrive"
    assert received["level"] == "INFO" and rid in received["line"] and task in received["line"]
    assert f"[{task}] saved outputs/{task}.wav" in saved["line"]
    assert all(rid in line["line"] for line in seen), "the task filter let other lines through"
    seqs = [line["seq"] for line in seen]
    assert seqs == sorted(seqs)


def test_log_stream_backlog_comes_first(srv: Server) -> None:
    rid = f"backlog-{uuid.uuid4().hex[:8]}"
    with srv.client() as c:
        task = tts(c, "This request is over before anyone watches.", rid)["task_id"]
        with subscribe(c, task=task, backlog=3) as r:
            events = Events(r)
            assert events.until("ready")[0]["backlog"] == 3
            lines = [events.until("log")[0] for _ in range(3)]
    assert f"saved outputs/{task}" in lines[-1]["line"]
    assert all(task in line["line"] for line in lines)


def set_fault(srv: Server, **fault: Any) -> None:
    path = srv.home / "fault.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fault), encoding="utf-8")
    os.replace(tmp, path)  # atomic: the engine never reads half a file


def test_log_stream_level_filter(srv: Server) -> None:
    rid = f"level-{uuid.uuid4().hex[:8]}"
    with srv.client() as c, subscribe(c, level="warning", task=rid, backlog=0) as r:
        events = Events(r)
        events.until("ready")
        set_fault(srv, mode="raise")
        try:
            with srv.client() as other:
                failed = other.post(
                    "/tts", json={"text": "Failing on purpose."}, headers={"X-Request-ID": rid}
                )
        finally:
            set_fault(srv, mode=None)
        assert failed.status_code == 500 and failed.json()["code"] == "engine_failure"
        _warning, seen = events.until("log", text="-> 500")
    assert {line["level"] for line in seen} <= {"WARNING", "ERROR"}, seen
    assert any(line["level"] == "ERROR" and "engine task failed" in line["line"] for line in seen), seen
    with srv.client() as c:
        assert c.get("/admin/logs/stream", params={"level": "LOUD"}).status_code == 400


# -- restart -----------------------------------------------------------------------------------------
def test_restart_keeps_queued_work_and_bumps_the_generation(srv: Server) -> None:
    long_text = (
        "A restart waits for this long request to finish. It has several sentences, so it keeps "
        "the only worker busy for a while. Meanwhile another request waits in the queue."
    )
    with srv.client() as c, concurrent.futures.ThreadPoolExecutor(4) as ex:
        generation = c.get("/admin/restart").json()["generation"]
        running = ex.submit(tts_on, srv, long_text)
        wait_for(lambda: c.get("/readyz").json()["checks"]["queue"]["busy"] == 1)
        queued = ex.submit(tts_on, srv, "I was queued during the restart.")
        wait_for(lambda: c.get("/readyz").json()["checks"]["queue"]["depth"] == 1)

        stop = threading.Event()
        readiness: list[tuple[int, list[str]]] = []

        def watch() -> None:
            with srv.client() as w:
                while not stop.is_set():
                    r = w.get("/readyz")
                    readiness.append((r.status_code, r.json()["problems"]))
                    time.sleep(0.05)

        watcher = ex.submit(watch)
        restart = c.post("/admin/restart", params={"wait": "true"})
        stop.set()
        watcher.result(WAIT_S)
        assert restart.status_code == 200, restart.text
        done = restart.json()
        assert done["state"] == "done" and done["generation"] == generation + 1
        assert [s["stage"] for s in done["stages"]] == ["draining", "reloading", "warming", "resuming"]
        assert running.result(WAIT_S)["duration"] > 5
        assert queued.result(WAIT_S)["cached"] is False
        assert c.get("/admin/restart").json()["state"] == "done"
        assert c.get("/readyz").status_code == 200
        after = samples(c)
    assert any(code == 503 and any("restarting" in p for p in problems) for code, problems in readiness)
    assert value(after, "voiceforge_engine_restarts_total", outcome="done") >= 1
    assert value(after, "voiceforge_engine_generation") == generation + 1


def test_a_second_restart_while_one_runs_is_a_conflict(srv: Server) -> None:
    with srv.client() as c:
        first = c.post("/admin/restart")
        second = c.post("/admin/restart")
        assert first.status_code == 202 and first.json()["state"] == "running"
        assert second.status_code == 409 and "already running" in second.json()["error"]
        wait_for(lambda: c.get("/admin/restart").json()["state"] == "done")
        assert c.get("/readyz").status_code == 200


# -- retention -----------------------------------------------------------------------------------------
def test_retention_sweep_removes_old_outputs(srv: Server) -> None:
    with srv.client() as c:
        old = tts(c, "This output is about to expire.")
        fresh = tts(c, "This output is still fresh.")
        path = srv.home / "outputs" / f"{old['task_id']}.wav"
        assert path.is_file()
        three_days_ago = time.time() - 3 * 24 * 3600
        os.utime(path, (three_days_ago, three_days_ago))
        wait_for(lambda: not path.exists())
        assert c.get(f"/outputs/{old['task_id']}.wav").status_code == 404
        assert c.get(f"/outputs/{fresh['task_id']}.wav").status_code == 200
        again = tts(c, "This output is about to expire.")
        assert again["cached"] is False and again["task_id"] != old["task_id"]
    wait_for(lambda: "retention: removed 1 files" in srv.log)


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
