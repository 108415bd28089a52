"""Client CPU per fair-share slot: what each job's slot costs the worker, by how it is taken.

On a private ``redis-server``, 16 at a time (a worker's concurrency), each candidate's
round in turn, rotated: the slot script through coredis' ``Script`` object; through
:class:`shared.queue.scripts.LuaScript` (``EVALSHA``); a slot this worker still holds from
the owner's previous job (:class:`worker.fair_share.FairShare`, taken and freed); one
``ZREM`` for scale. The figure is this process's CPU time per slot (the client's cost,
which is what the worker pays); wall time beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations
from infra.local.private_redis import RedisServer
from shared.queue.keys import Keys
from worker.fair_share import ACQUIRE_SCRIPT, FairShare

IN_FLIGHT = 16
OWNERS = 500

Call = Callable[[int], Awaitable[Any]]


def _candidates(redis: Any) -> dict[str, Call]:
    script = redis.register_script(ACQUIRE_SCRIPT.text)

    def slot_args(i: int) -> tuple[list[str], list[Any]]:
        return [f"bench:running:{i % OWNERS}"], [i, 1_000_000, f"j{i}", i + 10**9]

    async def slot_script_object(i: int) -> Any:
        keys, args = slot_args(i)
        return await script(keys=keys, args=args)

    async def slot_evalsha(i: int) -> Any:
        keys, args = slot_args(i)
        return await ACQUIRE_SCRIPT(redis, keys, args)

    fair = FairShare(SimpleNamespace(redis=redis), Keys("bench"), per_owner=IN_FLIGHT)

    async def held_slot(i: int) -> Any:
        slot = await fair.acquire(f"owner-{i % IN_FLIGHT}", "bench_job", 60)
        assert slot is not None, "the bench's owner is at its limit"
        fair.release(slot)

    async def one_zrem(i: int) -> Any:
        return await redis.zrem(f"bench:unfinished:{i % OWNERS}", [f"j{i}"])

    return {"slot: coredis Script": slot_script_object, "slot: LuaScript (EVALSHA)": slot_evalsha,
            "slot: held by this worker": held_slot, "one ZREM": one_zrem}


async def _round(call: Call, calls: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, calls, IN_FLIGHT):
        await asyncio.gather(*(call(i) for i in range(start, start + IN_FLIGHT)))
    return ((time.process_time() - cpu) * 1e6 / calls,
            (time.perf_counter() - wall) * 1e6 / calls)


async def _measure(url: str, calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    import coredis

    redis = coredis.Redis.from_url(url, decode_responses=True)
    async with redis:
        candidates = _candidates(redis)
        found: dict[str, dict[str, list[float]]] = {
            name: {"cpu_us": [], "wall_us": []} for name in candidates}
        for call in candidates.values():  # warm-up: scripts loaded, connections open
            await _round(call, IN_FLIGHT * 4)
        for order in rotations(list(candidates), rounds):
            for name in order:
                cpu, wall = await _round(candidates[name], calls)
                found[name]["cpu_us"].append(cpu)
                found[name]["wall_us"].append(wall)
    return found


def run(config: BenchConfig) -> BenchResult:
    calls, rounds = (1_000, 2) if config.quick else (10_000, 5)
    with RedisServer() as server:
        found = asyncio.run(_measure(server.url, calls, rounds))
    cpu = {name: median(v["cpu_us"]) for name, v in found.items()}
    rows = [[name, f"{cpu[name]:.1f}", f"{median(v['wall_us']):.1f}"]
            for name, v in found.items()]
    slot_gain = ratio(cpu["slot: LuaScript (EVALSHA)"], cpu["slot: coredis Script"])
    held_gain = ratio(cpu["slot: held by this worker"], cpu["slot: LuaScript (EVALSHA)"])
    return BenchResult(
        name="redis_calls",
        title=f"Client CPU per fair-share slot ({IN_FLIGHT} at a time, {calls} a round)",
        headers=["slot", "CPU us/slot (median)", "wall us/slot"],
        rows=rows,
        goals=[
            Goal("the slot script by EVALSHA costs less client CPU than coredis' Script",
                 f"{slot_gain:.2f}x", slot_gain < 1),
            Goal("a held slot costs at most a tenth of a round trip's client CPU",
                 f"{held_gain:.2f}x", held_gain <= 0.1),
        ],
        notes=[f"{rounds} rounds per call, rotated; medians of the rounds"],
        data=found,
    )
