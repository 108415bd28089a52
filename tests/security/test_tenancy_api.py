"""Bounds on what a caller controls: who they can be, how far ahead a job may start, how big
an error answer gets, how many jobs a retry makes, how big a result may be."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.identity import is_owner
from shared.api_models import UploadKey
from shared.config import Settings
from shared.queue import DeadLetter, JobQueue, Keys, record_dead_letter
from shared.queue.listing import JobFilter
from tests.test_api import Api, LambdaContainer, assert_error

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


@pytest.fixture
def api(container: LambdaContainer) -> Api:
    return Api(container)


# --- who a caller can be ------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["auth0|5f7c8ec7c33c6c004bbafe82", "AAAAAAAAAAAAAAAAAAAAAO_x-y",
                                 "google-oauth2:1234", "ada@example.com", "a.b+c-d",
                                 "7d6c1f2e-0c3a-4b8e-9f1d-2a5b6c7d8e9f", "a" * 128])
def test_subjects_real_identity_providers_issue_are_callers(api: Api, sub: str) -> None:
    assert is_owner(sub)
    created = api("POST", "/jobs/generate_sales_report", body=REPORT, sub=sub)
    assert created.status == 202, created.text
    assert api("GET", f"/jobs/{created.json['id']}", sub=sub).status == 200


@pytest.mark.parametrize("sub", ["dev-user\n", "a/b", " a", "a b", "_a", "a" * 129, "..", "ä"])
def test_subjects_that_cannot_be_a_key_segment_are_refused(api: Api, sub: str) -> None:
    assert not is_owner(sub)
    refused = api("POST", "/jobs/generate_sales_report", body=REPORT, sub=sub)
    error = assert_error(refused, 401, "unauthorized")
    assert "unsupported format" in error["message"]


def test_an_upload_key_with_a_trailing_newline_in_its_owner_is_not_ours() -> None:
    assert UploadKey.parse("uploads/ada\n/abcdef123456/cat.png") is None
    assert UploadKey.parse("uploads/auth0|ada/abcdef123456/cat.png") is not None


def test_the_system_owner_cannot_come_from_a_token(api: Api) -> None:
    refused = api("POST", "/jobs/generate_sales_report", body=REPORT, sub="system")
    error = assert_error(refused, 401, "unauthorized")
    assert "reserved" in error["message"]
    assert_error(api("GET", "/jobs", sub="system"), 401, "unauthorized")


# --- how far ahead a job may start ---------------------------------------------------------


def test_run_at_more_than_30_days_ahead_is_refused(api: Api) -> None:
    far = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    refused = api("POST", "/jobs/generate_sales_report", body=REPORT, query={"run_at": far})
    error = assert_error(refused, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["query", "run_at"]
    assert "30 days" in error["details"][0]["msg"]
    near = (datetime.now(UTC) + timedelta(days=29)).isoformat()
    accepted = api("POST", "/jobs/generate_sales_report", body=REPORT, query={"run_at": near})
    assert accepted.status == 202, accepted.text
    assert accepted.json["status"] == "scheduled"


@pytest.mark.anyio
async def test_the_queue_client_refuses_it_too(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="30 days"):
        await queue.enqueue("generate_sales_report", REPORT, owner="ada",
                            run_at=datetime.now(UTC) + timedelta(days=40))
    with pytest.raises(ValueError, match="30 days"):
        await queue.enqueue("generate_sales_report", REPORT, owner="ada",
                            delay_seconds=31 * 86400)


# --- how big an error answer gets ---------------------------------------------------------


def test_a_body_with_thousands_of_errors_gets_the_first_20_and_the_count(api: Api) -> None:
    body = {f"f{i}": i for i in range(5000)}  # 5000 unknown fields, and no url
    refused = api("POST", "/jobs/fetch_external_data", body=body)
    error = assert_error(refused, 422, "validation_failed")
    assert len(error["details"]) == 20
    assert "5001 field errors, the first 20 listed" in error["message"]
    assert len(refused.text) < 5000


# --- a dead letter retried concurrently -----------------------------------------------------


@pytest.mark.anyio
async def test_ten_concurrent_retries_of_one_dead_letter_enqueue_one_job(
        settings: Settings) -> None:
    owner, job_id = "ada", uuid.uuid4().hex
    letter = DeadLetter(id=job_id, name="generate_sales_report", owner=owner, payload=REPORT,
                        error_type="TransientJobError", error="S3 unavailable", tries=3,
                        failed_at=datetime.now(UTC))
    # Ten API instances, each with its own connection, retry it at once.
    clients = [JobQueue(settings) for _ in range(10)]
    for client in clients:
        await client.connect()
    try:
        await record_dead_letter(clients[0].redis, Keys(settings.queue_name), 3600, letter)
        outcomes = await asyncio.gather(
            *(c.retry_dead_letter(job_id, owner) for c in clients), return_exceptions=True)
        where = JobFilter(name="generate_sales_report")
        listed = await clients[0].list_jobs(owner, where, limit=50)
    finally:
        for client in clients:
            await client.aclose()
    made = {o.id for o in outcomes if not isinstance(o, BaseException)}
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(made) == 1, outcomes
    assert all(type(e).__name__ == "NotFound" for e in refused), refused
    assert [j.id for j in listed.items] == list(made)


# --- how big a result may be ---------------------------------------------------------------


@pytest.fixture
def capped(settings: Settings) -> Settings:
    return settings.model_copy(update={"result_max_bytes": 8})


@pytest.mark.anyio
async def test_a_result_over_the_cap_fails_for_good_with_a_readable_reason(
        capped: Settings, mongo: Any) -> None:
    from infra.local.testing import running_worker

    async with JobQueue(capped) as queue, running_worker(capped):
        job = await queue.enqueue("cleanup_expired_sessions", {}, owner="system")
        view = await queue.wait(job.id, "system", timeout=30)
    assert view.status == "failed"
    assert view.tries == 1
    assert view.error is not None
    assert "OFFLOAD_RESULT_MAX_BYTES" in view.error["message"]
    assert "ctx.blobs" in view.error["message"]

