"""``offload``: one command line for every part of Offload.

Each part registers its own subcommands under the ``offload.commands`` entry-point group
(``pyproject.toml``); this package names none of them. A part that is not installed here
(the benchmarks in the worker image) simply has no commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

COMMAND_GROUP = "offload.commands"

# What a part's ``register`` receives: the subparsers' ``add_parser``.
AddParser = Callable[..., argparse.ArgumentParser]
Register = Callable[[AddParser], None]


MAX_TEST_PROCESSES = 4


def pytest_command(args: Sequence[str], cpus: int | None, *, have_xdist: bool) -> list[str]:
    """pytest's arguments: the whole suite runs on up to ``MAX_TEST_PROCESSES`` processes
    (pytest-xdist); naming tests, choosing ``-n`` or ``-p no:xdist``, or ``--pdb`` runs
    exactly as asked. (Not ``--dist loadfile``: it runs one of schemathesis' tests that
    share a node id, and drops the rest.)"""
    import os

    named = any(not a.startswith("-") and os.path.exists(a.split("::")[0]) for a in args)
    chosen = any(a in {"-n", "--numprocesses", "no:xdist", "--pdb"}
                 or a.startswith(("-n", "--numprocesses=")) for a in args)
    workers = min(MAX_TEST_PROCESSES, cpus or 1)
    if named or chosen or not have_xdist or workers < 2:
        return list(args)
    return ["-n", str(workers), *args]


def _test(args: argparse.Namespace) -> int:
    import importlib.util
    import os
    import subprocess

    have_xdist = importlib.util.find_spec("xdist") is not None
    pytest_args = pytest_command(args.pytest_args, os.cpu_count(), have_xdist=have_xdist)
    return subprocess.call([sys.executable, "-m", "pytest", *pytest_args])


def _is_absent(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says ``module`` itself (or a package above it) is not installed, as
    opposed to an installed module failing on a missing dependency."""
    missing = exc.name or ""
    return bool(missing) and (module == missing or module.startswith(missing + "."))


def registered(entries: Iterable[EntryPoint] | None = None) -> list[Register]:
    """The ``register`` functions of every installed part (default: the ``offload.commands``
    entry points), by entry-point name. A module that is not installed is skipped; a
    module that fails to import for any other reason raises."""
    if entries is None:
        entries = entry_points(group=COMMAND_GROUP)
    found: list[Register] = []
    for entry in sorted(entries, key=lambda e: e.name):
        try:
            register: Any = entry.load()
        except ModuleNotFoundError as exc:
            if _is_absent(exc, entry.module):
                continue
            raise
        found.append(register)
    return found


# A command's ``epilog`` lists examples as lines starting with this; ``offload --help``
# shows the first of each command's.
EXAMPLE_PREFIX = "  offload "


def _summary_epilog(commands: dict[str, argparse.ArgumentParser]) -> str:
    firsts = []
    for parser in commands.values():
        found = [line for line in (parser.epilog or "").splitlines()
                 if line.startswith(EXAMPLE_PREFIX)]
        firsts += found[:1]
    lines = ["examples:", *firsts, ""] if firsts else []
    lines.append("`offload COMMAND --help` shows a command's options and more examples.")
    return "\n".join(lines)


def _parser_and_commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="offload", description="Run slow work behind a serverless API.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands",
                                metavar="COMMAND")

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # Descriptions and example epilogs keep their line breaks.
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return sub.add_parser(name, **kwargs)

    p = add_parser("test", help="run the test suite (arguments go to pytest)",
                   description="Run the test suite; every argument goes to pytest. The "
                               "whole suite runs on up to 4 processes (pytest-xdist); "
                               "named tests, or -n 0, run in this one.",
                   epilog="examples:\n  offload test -q -x tests/test_cli.py\n"
                          "  offload test -k readme\n  offload test -n 0")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_test)
    for register in registered():
        register(add_parser)
    parser.epilog = _summary_epilog(sub.choices)
    return parser, sub.choices


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: ``test`` plus every registered part's subcommands."""
    return _parser_and_commands()[0]


def command_names() -> list[str]:
    """Every subcommand ``offload`` knows here."""
    return list(_parser_and_commands()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # `offload test -q -k x`: everything after "test" belongs to pytest, dashes included.
    args, extra = parser.parse_known_args(argv)
    if args.command == "test":
        args.pytest_args = [*extra, *args.pytest_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
