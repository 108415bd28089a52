"""The Lambda artifact: built for arm64/CPython 3.13, lean, small, and importable.

``infra/build/build_functions.sh`` (what ``sam build`` runs) is executed for real: once for
the Lambda platform, whose contents and size are checked, and once for this machine's
platform and Python, whose handlers are imported in an isolated interpreter to prove the
lean dependency set is enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "infra" / "build" / "build_functions.sh"
HANDLERS = ("api", "s3_events", "scheduler", "queue_metrics")

# The unzipped budget per function (the hard Lambda limit is 250 MB). Measured on
# 2026-11-28: 22.3 MiB (6.3 MiB zipped), of which beartype 5.2, pydantic-core 4.6,
# Powertools 3.3, coredis 2.7.
SIZE_BUDGET_BYTES = 40 * 1024 * 1024

# Top-level names that must never reach a Lambda: the worker's libraries and code, the
# local stack, Streaq's CLI, and (deliberately) the SDK the runtime already provides.
FORBIDDEN = {
    "PIL": "Pillow is the worker's",
    "pillow_heif": "HEIC decoding is the worker's",
    "pyvips": "libvips is the worker's",
    "beanie": "beanie is the worker's",
    "pymongo": "Lambdas never open MongoDB",
    "fpdf": "reports are rendered by the worker",
    "worker": "worker code stays in the container",
    "moto": "moto is for the local stack",
    "typer": "Streaq's CLI is never imported by a handler",
    "rich": "Streaq's CLI is never imported by a handler",
    "watchfiles": "Streaq's CLI is never imported by a handler",
    "boto3": "the Lambda runtime provides boto3",
    "botocore": "the Lambda runtime provides botocore",
}


def _build(out: Path, **env: str) -> Path:
    subprocess.run(
        [str(BUILD_SCRIPT), str(out)],
        check=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=240,
    )
    return out


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact exactly as ``sam build`` makes it (arm64, CPython 3.13)."""
    return _build(tmp_path_factory.mktemp("lambda") / "artifact")


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same build for this machine's Python, with the runtime's SDK bundled in."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return _build(
        tmp_path_factory.mktemp("host") / "artifact",
        LAMBDA_PYTHON_VERSION=version,
        LAMBDA_PLATFORM="x86_64-manylinux_2_28",
        BUNDLE_RUNTIME_SDK="1",
    )


def test_artifact_holds_the_handlers_and_shared_code(artifact: Path) -> None:
    for handler in HANDLERS:
        assert (artifact / "functions" / f"{handler}.py").is_file(), handler
    assert (artifact / "shared" / "config.py").is_file()
    assert (artifact / "streaq" / "worker.py").is_file()
    # Bytecode only for the Lambda's own Python (when this machine has that interpreter).
    wrong = [p for p in artifact.rglob("*.pyc") if ".cpython-313." not in p.name]
    assert not wrong, wrong[:5]
    assert not (artifact / "bin").exists()


def test_artifact_has_none_of_the_worker_or_cli_dependencies(artifact: Path) -> None:
    present = {name: why for name, why in FORBIDDEN.items() if (artifact / name).exists()}
    assert not present, present
    dist_infos = {p.name.split("-")[0].lower() for p in artifact.glob("*.dist-info")}
    assert not dist_infos & {"pillow", "pillow_heif", "pyvips", "pyvips_binary", "beanie",
                             "pymongo", "fpdf2", "typer", "rich", "boto3"}


def test_compiled_dependencies_target_lambda_arm64_python_313(artifact: Path) -> None:
    extensions = [p.name for p in artifact.rglob("*.so")]
    assert any("pydantic_core" in str(p) for p in artifact.rglob("*.so"))
    assert extensions, "pydantic-core at least is compiled"
    wrong = [n for n in extensions if "cpython-313-aarch64-linux-gnu" not in n]
    assert not wrong, f"extensions built for another platform: {wrong}"


def test_artifact_stays_under_the_size_budget(artifact: Path) -> None:
    size = _tree_size(artifact)
    assert size < SIZE_BUDGET_BYTES, f"{size / 2**20:.1f} MiB unzipped"


def test_bundling_the_sdk_is_what_excluding_it_saves(artifact: Path, host_artifact: Path) -> None:
    # GIVEN the default build and one with BUNDLE_RUNTIME_SDK=1
    # THEN only the latter carries boto3/botocore
    assert (host_artifact / "botocore").is_dir()
    assert not (artifact / "botocore").exists()


def test_handlers_import_from_the_artifact_alone(host_artifact: Path) -> None:
    # -I: no site-packages, no PYTHONPATH, no current directory: only the artifact.
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(host_artifact)!r})\n"
        + "".join(f"import functions.{h}\n" for h in HANDLERS)
        + f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}"
        " and m.split('.')[0] not in ('boto3', 'botocore'))\n"
        "print(','.join(heavy))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "POWERTOOLS_TRACE_DISABLED": "1"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True, text=True, env=env, cwd=host_artifact, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"handlers imported heavy modules: {done.stdout}"


def test_one_python_version_for_lambdas_build_and_worker_image() -> None:
    version = (ROOT / "infra" / "python-version").read_text().strip()
    script = BUILD_SCRIPT.read_text()
    template = (ROOT / "template.yaml").read_text()
    dockerfile = (ROOT / "worker" / "Dockerfile").read_text()
    push = (ROOT / "infra" / "deploy" / "push-worker-image.sh").read_text()
    assert 'LAMBDA_PYTHON_VERSION:-$(cat "$root/infra/python-version")' in script
    assert f"Runtime: python{version} " in template
    assert f"ARG PYTHON_VERSION={version}\n" in dockerfile
    assert '--build-arg "PYTHON_VERSION=$(cat infra/python-version)"' in push


def test_bytecode_ships_when_an_interpreter_of_the_target_version_is_present(
        host_artifact: Path) -> None:
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    api = host_artifact / "functions" / "__pycache__" / f"api.{tag}.pyc"
    assert api.is_file()
    pydantic = list((host_artifact / "pydantic").glob(f"__pycache__/*.{tag}.pyc"))
    assert pydantic


def test_sam_runtime_matches_the_build_target() -> None:
    script = BUILD_SCRIPT.read_text()
    template = (ROOT / "template.yaml").read_text()
    assert "aarch64" in script
    assert "Architectures: [arm64]" in template
