"""Read CloudWatch EMF lines the way CloudWatch does: one data point per metric per
dimension set, the values of a line's value array each counting."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Series = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted dimension pairs)


@dataclass
class Emitted:
    """Every EMF document in some output, and the values per metric and dimension set."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    values: dict[Series, list[float]] = field(default_factory=lambda: defaultdict(list))

    def of(self, metric: str, **dimensions: str) -> list[float]:
        """The values of ``metric`` with exactly ``dimensions``."""
        return self.values.get((metric, tuple(sorted(dimensions.items()))), [])

    def namespaces(self) -> set[str]:
        return {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in self.documents}


def parse(output: str) -> Emitted:
    """The EMF documents among ``output``'s lines (others, such as log lines, are skipped)."""
    found = Emitted()
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        doc = json.loads(line)
        found.documents.append(doc)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                raw = doc[metric["Name"]]
                points = [float(v) for v in (raw if isinstance(raw, list) else [raw])]
                for names in directive["Dimensions"]:
                    key = tuple(sorted((name, str(doc[name])) for name in names))
                    found.values[(metric["Name"], key)].extend(points)
    return found
