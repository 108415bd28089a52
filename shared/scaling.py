"""The worker autoscaling signal, AWS Copilot's backlog-per-task formula: the jobs waiting
or running, divided by the worker service's running ECS tasks, rounded up.

Target tracking holds it at ``TargetBacklogPerTask`` = acceptable latency / the time a task
needs per job (infra/worker.yaml). Running jobs count too: a task busy with a long job is
not work done, and a service whose only jobs are running is not idle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from shared.config import Settings


def backlog_per_task(jobs: int, tasks: int) -> int:
    """``ceil(jobs / max(tasks, 1))``: with no task running, all the jobs (as Copilot
    does), so that a single job reads as work for a first task."""
    return math.ceil(jobs / max(tasks, 1))


def running_tasks(ecs: Any, cluster: str, service: str) -> int:
    """The service's ``runningCount`` (ECS DescribeServices); raises LookupError when ECS
    does not know the service, so that no made-up value is published."""
    reply = ecs.describe_services(cluster=cluster, services=[service])
    found = reply.get("services") or []
    if not found:
        raise LookupError(f"no ECS service {service} in cluster {cluster}: "
                          f"{reply.get('failures')}")
    return int(found[0]["runningCount"])


def task_count(settings: Settings, live_workers: int, ecs: Callable[[], Any]) -> int:
    """The worker service's running tasks (``ecs()`` gives the client); without a service
    in the settings (the local stack), one task while any worker process is live."""
    if not settings.worker_service:
        return 1 if live_workers else 0
    return running_tasks(ecs(), settings.worker_cluster, settings.worker_service)
