"""Every route except ``/health`` requires a caller identity, and one caller cannot see,
abort or retry another's jobs or dead letters (two identities, through ``lambda_handler``).

The routes are read from the API's own OpenAPI document, so a route added later is
covered without editing this test. (``/openapi.json`` and ``/swagger`` are documentation,
outside the schema, open by design in template.yaml.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import functions.api
from shared.config import Settings
from shared.queue import DeadLetter, Keys, record_dead_letter
from tests.faults.figures import record
from tests.test_api import SUB, Api, LambdaContainer, assert_error

ALICE = SUB
BOB = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
PUBLIC = {("get", "/health")}


def operations() -> list[tuple[str, str]]:
    schema = json.loads(functions.api.app.get_openapi_json_schema())
    return sorted((method, path) for path, item in schema["paths"].items() for method in item)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    box = LambdaContainer(settings)
    yield Api(box)
    box.close()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "0" * 32, path)


def test_the_schema_lists_the_routes_we_expect() -> None:
    assert set(operations()) >= {
        ("get", "/health"), ("post", "/jobs/{name}"), ("get", "/jobs/{job_id}"),
        ("delete", "/jobs/{job_id}"), ("get", "/jobs"), ("post", "/jobs/{job_id}/retry"),
        ("post", "/uploads"), ("get", "/dead-letters"),
        ("get", "/jobs/{job_id}/downloads/{file_name}"),
    }


@pytest.mark.parametrize(("method", "path"), operations())
@pytest.mark.parametrize("identity", ["missing", "empty", "malformed"])
def test_every_route_but_health_needs_an_identity(
    api: Api, method: str, path: str, identity: str
) -> None:
    sub = {"missing": None, "empty": "", "malformed": "../../other"}[identity]
    bodies: dict[str, Any] = {
        "/uploads": {"filename": "a.png", "content_type": "image/png", "size": 10},
        "/webhooks": {"url": "http://127.0.0.1/hook", "events": ["failed"]}}
    body = bodies.get(path, REPORT if method == "post" else None)
    query = None
    name = "generate_sales_report"
    response = api(method.upper(), concrete(path).replace("0" * 32, name)
                   if path == "/jobs/{name}" else concrete(path), body=body, query=query,
                   sub=sub)
    if (method, path) in PUBLIC:
        assert response.status == 200, response.text
    else:
        assert_error(response, 401, "unauthorized")


def _dead_letter(api: Api, settings: Settings, job_id: str, owner: str) -> None:
    letter = DeadLetter(id=job_id, name="generate_sales_report", owner=owner, payload=REPORT,
                        error_type="TransientJobError", error="gave up", tries=3,
                        failed_at=datetime.now(UTC))

    async def write(queue: Any) -> None:
        await record_dead_letter(queue.redis, Keys(settings.queue_name), 3600, letter)

    api.box.queue(write)


def test_one_caller_cannot_see_abort_or_retry_anothers_jobs_or_dead_letters(
    api: Api, settings: Settings
) -> None:
    # GIVEN a job and a dead letter of Alice's
    job = api("POST", "/jobs/generate_sales_report", body=REPORT, query={"delay_seconds": "600"},
              sub=ALICE).json["id"]
    dead = "d" * 32
    _dead_letter(api, settings, dead, ALICE)
    # WHEN Bob tries every route on them
    attempts = {
        "read": api("GET", f"/jobs/{job}", sub=BOB),
        "long-poll": api("GET", f"/jobs/{job}", query={"wait": "1"}, sub=BOB),
        "abort": api("DELETE", f"/jobs/{job}", sub=BOB),
        "retry job": api("POST", f"/jobs/{job}/retry", sub=BOB),
        "read dead letter": api("GET", f"/jobs/{dead}", sub=BOB),
        "retry dead letter": api("POST", f"/jobs/{dead}/retry", sub=BOB),
        "download": api("GET", f"/jobs/{job}/downloads/sales.csv", sub=BOB),
    }
    listing = api("GET", "/dead-letters", sub=BOB)
    jobs = api("GET", "/jobs", sub=BOB)
    same_key = [api("POST", "/jobs/generate_sales_report", body=REPORT, sub=who,
                    headers={"idempotency-key": "shared-key"}).json["id"] for who in (ALICE, BOB)]
    # THEN he learns nothing (404, as for an unknown id) and changes nothing
    unknown = "e" * 32
    for what, response in attempts.items():
        error = assert_error(response, 404, "not_found")
        target = dead if "dead" in what else job
        # ... exactly what an id that does not exist gets
        assert error["message"].replace(target, unknown) in (
            f"no job '{unknown}'", f"no dead letter '{unknown}'"), what
    assert listing.status == 200 and listing.json["items"] == []
    assert jobs.status == 200 and jobs.json["items"] == []
    assert same_key[0] != same_key[1]
    mine = api("GET", f"/jobs/{job}", sub=ALICE).json
    assert mine["status"] == "scheduled"
    assert [i["id"] for i in api("GET", "/dead-letters", sub=ALICE).json["items"]] == [dead]
    assert [i["id"] for i in api("GET", "/jobs", sub=ALICE).json["items"]] == [same_key[0], job]
    assert api("POST", f"/jobs/{dead}/retry", sub=ALICE).status == 202
    record("security two identities", routes_needing_identity=len(operations()) - 1,
           cross_caller_attempts=len(attempts) + 1, cross_caller_leaks=0)
