"""GET /jobs: the caller's jobs from their own index, newest first, in stable cursor pages,
filtered by status, name and creation time; another caller's jobs never appear."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.config import Settings
from shared.queue import JobQueue, Keys
from tests.test_api import SUB, Api, LambdaContainer, assert_error

OTHER = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


@pytest.fixture
def box(settings: Settings) -> Iterator[LambdaContainer]:
    container = LambdaContainer(settings)
    yield container
    container.close()


def _enqueue(box: LambdaContainer, owner: str, count: int, start: int = 0) -> list[str]:
    """``count`` jobs for ``owner``: every 5th a welcome e-mail, every 10th scheduled."""

    async def work(q: JobQueue) -> list[str]:
        ids = []
        for i in range(start, start + count):
            name, body = ("send_welcome_email", {}) if i % 5 == 0 else (
                "generate_sales_report", REPORT)
            job = await q.enqueue(name, body, owner=owner,
                                  delay_seconds=600 if i % 10 == 1 else None)
            ids.append(job.id)
        return ids

    return box.queue(work)


def _all_pages(api: Api, limit: int, sub: str = SUB, **query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        params = {"limit": str(limit), **query, **({"next": cursor} if cursor else {})}
        page = api("GET", "/jobs", query=params, sub=sub)
        assert page.status == 200, page.text
        assert len(page.json["items"]) <= limit
        items.extend(page.json["items"])
        cursor = page.json["next"]
        if cursor is None:
            return items
    raise AssertionError("the listing never ended")


def test_250_jobs_in_pages_newest_first_without_duplicates_or_misses(
    box: LambdaContainer, settings: Settings
) -> None:
    api = Api(box)
    # GIVEN 250 jobs of mine, enqueued in two halves, and 30 of another caller
    older = _enqueue(box, SUB, 125)
    newer = _enqueue(box, SUB, 125, start=125)
    theirs = _enqueue(box, OTHER, 30)
    mine = older + newer

    # WHEN I read every page of 37 (and more jobs arrive after the first page)
    first = api("GET", "/jobs", query={"limit": "37"})
    later = _enqueue(box, SUB, 5, start=250)
    rest = _all_pages(api, 37, next=first.json["next"])
    listed = first.json["items"] + rest

    # THEN each job appears once, newest first, and nothing of theirs or from later
    ids = [item["id"] for item in listed]
    assert len(ids) == len(set(ids)) == 250
    assert set(ids) == set(mine)
    assert not set(ids) & (set(theirs) | set(later))
    # As datetimes, not strings: a whole second serialises without its fraction.
    created = [datetime.fromisoformat(item["created_at"]) for item in listed]
    assert created == sorted(created, reverse=True)
    assert set(listed[0]) == {"id", "name", "status", "tries", "created_at", "started_at",
                              "finished_at", "error"}
    # AND the other caller sees exactly theirs
    assert {i["id"] for i in _all_pages(api, 100, sub=OTHER)} == set(theirs)
    # AND the index expires with the jobs' retention
    ttl = box.queue(lambda q: q.redis.ttl(Keys(settings.queue_name).owner_jobs(SUB)))
    assert 0 < ttl <= box.queue(lambda q: asyncio.sleep(0, q.index_retention_seconds))


def test_filters_by_name_status_and_creation_time(box: LambdaContainer) -> None:
    api = Api(box)
    older = _enqueue(box, SUB, 40)
    box.queue(lambda q: asyncio.sleep(0.01))  # times are kept to the millisecond
    split = datetime.now(UTC)
    box.queue(lambda q: asyncio.sleep(0.01))
    newer = _enqueue(box, SUB, 40, start=40)
    _enqueue(box, OTHER, 20)
    mine = older + newer
    welcome = {job_id for i, job_id in enumerate(mine) if i % 5 == 0}
    scheduled = [job_id for i, job_id in enumerate(mine) if i % 10 == 1]
    aborted = scheduled[:2]
    for job_id in aborted:
        assert api("DELETE", f"/jobs/{job_id}").json["status"] == "aborted"

    by_name = _all_pages(api, 7, name="send_welcome_email")
    assert {i["id"] for i in by_name} == welcome
    assert {i["name"] for i in by_name} == {"send_welcome_email"}

    assert {i["id"] for i in _all_pages(api, 3, status="scheduled")} == set(scheduled[2:])
    assert {i["id"] for i in _all_pages(api, 3, status="aborted")} == set(aborted)
    queued = _all_pages(api, 25, status="queued")
    assert len(queued) == 80 - len(scheduled)
    assert {i["status"] for i in queued} == {"queued"}
    assert _all_pages(api, 10, status="failed") == []

    stamp = split.isoformat()
    assert {i["id"] for i in _all_pages(api, 9, created_before=stamp)} == set(older)
    assert {i["id"] for i in _all_pages(api, 9, created_after=stamp)} == set(newer)
    both = _all_pages(api, 9, created_after=stamp, name="send_welcome_email")
    assert {i["id"] for i in both} == welcome & set(newer)


def test_a_naive_time_or_a_limit_over_100_is_422(box: LambdaContainer) -> None:
    api = Api(box)
    error = assert_error(api("GET", "/jobs", query={"created_after": "2026-12-01T10:00:00"}),
                         422, "validation_failed")
    assert error["details"][0]["loc"] == ["query", "created_after"]
    assert_error(api("GET", "/jobs", query={"limit": "101"}), 422, "validation_failed")


@pytest.mark.anyio
async def test_failed_jobs_are_listed_with_their_error(
    box: LambdaContainer, worker: Any
) -> None:
    api = Api(box)
    # a host not on the allow-list is refused for good on the first try
    job_id = (await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": "http://not-allowed.example/x"})).json["id"]
    done = (await api.acall("GET", f"/jobs/{job_id}", query={"wait": "10"})).json
    assert done["status"] == "failed", done
    page = (await api.acall("GET", "/jobs", query={"status": "failed"})).json
    [item] = page["items"]
    assert item["id"] == job_id
    assert item["error"] == "FetchRefused: host 'not-allowed.example' is not in the fetch " \
        "allow-list"
    assert item["finished_at"] and item["tries"] == 1
    assert page["next"] is None
