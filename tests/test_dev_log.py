"""The quiet default log: one line per job start, retry and failure; tracebacks only for a
job that failed for good (or with --verbose); no EMF lines or successful reads locally."""

from __future__ import annotations

import io
import logging

from infra.local.components import QUIET_LAMBDA_ENV
from infra.local.gateway import should_log
from infra.local.supervisor import LogStream, metric_line
from worker.runner import DropRepeatedJobLines


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("streaq", level, __file__, 1, message, None, None)


def test_streaq_lines_the_retry_policy_already_says_are_dropped() -> None:
    keep = DropRepeatedJobLines().filter
    # a retry: the policy's WARNING says it; Streaq's traceback and "retrying" line repeat it
    assert not keep(_record(logging.ERROR, "Retrying task abc!"))
    assert not keep(_record(logging.INFO, "task fetch ↻ abc retrying in 2000ms"))
    assert not keep(_record(logging.INFO, "↳ dependent abc-1 triggered"))
    assert not keep(_record(logging.INFO, "task fetch \u00d7 abc failed"))
    assert not keep(_record(logging.INFO, "task fetch □ abc → worker w1"))
    assert not keep(_record(logging.INFO, "task fetch ■ abc ← {}"))
    # a job that failed for good keeps its traceback, and other warnings stay
    assert keep(_record(logging.ERROR, "Task abc failed!"))
    assert keep(_record(logging.WARNING, "task ↩ abc reclaimed from worker w1"))
    assert keep(_record(logging.INFO, "task fetch ↻ abc cancelled, will be retried"))
    assert keep(_record(logging.INFO, "starting worker w1 for queue offload"))


def test_the_gateway_logs_writes_and_errors_and_reads_only_when_asked() -> None:
    assert should_log("POST", 202, log_reads=False)
    assert should_log("DELETE", 200, log_reads=False)
    assert should_log("GET", 404, log_reads=False)
    assert not should_log("GET", 200, log_reads=False)
    assert should_log("GET", 200, log_reads=True)


def test_a_quiet_stream_leaves_out_metric_documents() -> None:
    out = io.StringIO()
    log = LogStream(out, drop=metric_line)
    log.line("api", '{"_aws":{"Timestamp":1},"JobsEnqueued":[1.0]}')
    log.line("api", '{"level":"ERROR","message":"unhandled error"}')
    assert out.getvalue().count("\n") == 1
    assert "unhandled error" in out.getvalue()


def test_quiet_lambdas_log_warnings_and_above() -> None:
    assert QUIET_LAMBDA_ENV == {"POWERTOOLS_LOG_LEVEL": "WARNING"}
