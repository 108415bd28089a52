"""``offload new-job``: the generated job is picked up with no other edit and its test passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.scaffold import ScaffoldError, generate
from tests.jobtree import copy_tree

pytestmark = pytest.mark.slow


def run_in(tree: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_a_generated_job_is_in_the_catalogue_the_worker_and_its_test_passes(
        tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    # WHEN a new HTTP job is generated through the CLI
    made = run_in(tree, "-m", "offload.cli", "new-job", "tally_words", "--http",
                  "--description", "Count words.")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "wrote shared/catalogue/tally_words.py" in made.stdout
    # THEN the catalogue, the worker, the API's schema and the job's own test all have it
    probe = run_in(tree, "-c", (
        "from shared.jobs import CATALOGUE; from shared.config import Settings;"
        "from worker.app import build_worker;"
        "from shared.api_models import JobCreate;"
        "spec = CATALOGUE['tally_words'];"
        "print(spec.http_enqueueable, spec.description,"
        " 'tally_words' in build_worker(Settings(env='test')).registry,"
        " 'tally_words' in str(JobCreate.model_json_schema()))"))
    assert probe.stdout.split() == ["True", "Count", "words.", "True", "True"], probe.stderr
    tests = run_in(tree, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "tests/jobs/test_tally_words.py", "tests/test_catalogue.py")
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "passed" in tests.stdout and "failed" not in tests.stdout


def test_names_that_are_invalid_or_taken_are_refused_and_nothing_is_written(
        tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    for name, why in (("Bad-Name", "is not a job name"), ("ab", "is not a job name"),
                      ("send_welcome_email", "already a job"),
                      ("tally\n", "is not a job name")):
        with pytest.raises(ScaffoldError, match=why):
            generate(name, tree)
    assert sorted(p.name for p in (tree / "shared" / "catalogue").iterdir()
                  if p.suffix == ".py") == ["__init__.py"]
    generate("tally_words", tree)
    with pytest.raises(ScaffoldError, match="already exists"):
        generate("tally_words", tree)
