"""The security suite prints the figures it measured, as the fault suite does."""

from __future__ import annotations

import pytest

from tests.faults.figures import print_summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_summary(terminalreporter)
