"""Benchmark 7, a failover rehearsal: accepted jobs a failover loses, replica wait off and on.

``python -m bench.failover`` (or ``offload bench --only failover``). Each run starts a
private primary ``redis-server`` and a replica of it (``--replicaof``) whose replication
link passes through :class:`LagLink`, a TCP proxy in a process of its own. Concurrent callers
enqueue jobs through ``JobQueue.enqueue`` (Offload's own enqueue, the one every Lambda
calls) and every id that got an answer is recorded as accepted. Then:

1. after ``healthy_seconds`` the link is stalled: nothing more reaches the replica, as if
   replication lagged by ``lag_seconds`` (0: no stall; loopback replication lags by
   microseconds, so a loss is then a matter of luck);
2. the primary gets SIGKILL, the link is cut (the stalled bytes are never delivered, as
   they die with a primary), and the replica is promoted (``REPLICAOF NO ONE``);
3. every accepted id is read on the promoted replica: missing when its job is unknown or
   not queued (no worker runs, so every job that survived is still queued).

The same runs report the enqueue latency while both servers were healthy (before the
stall), and :func:`latency` measures it one call at a time, wait off and on in rotation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field

import coredis

from bench.procs import ROOT, python_command
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import percentile, rotations
from infra.local.private_redis import RedisServer
from shared.config import Settings
from shared.errors import NotFound, ReplicationUnconfirmed
from shared.queue import JobQueue

OWNER = "failover-rehearsal"
JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
# The production default (template.yaml ReplicaWaitMs): far above an acknowledgement's
# round trip, even with this process's callers keeping a core busy.
WAIT_MS = 500
CONCURRENCY = 16
# After an error (the primary gone) a caller pauses, so it does not spin.
ERROR_PAUSE_SECONDS = 0.01


class LagLink:
    """The replication link: a :mod:`bench.lag_link` process forwarding ``port`` to the
    primary's port. :meth:`stall`: nothing more is forwarded either way; :meth:`cut`: the
    process ends, every connection closes, held bytes never delivered."""

    def __init__(self, target_port: int) -> None:
        self.proc = subprocess.Popen(python_command("-m", "bench.lag_link", str(target_port)),
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("bench.lag_link did not start")
        self.port = int(line)
        self.held_bytes = 0

    def stall(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def cut(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        held = out.strip().splitlines()
        self.held_bytes = int(held[-1]) if held and held[-1].isdigit() else 0


@contextlib.contextmanager
def primary_and_replica() -> Iterator[tuple[RedisServer, LagLink, RedisServer]]:
    """A primary, the link, and a replica replicating through it; all stopped after."""
    # No diskless-sync delay: the replica's first full sync starts at once, not after 5 s.
    primary = RedisServer(args=["--repl-diskless-sync-delay", "0"])
    replica: RedisServer | None = None
    link: LagLink | None = None
    try:
        primary.start()
        link = LagLink(primary.port)
        replica = RedisServer(args=["--replicaof", "127.0.0.1", str(link.port)])
        replica.start()
        yield primary, link, replica
    finally:
        if link is not None:
            link.cut()
        for server in (replica, primary):
            if server is not None:
                server.stop()
                shutil.rmtree(server.dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def admin(server: RedisServer) -> AsyncIterator[coredis.Redis[str]]:
    """A plain coredis client of ``server`` (for INFO and REPLICAOF)."""
    client = coredis.Redis.from_url(server.url, decode_responses=True)
    async with client:
        yield client


async def wait_in_sync(primary: RedisServer, timeout: float = 15.0) -> None:
    """Return once a replica acknowledged a write to ``primary`` within 100 ms: its first
    sync is over on both sides (a first WAIT right after the sync may wait for the
    replica's once-a-second ack instead)."""
    deadline = time.monotonic() + timeout
    async with admin(primary) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(coredis.exceptions.ReplicationError):
                with client.ensure_replication(1, 100):
                    await client.set("failover-rehearsal:sync", "1")
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"no replica acknowledged a write within {timeout} s")


@dataclass
class Load:
    """What the callers saw: accepted ids (with when), and every other answer."""

    accepted: dict[str, float] = field(default_factory=dict)
    healthy_ms: list[float] = field(default_factory=list)
    refused_ms: list[float] = field(default_factory=list)
    # Refusals answered before the stall: a replica slower than the wait (a busy machine).
    refused_while_healthy: int = 0
    # Errors by type, and how many came before the kill (there should be none).
    failed: Counter[str] = field(default_factory=Counter)
    failed_before_kill: int = 0
    stall_at: float = math.inf
    killed: bool = False


