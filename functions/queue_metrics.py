"""``functions/queue_metrics``: the autoscaling signal, every minute.

Publishes, as CloudWatch EMF in namespace ``Offload`` with the one dimension ``queue``:

- ``QueueDepth``: queued jobs plus scheduled jobs already due;
- ``OldestJobAgeSeconds``: how long the oldest of those has waited;
- ``BacklogPerWorker``: ``depth / max(workers, 1)``, what target tracking holds steady;
- ``RunningJobs`` and ``LiveWorkers`` (workers that announced themselves in the last 15 s:
  :mod:`shared.queue.presence`), to explain it.

If Redis is down the invocation fails and no data point is published: the alarm sees
missing data, never a fake zero that would scale the service in.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import container
from functions.metrics import METRICS_NAMESPACE

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
    stats = container.run(lambda q: q.stats())
    backlog = stats.depth / max(stats.workers, 1)
    metrics.add_dimension(name="queue", value=container.settings().queue_name)
    metrics.add_metric(name="QueueDepth", unit=MetricUnit.Count, value=stats.depth)
    metrics.add_metric(name="OldestJobAgeSeconds", unit=MetricUnit.Seconds,
                       value=stats.oldest_age_seconds)
    metrics.add_metric(name="BacklogPerWorker", unit=MetricUnit.Count, value=backlog)
    metrics.add_metric(name="RunningJobs", unit=MetricUnit.Count, value=stats.running)
    metrics.add_metric(name="LiveWorkers", unit=MetricUnit.Count, value=stats.workers)
    summary = {
        "depth": stats.depth,
        "queued": stats.queued,
        "due_scheduled": stats.due_scheduled,
        "scheduled": stats.scheduled,
        "running": stats.running,
        "workers": stats.workers,
        "oldest_age_seconds": stats.oldest_age_seconds,
        "backlog_per_worker": backlog,
    }
    logger.info("queue stats", extra=summary)
    return summary
