"""The ``offload`` command: its core finds every part's subcommands through entry points."""

from __future__ import annotations

import subprocess
import sys
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from offload.cli import (
    COMMAND_GROUP,
    build_parser,
    command_names,
    main,
    pytest_command,
    registered,
)

ROOT = Path(__file__).resolve().parent.parent


def _entry(name: str, module: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{module}:register", group=COMMAND_GROUP)


def test_every_part_registers_its_commands() -> None:
    # GIVEN the project installed with every extra (the test environment)
    # WHEN offload lists its commands
    names = command_names()
    # THEN the core's own and each registered part's are there
    expected = {"test", "worker", "worker-health", "dev", "demo", "enqueue", "status",
                "abort", "fire", "bench"}
    assert expected <= set(names)
    assert len(names) == len(set(names))


def test_help_gives_every_command_a_one_line_description() -> None:
    # GIVEN the installed `offload` script
    script = Path(sys.executable).parent / "offload"
    # WHEN its help is printed
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            timeout=60, check=True, env={"COLUMNS": "100"})
    # THEN each command has one line of description (argparse puts it on the next line
    # when the name is long), and nothing else is listed
    listing, _, after = result.stdout.split("commands:", 1)[1].strip().partition("\n\n")
    lines = listing.splitlines()[1:]  # after COMMAND
    described: dict[str, str] = {}
    while lines:
        name, *rest = lines.pop(0).split(maxsplit=1)
        described[name] = rest[0] if rest else lines.pop(0).strip()
    assert set(described) == set(command_names())
    assert all(described.values()), described
    # AND an example follows for every command that gives one, each a runnable line
    examples = [line.split()[1] for line in after.splitlines() if line.startswith("  offload ")]
    assert set(examples) == set(command_names()), after


def test_a_part_that_is_not_installed_is_skipped() -> None:
    # GIVEN an entry point whose package is not installed (bench in the worker image)
    missing = _entry("gone", f"no_such_part_{uuid.uuid4().hex}.commands")
    # WHEN the registered parts are loaded
    found = registered([missing, _entry("worker", "worker.commands")])
    # THEN it is left out quietly and the installed part is kept
    from worker.commands import register

    assert found == [register]


def test_a_part_with_a_missing_dependency_fails_loudly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an installed part whose module imports a package that is not installed
    package = f"broken_part_{uuid.uuid4().hex}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "commands.py").write_text(
        "import no_such_dependency_xyz\n\ndef register(add_parser):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # WHEN the registered parts are loaded
    # THEN the import error is raised, not hidden
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        registered([_entry("broken", f"{package}.commands")])


def test_test_command_passes_every_argument_to_pytest() -> None:
    # GIVEN `offload test` with pytest options
    # WHEN it is parsed
    args, extra = build_parser().parse_known_args(["test", "-q", "-k", "x", "tests/a.py"])
    # THEN the options pytest must see are not taken by offload
    assert args.command == "test"
    assert [*extra, *args.pytest_args] == ["-q", "-k", "x", "tests/a.py"]


@pytest.mark.parametrize(("args", "cpus", "expected"), [
    # the whole suite: one process per core, at most four
    (["-q"], 2, ["-n", "2", "-q"]),
    (["-q", "-k", "readme"], 16, ["-n", "4", "-q", "-k", "readme"]),
    # named tests, an explicit choice, a debugger or a single core: exactly as asked
    (["-q", "tests/test_cli.py::test_the_module_runs_as_a_script"], 8,
     ["-q", "tests/test_cli.py::test_the_module_runs_as_a_script"]),
    (["-n", "0"], 8, ["-n", "0"]),
    (["-n3"], 8, ["-n3"]),
    (["-p", "no:xdist"], 8, ["-p", "no:xdist"]),
    (["--pdb"], 8, ["--pdb"]),
    (["-q"], 1, ["-q"]),
])
def test_the_whole_suite_runs_in_parallel_and_named_tests_as_asked(
        args: list[str], cpus: int, expected: list[str]) -> None:
    assert pytest_command(args, cpus, have_xdist=True) == expected


def test_without_xdist_the_suite_runs_in_one_process() -> None:
    assert pytest_command(["-q"], 8, have_xdist=False) == ["-q"]


def test_worker_health_without_workers_is_unhealthy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a state directory where no worker recorded an id
    # WHEN the health check runs
    code = main(["worker-health", "--state-dir", str(tmp_path)])
    # THEN it fails with a reason
    assert code == 1
    assert capsys.readouterr().out.startswith("unhealthy: no worker ids")


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_worker_refuses_a_process_count_below_one(
        value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a worker count that cannot run anything
    # WHEN offload worker is asked for it
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--processes", value])
    # THEN it exits with a usage error naming the option
    assert exited.value.code == 2
    assert "--processes" in capsys.readouterr().err


def test_the_module_runs_as_a_script() -> None:
    # GIVEN the CLI started as `python -m offload.cli` (how the dev stack starts workers)
    result = subprocess.run([sys.executable, "-m", "offload.cli", "worker", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    # THEN it finds the registered commands too
    assert result.returncode == 0, result.stderr
    assert "--processes" in result.stdout


@pytest.mark.parametrize("name", command_names())
def test_every_command_help_has_examples_and_keeps_their_lines(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a registered command
    # WHEN its help is printed
    with pytest.raises(SystemExit):
        main([name, "--help"])
    # THEN it ends with examples, one command line each (not re-wrapped into a paragraph)
    assert "examples:\n  offload " + name in capsys.readouterr().out
