"""schemathesis over the whole OpenAPI spec of a real server, with auth off and with auth on (as
an admin, so every route is reached): anything a client can send gets a 2xx or a 4xx, never a
5xx. Bounded: a few generated cases per operation, slow ones skipped."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_dict

from tests.integration.conftest import Server, launch

pytestmark = pytest.mark.slow

# Operations whose valid requests run minutes of enrollment or restart the engine.
SKIP = {("POST", "/v1/voices"), ("POST", "/admin/restart"), ("GET", "/admin/logs/stream"),
        ("GET", "/v1/jobs/{job_id}/events")}  # fmt: skip


@pytest.fixture(scope="module", params=["auth off", "auth on"])
def api_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"VOICEFORGE_REQUEST_TIMEOUT_S": "20"}
    if request.param == "auth on":
        env["VOICEFORGE_AUTH"] = "on"
    srv = launch(tmp_path_factory.mktemp("schema"), env)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def headers(api_server: Server) -> dict[str, str]:
    """The first-start admin key when auth is on (printed once to stdout), else nothing."""
    keys = re.findall(r"vf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", api_server.log)
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


@pytest.fixture(scope="module")
def api_schema(api_server: Server, headers: dict[str, str]) -> schemathesis.BaseSchema:
    spec = httpx.get(f"{api_server.url}/openapi.json", headers=headers, timeout=30).json()
    schema = from_dict(spec)
    schema.config.update(base_url=api_server.url)
    return schema


def test_no_server_errors(api_schema: schemathesis.BaseSchema, headers: dict[str, str]) -> None:
    failures: list[str] = []
    calls: list[int] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: schemathesis.Case) -> None:
            response = case.call(timeout=60, headers=headers)
            calls.append(response.status_code)
            if response.status_code >= 500 and response.status_code not in (503, 504):
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")  # fmt: skip

        call()
    assert len(calls) > 100, f"only {len(calls)} generated calls"
    assert not failures, "\n".join(failures[:20])