async def _caller(queue: JobQueue, load: Load, stop: asyncio.Event, keyed: bool) -> None:
    while not stop.is_set():
        key = uuid.uuid4().hex if keyed else None  # both publish paths (docs/QUEUE.md)
        started = time.monotonic()
        try:
            job = await queue.enqueue(JOB, PAYLOAD, owner=OWNER, idempotency_key=key)
        except ReplicationUnconfirmed:
            load.refused_ms.append((time.monotonic() - started) * 1000)
            load.refused_while_healthy += time.monotonic() < load.stall_at
        except Exception as exc:  # any error is an enqueue not accepted
            load.failed[type(exc).__name__] += 1
            load.failed_before_kill += not load.killed
            await asyncio.sleep(ERROR_PAUSE_SECONDS)
        else:
            done = time.monotonic()
            load.accepted[job.id] = done
            if done < load.stall_at:
                load.healthy_ms.append((done - started) * 1000)


@dataclass
class Rehearsal:
    """One failover: what was accepted, refused and lost, and what enqueues cost."""

    wait_ms: int
    lag_seconds: float
    accepted: int
    accepted_during_lag: int
    refused_unconfirmed: int
    refused_while_healthy: int
    failed: dict[str, int]
    failed_before_kill: int
    missing: int
    held_bytes: int
    healthy_p50_ms: float
    healthy_p99_ms: float
    slowest_refusal_ms: float


async def rehearse(wait_ms: int, lag_seconds: float, *, concurrency: int = CONCURRENCY,
                   healthy_seconds: float = 1.0) -> Rehearsal:
    """Enqueue under load, stall the link for ``lag_seconds``, kill the primary, promote
    the replica, and count the accepted jobs it lacks (``wait_ms``: the replica wait)."""
    with primary_and_replica() as (primary, link, replica):
        await wait_in_sync(primary)
        settings = Settings(env="development", redis_url=primary.url,
                            queue_name=f"failover-{uuid.uuid4().hex[:8]}",
                            replica_wait_ms=wait_ms)
        load = Load()
        stop = asyncio.Event()
        async with JobQueue(settings) as queue:
            callers = [asyncio.create_task(_caller(queue, load, stop, keyed=i % 2 == 1))
                       for i in range(concurrency)]
            await asyncio.sleep(healthy_seconds)
            if lag_seconds:
                load.stall_at = time.monotonic()
                link.stall()
                await asyncio.sleep(lag_seconds)
            else:
                load.stall_at = time.monotonic()
            assert primary.proc is not None
            load.killed = True
            primary.proc.kill()  # SIGKILL: no shutdown, nothing flushed
            primary.proc.wait()
            stop.set()
            await asyncio.wait_for(asyncio.gather(*callers), timeout=30)
        link.cut()
        async with admin(replica) as client:
            await client.replicaof()  # REPLICAOF NO ONE
        promoted = Settings(env="development", redis_url=replica.url,
                            queue_name=settings.queue_name)
        missing = await count_missing(promoted, list(load.accepted))
    healthy = load.healthy_ms or [math.nan]
    return Rehearsal(
        wait_ms=wait_ms, lag_seconds=lag_seconds, accepted=len(load.accepted),
        accepted_during_lag=sum(t >= load.stall_at for t in load.accepted.values()),
        refused_unconfirmed=len(load.refused_ms),
        refused_while_healthy=load.refused_while_healthy, failed=dict(load.failed),
        failed_before_kill=load.failed_before_kill, missing=missing,
        held_bytes=link.held_bytes, healthy_p50_ms=percentile(healthy, 50),
        healthy_p99_ms=percentile(healthy, 99),
        slowest_refusal_ms=max(load.refused_ms, default=math.nan),
    )


async def count_missing(settings: Settings, job_ids: list[str]) -> int:
    """How many of ``job_ids`` the queue at ``settings`` does not hold as queued jobs."""
    gate = asyncio.Semaphore(32)

    async def present(job_id: str) -> bool:
        async with gate:
            try:
                view = await queue.view(job_id, OWNER)
            except NotFound:
                return False
            return view.status == "queued"

    async with JobQueue(settings) as queue:
        found = await asyncio.gather(*map(present, job_ids))
    return found.count(False)


