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


# How a README command may start on a fresh machine with only Python and redis-server:
# the bootstrap (which installs uv and the venv), the venv it made, or plain tools.
RUNNABLE = ("./infra/local/offload ", ".venv/bin/", "curl ", "bash ", "cd ", "export PATH=",
            "infra/deploy/", "aws ")  # aws: deploying needs the AWS CLI anyway
# Needs uv on PATH: only after the README's export of the bootstrap's tools directory.
NEEDS_UV = ("uv ", "uvx ")


def _shell_commands(text: str) -> list[tuple[str, str]]:
    """(command, block) for every command line of the README's ```bash blocks (comments,
    continuation lines and a command's output, written as comments, are left out)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        continued = False
        for line in block.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and not continued:
                found.append((stripped, block))
            continued = stripped.endswith("\\")
    return found


def test_readme_commands_run_verbatim_on_a_fresh_machine() -> None:
    # GIVEN every command line of the README
    commands = _shell_commands(README)
    assert len(commands) > 20
    # THEN each starts in a form that works right after a clone: no bare `offload` and no
    # `uv run` (uv lives in .offload/tools, not on PATH), uvx only after the PATH export
    wrong = [c for c, block in commands if not c.startswith(RUNNABLE)
             and not (c.startswith(NEEDS_UV) and "export PATH=" in block.split(c)[0])]
    assert wrong == []
    assert not [c for c, _ in commands if c.startswith(("offload ", "uv run"))]


def test_readme_names_the_command_that_puts_offload_on_path() -> None:
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in README
