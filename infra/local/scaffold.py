"""``offload new-job NAME``: a new job's catalogue entry, task module and test, ready to run.

It writes three files and edits none: ``shared/catalogue/NAME.py`` (the input model and
the ``JobSpec``; the API, the scheduler and the worker find it there),
``worker/tasks/NAME.py`` (the function, registered with ``@job``) and
``tests/jobs/test_NAME.py`` (which passes as generated). docs/JOBS.md explains each part.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AddParser = Callable[..., argparse.ArgumentParser]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{2,63}\Z")


class ScaffoldError(ValueError):
    """Why the job cannot be generated, in one line."""


@dataclass(frozen=True)
class NewJob:
    name: str
    description: str
    http: bool

    @property
    def model(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Input"

    def files(self, root: Path) -> dict[Path, str]:
        return {
            root / "shared" / "catalogue" / f"{self.name}.py": self._catalogue(),
            root / "worker" / "tasks" / f"{self.name}.py": self._task(),
            root / "tests" / "jobs" / f"test_{self.name}.py": self._test(),
        }

    def _catalogue(self) -> str:
        return f'''"""Catalogue entry for ``{self.name}``: its input model and options.

Shared by the API (which validates a request against the model before enqueueing), the
scheduler and the worker (which validates again before running). docs/JOBS.md has the rest.
"""

from __future__ import annotations

from pydantic import Field

from shared.jobs import JobInput, JobSpec


class {self.model}(JobInput):
    """What a caller sends. Unknown fields are refused; every field says its bounds."""

    text: str = Field(min_length=1, max_length=1000, description="Text to store.")
    copies: int = Field(default=1, ge=1, le=10, description="How many times to repeat it.")


SPEC = JobSpec(
    "{self.name}",
    {self.model},
    {self.description!r},
    timeout_seconds=60,  # a run longer than this is cut short and retried
    max_tries=3,  # transient failures are retried with backoff up to this many tries
    http_enqueueable={self.http!r},  # True: callers may enqueue it with POST /jobs/{self.name}
)
'''

    def _task(self) -> str:
        return f'''"""``{self.name}``: {self.description}

Fill in the body of :func:`{self.name}`:

- ``inp`` is the validated ``{self.model}`` (shared/catalogue/{self.name}.py);
  ``ctx`` holds the clients (``ctx.s3``, ``ctx.ses``, ``ctx.http``, ``ctx.blobs``,
  ``ctx.mailer``, ``ctx.redis``) and ``ctx.settings``.
- ``current_job().owner`` is who the job acts for: key every output by it.
- Raise ``PermanentJobError`` when trying again cannot help (it fails at once, with your
  message); anything else is retried with backoff up to the catalogue's ``max_tries``.
- A job runs at least once: make a rerun safe (a key derived from the input, as below,
  overwrites the same object instead of writing a second one).
- Return something JSON-serialisable and small; store big outputs with ``ctx.blobs``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.catalogue.{self.name} import {self.model}
from worker.context import WorkerContext
from worker.retry_policy import current_job
from worker.tasks.base import job


@job("{self.name}")
async def {self.name}(ctx: WorkerContext, inp: {self.model}) -> dict[str, Any]:
    owner = current_job().owner
    body = "\\n".join([inp.text] * inp.copies).encode()
    digest = hashlib.sha256(body).hexdigest()[:16]
    blob = await ctx.blobs.put_bytes(f"{self.name}/{{owner}}/{{digest}}.txt", body,
                                     "text/plain; charset=utf-8", owner=owner, kind="{self.name}")
    return {{"bucket": blob.bucket, "key": blob.key, "bytes": len(body)}}
'''

    def _test(self) -> str:
        return f'''"""``{self.name}``: run directly, through a real worker, and with bad input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.local.testing import Offload

pytestmark = pytest.mark.anyio


async def test_{self.name}_stores_the_text_under_the_owner(offload: Offload) -> None:
    result = await offload.run_job("{self.name}", {{"text": "hello", "copies": 2}}, owner="ada")
    assert result["key"].startswith("{self.name}/ada/")
    assert offload.s3_objects("{self.name}/ada/") == {{result["key"]: b"hello\\nhello"}}


async def test_{self.name}_runs_on_a_worker(offload: Offload) -> None:
    view = await offload.enqueue_and_wait("{self.name}", {{"text": "hi"}}, owner="ada")
    assert view.status == "done", view.error
    assert view.result["bytes"] == 2


async def test_{self.name}_refuses_bad_input(offload: Offload) -> None:
    with pytest.raises(ValidationError):
        await offload.run_job("{self.name}", {{"text": ""}})
'''


def project_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``shared/catalogue``."""
    for candidate in (start, *start.parents):
        if (candidate / "shared" / "catalogue").is_dir() and (candidate / "worker").is_dir():
            return candidate
    raise ScaffoldError(f"no Offload project (shared/catalogue/) at or above {start}")


def generate(name: str, root: Path, *, description: str = "", http: bool = False) -> list[Path]:
    """Write the new job's files under ``root``; the paths written. Nothing is written when
    the name is invalid, taken, or any of the files exists."""
    if not NAME_PATTERN.match(name):
        raise ScaffoldError(f"{name!r} is not a job name: lowercase letters, digits and _, "
                            f"3-64 characters, starting with a letter")
    job = NewJob(name, description or f"The {name.replace('_', ' ')} job.", http)
    files = job.files(root)
    taken = [p for p in files if p.exists()]
    if taken:
        raise ScaffoldError(f"{taken[0].relative_to(root)} already exists")
    shipped = root / "shared" / "jobs.py"
    if shipped.exists() and re.search(rf'^\s*"{name}",$', shipped.read_text(), re.MULTILINE):
        raise ScaffoldError(f"{name!r} is already a job in shared/jobs.py")
    package = root / "tests" / "jobs" / "__init__.py"
    if not package.exists():
        package.parent.mkdir(parents=True, exist_ok=True)
        package.write_text("")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def register(add_parser: AddParser) -> None:
    """Add ``new-job`` to ``offload``."""
    p = add_parser(
        "new-job", help="add a job: catalogue entry, task module and a passing test",
        description="Write shared/catalogue/NAME.py, worker/tasks/NAME.py and "
                    "tests/jobs/test_NAME.py. The worker, the API and the catalogue test "
                    "pick the job up with no other edit (docs/JOBS.md).",
        epilog="examples:\n  offload new-job resize_avatar --http "
               "--description 'Resize a user avatar.'",
    )
    p.add_argument("name", help="the job's name: lowercase letters, digits and _")
    p.add_argument("--description", default="", help="one line on what the job does")
    p.add_argument("--http", action="store_true",
                   help="callers may enqueue it over the API (POST /jobs/NAME)")
    p.add_argument("--root", type=Path, default=None,
                   help="the project directory (default: found from the current directory)")
    p.set_defaults(func=_new_job)


def _new_job(args: argparse.Namespace) -> int:
    try:
        root = args.root.resolve() if args.root else project_root(Path.cwd().resolve())
        written = generate(args.name, root, description=args.description, http=args.http)
    except ScaffoldError as exc:
        print(f"offload new-job: {exc}")
        return 2
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    print(f"next: fill in worker/tasks/{args.name}.py, then "
          f"./infra/local/offload test tests/jobs/test_{args.name}.py")
    return 0