async def latency(calls: int) -> dict[str, list[float]]:
    """Enqueue latency (ms) one call at a time on a healthy pair, wait off and on in
    rotation (after 50 warm-up calls each)."""
    with primary_and_replica() as (primary, _link, _replica):
        await wait_in_sync(primary)
        base = Settings(env="development", redis_url=primary.url,
                        queue_name=f"failover-{uuid.uuid4().hex[:8]}")
        queues = {"wait_off": JobQueue(base),
                  "wait_on": JobQueue(base.model_copy(update={"replica_wait_ms": WAIT_MS}))}
        ms: dict[str, list[float]] = {name: [] for name in queues}
        async with contextlib.AsyncExitStack() as stack:
            for queue in queues.values():
                await stack.enter_async_context(queue)
                for _ in range(50):
                    await queue.enqueue(JOB, PAYLOAD, owner=OWNER)
            for order in rotations(list(queues), calls):
                for name in order:
                    started = time.perf_counter()
                    await queues[name].enqueue(JOB, PAYLOAD, owner=OWNER)
                    ms[name].append((time.perf_counter() - started) * 1000)
    return ms


async def measure(lags: tuple[float, ...], calls: int) -> tuple[list[Rehearsal],
                                                                dict[str, list[float]]]:
    # Each refusal logs a warning (as it should in a Lambda); here they are counted.
    logging.getLogger("offload.queue").setLevel(logging.ERROR)
    runs = [await rehearse(wait_ms, lag) for lag in lags for wait_ms in (0, WAIT_MS)]
    return runs, await latency(calls)


def run(config: BenchConfig) -> BenchResult:
    """``offload bench --only failover``: with and without a stalled link, wait off and on."""
    runs, ms = asyncio.run(measure((1.0, 0.0), 200 if config.quick else 1000))
    headers = ["wait ms", "link stalled s", "accepted", "accepted while stalled",
               "refused (503)", "failed (primary gone)", "missing after failover",
               "healthy p50 ms", "healthy p99 ms", "slowest refusal ms"]
    rows: list[list[object]] = [
        [r.wait_ms, r.lag_seconds, r.accepted, r.accepted_during_lag, r.refused_unconfirmed,
         sum(r.failed.values()), r.missing, r.healthy_p50_ms, r.healthy_p99_ms,
         r.slowest_refusal_ms]
        for r in runs]
    p50 = {name: percentile(values, 50) for name, values in ms.items()}
    p99 = {name: percentile(values, 99) for name, values in ms.items()}
    rows += [[f"one at a time: {name}", "-", len(values), "-", "-", "-", "-", p50[name],
              p99[name], "-"] for name, values in ms.items()]
    waited = [r for r in runs if r.wait_ms]
    return BenchResult(
        name="failover",
        title="7. Failover rehearsal (primary SIGKILLed under load, replica promoted)",
        headers=headers, rows=rows,
        goals=[Goal("0 accepted jobs missing after a failover with the replica wait on",
                    ", ".join(f"{r.missing} of {r.accepted} (link stalled {r.lag_seconds} s)"
                              for r in waited),
                    all(r.missing == 0 for r in waited))],
        notes=[f"{CONCURRENCY} concurrent callers in one process, half with a fresh "
               "Idempotency-Key; SIGKILL after 1 s healthy (+ the stall); missing = not "
               "queued on the promoted replica",
               f"one at a time: {len(ms['wait_on'])} calls each, rotated, on a healthy "
               f"pair; p50 wait on - off = {p50['wait_on'] - p50['wait_off']:+.3f} ms",
               "refusals answered before the stall (a replica slower than the wait): "
               + ", ".join(str(r.refused_while_healthy) for r in waited)],
        data={"runs": [asdict(r) for r in runs], "latency_ms": ms},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lag", type=float, action="append",
                        help="seconds the link is stalled before the kill (repeatable; "
                             "default 1 and 0)")
    parser.add_argument("--calls", type=int, default=1000,
                        help="one-at-a-time latency calls per candidate")
    args = parser.parse_args()
    runs, ms = asyncio.run(measure(tuple(args.lag or (1.0, 0.0)), args.calls))
    for r in runs:
        print(json.dumps(asdict(r)))
    print(json.dumps({name: {"calls": len(values), "p50_ms": round(percentile(values, 50), 3),
                             "p99_ms": round(percentile(values, 99), 3)}
                      for name, values in ms.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
