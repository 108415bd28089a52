"""Counts as CloudWatch EMF, through Powertools' ``single_metric``.

Each count is its own EMF document, so it carries its own dimensions (``JobsEnqueued`` by
job and source, ``RequestsRejected`` by error code) without leaking them into another.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

METRICS_NAMESPACE = "Offload"


def count(metric: str, **dimensions: str) -> None:
    """Emit one ``Count`` of ``metric`` in the ``Offload`` namespace, with ``dimensions``."""
    with single_metric(name=metric, unit=MetricUnit.Count, value=1,
                       namespace=METRICS_NAMESPACE) as emf:
        for name, value in dimensions.items():
            emf.add_dimension(name=name, value=value)
