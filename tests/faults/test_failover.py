"""Fault 8: a failover under load. The primary is SIGKILLed while callers enqueue, its
replica is promoted, and every job that was accepted is looked for on it
(``bench.failover``, docs/RELIABILITY.md "Failover"). Without the replica wait, what the
primary accepted while replication lagged is lost; with it, nothing accepted is lost, and
a stopped replica makes the API refuse (503) within the wait instead of hanging."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bench.failover import WAIT_MS, primary_and_replica, rehearse, wait_in_sync
from shared.config import Settings
from tests.faults.figures import record
from tests.test_api import REPORT, Api, LambdaContainer, assert_error

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

# How long replication stalls before the kill: long enough that callers are always
# accepted meanwhile when nothing waits for the replica.
LAG_SECONDS = 1.0
# An answer may come this much after the wait ends (a loaded 2-core machine), never more.
ANSWER_MARGIN_SECONDS = 3.0


async def test_a_failover_loses_accepted_jobs_without_the_wait_and_none_with_it() -> None:
    # GIVEN callers enqueuing against a primary whose replica falls behind, then the
    # primary killed and the replica promoted; WHEN the replica wait is off, then on
    off = await rehearse(0, LAG_SECONDS)
    on = await rehearse(WAIT_MS, LAG_SECONDS)
    record("failover (8)", missing_wait_off=off.missing, accepted_wait_off=off.accepted,
           missing_wait_on=on.missing, accepted_wait_on=on.accepted,
           refused_wait_on=on.refused_unconfirmed,
           healthy_p50_ms_wait_off=off.healthy_p50_ms, healthy_p50_ms_wait_on=on.healthy_p50_ms)
    # THEN nothing failed before the kill, and both runs accepted jobs
    assert off.failed_before_kill == on.failed_before_kill == 0, (off, on)
    assert off.accepted and on.accepted, (off, on)
    # without the wait, jobs accepted while the replica lagged are gone after the failover
    assert off.accepted_during_lag > 0, off
    assert off.missing > 0, off
    # with it, every accepted job is on the promoted replica; what the lagging replica
    # could not confirm was refused, each answer within the wait (no hang)
    assert on.missing == 0, on
    assert on.refused_unconfirmed > 0, on
    assert on.slowest_refusal_ms < WAIT_MS + ANSWER_MARGIN_SECONDS * 1000, on


async def test_a_stopped_replica_makes_the_api_refuse_within_the_wait_and_a_retry_confirms(
    settings: Settings,
) -> None:
    with primary_and_replica() as (primary, _link, replica):
        await wait_in_sync(primary)
        assert replica.proc is not None
        config = settings.model_copy(update={"redis_url": primary.url,
                                             "replica_wait_ms": WAIT_MS})
        box = LambdaContainer(config)
        api = Api(box)
        try:
            # GIVEN a healthy pair: a job is accepted
            ok = await api.acall("POST", "/jobs/generate_sales_report", body=REPORT,
                                 headers={"Idempotency-Key": "before"})
            assert ok.status == 202, ok.text
            # WHEN the replica process is stopped (SIGSTOP: alive, silent)
            os.kill(replica.proc.pid, signal.SIGSTOP)
            started = time.monotonic()
            refused = await api.acall("POST", "/jobs/generate_sales_report", body=REPORT,
                                      headers={"Idempotency-Key": "during"})
            took = time.monotonic() - started
            # THEN the API answers 503 once the wait is over, naming the job it enqueued
            error = assert_error(refused, 503, "durability_unconfirmed")
            assert refused.headers["Retry-After"]
            assert WAIT_MS / 1000 <= took < WAIT_MS / 1000 + ANSWER_MARGIN_SECONDS, took
            job_id = error["details"]["job_id"]
            # and once the replica is back, the same request is accepted as that same job
            os.kill(replica.proc.pid, signal.SIGCONT)
            again = await api.acall("POST", "/jobs/generate_sales_report", body=REPORT,
                                    headers={"Idempotency-Key": "during"})
            assert again.status == 202, again.text
            assert again.json["id"] == job_id
            record("failover (8)", stopped_replica_answer_s=round(took, 3))
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
            box.close()
