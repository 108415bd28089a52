"""The README stays current: every setting is documented, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from offload.cli import command_names
from shared.config import Settings
from shared.jobs import CATALOGUE

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"`OFFLOAD_([A-Z0-9_]+)`", README))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set()


def test_every_job_but_pipeline_steps_is_in_the_job_table() -> None:
    steps = {step for spec in CATALOGUE.values() for step in spec.steps}
    missing = [name for name in CATALOGUE if name not in steps and f"| `{name}` |" not in README]
    assert missing == []


def test_the_readme_commands_exist() -> None:
    commands = set(re.findall(r"offload ([a-z][a-z-]+)", README))
    assert commands - set(command_names()) == set()
    assert Path("infra/local/offload").exists()
