"""Fixtures of the fault suite: private Redis servers a test may stop, a TCP proxy that can
go silent, and the figures each test measured (printed at the end of the run)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.faults.figures import print_summary
from tests.faults.servers import PersistentRedis


@pytest.fixture
def own_redis() -> Iterator[PersistentRedis]:
    """A redis-server of this test's own, with an append-only file it keeps across
    restarts (its data survives them)."""
    server = PersistentRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_summary(terminalreporter)
