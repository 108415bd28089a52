"""``functions/queue_metrics``: the autoscaling signal, every minute.

Publishes, as CloudWatch EMF in namespace ``Offload`` with the one dimension ``queue``:

- ``BacklogPerTask``: jobs waiting or running over the worker service's running ECS tasks
  (DescribeServices ``runningCount``), rounded up: AWS Copilot's formula
  (:mod:`shared.scaling`). With no task running it is all the jobs. Target tracking holds
  it at ``TargetBacklogPerTask``;
- ``QueueDepth``: queued jobs plus scheduled jobs already due;
- ``OldestJobAgeSeconds``: how long the oldest of those has waited;
- ``RunningJobs`` and ``LiveWorkers`` (worker processes that announced themselves in the
  last 15 s: :mod:`shared.queue.presence`), to explain it.

Without an ECS service in the settings (the local stack) the machine's workers are one task
while any is live. Redis is read with Streaq's counts and Offload's own keys, never a
SCAN. If Redis or ECS fails the invocation fails and no data point is published: the
alarms see missing data, never a fake zero that would scale the service in.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import container
from functions.metrics import METRICS_NAMESPACE
from shared.scaling import backlog_per_task, task_count

SERVICE = "offload-queue-metrics"

tracer = Tracer(service=SERVICE)
logger = Logger(service=SERVICE)
# service="": no "service" dimension even when POWERTOOLS_SERVICE_NAME is set, so the
# scaling policy names exactly {queue}.
metrics = Metrics(namespace=METRICS_NAMESPACE, service="")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = container.settings()
    stats = container.run(lambda q: q.stats())
    tasks = task_count(settings, stats.workers, lambda: container.current().ecs)
    backlog = backlog_per_task(stats.jobs, tasks)
    metrics.add_dimension(name="queue", value=settings.queue_name)
    metrics.add_metric(name="BacklogPerTask", unit=MetricUnit.Count, value=backlog)
    metrics.add_metric(name="QueueDepth", unit=MetricUnit.Count, value=stats.depth)
    metrics.add_metric(name="OldestJobAgeSeconds", unit=MetricUnit.Seconds,
                       value=stats.oldest_age_seconds)
    metrics.add_metric(name="RunningJobs", unit=MetricUnit.Count, value=stats.running)
    metrics.add_metric(name="LiveWorkers", unit=MetricUnit.Count, value=stats.workers)
    summary = {
        "depth": stats.depth,
        "queued": stats.queued,
        "due_scheduled": stats.due_scheduled,
        "scheduled": stats.scheduled,
        "running": stats.running,
        "workers": stats.workers,
        "running_tasks": tasks,
        "oldest_age_seconds": stats.oldest_age_seconds,
        "backlog_per_task": backlog,
    }
    logger.info("queue stats", extra=summary)
    return summary
