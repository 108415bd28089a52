"""Benchmark 5: cold start of each Lambda handler module, and the artifact's size.

For each ``functions.<name>`` handler, fresh interpreters run, in rotated order:

- ``python -c pass`` (the interpreter's own start-up, subtracted from the others);
- ``python -c "import functions.<name>"``;
- its unavoidable third-party imports alone: every module-level ``import``/``from ...
  import`` of a third-party package in the project modules that importing the handler
  loads (found by reading their source; imports inside functions and under
  ``TYPE_CHECKING`` are not made at import, so they are not counted).

The ratio handler / dependencies is what our own code (models, routes, settings, the
Powertools app) adds on top of the libraries it cannot do without. The goal's figure is
the wall time of the whole process (which exits right after its imports, as a Lambda
container does not tear down), measured from the parent, minus ``pass``; the same imports
timed inside the process (no interpreter start-up) are shown beside it. Bytecode caches
are warm, as in an image whose .pyc files were compiled at build time.
"""

from __future__ import annotations

import ast
import json
import math
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import ROOT, clean_env
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations

OWN_PACKAGES = frozenset({"functions", "shared", "worker", "infra", "bench", "tests"})
RATIO_LIMIT = 1.1
# Third-party modules that a library imports lazily when our module-level code uses it,
# not when it is imported: counted as the handler's dependencies when the handler's process
# has them loaded. Powertools' Tracer() imports the X-Ray SDK (and with it botocore) when
# constructed, enabled or not, and every handler builds one at import, as Powertools
# documents; with active tracing in Lambda the SDK is needed anyway.
LAZY_DEPENDENCIES = ("aws_xray_sdk.core",)


def handlers() -> list[str]:
    """The modules a Lambda function names as its handler (``functions.X.lambda_handler``);
    the other modules of ``functions/`` are what they share."""
    import functions

    return [f"functions.{m.name}" for m in pkgutil.iter_modules(functions.__path__)
            if not m.ispkg and _defines_lambda_handler(Path(functions.__path__[0], m.name))]


def _defines_lambda_handler(stem: Path) -> bool:
    return "\ndef lambda_handler(" in stem.with_suffix(".py").read_text()


def _env() -> dict[str, str]:
    return clean_env(AWS_DEFAULT_REGION="eu-west-1", POWERTOOLS_TRACE_DISABLED="true")


def loaded_by(module: str) -> tuple[list[str], list[str]]:
    """Source files of this project's modules that ``import module`` loads, and which of
    :data:`LAZY_DEPENDENCIES` it loads."""
    code = (f"import json, sys, {module}\n"
            f"own = {sorted(OWN_PACKAGES)!r}\n"
            "print(json.dumps([sorted(m.__file__ for n, m in list(sys.modules.items())\n"
            "    if n.split('.')[0] in own and getattr(m, '__file__', None)),\n"
            f"    [n for n in {list(LAZY_DEPENDENCIES)!r} if n in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, check=True, timeout=120)
    files, lazy = json.loads(done.stdout.strip().splitlines()[-1])
    return files, lazy


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(source: str) -> list[str]:
    """Third-party import statements a module runs when imported, as source lines."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(f"import {a.name}" for a in node.names
                             if _third_party(a.name))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if _third_party(node.module):
                    names = ", ".join(a.name for a in node.names)
                    found.append(f"from {node.module} import {names}")
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(source).body)
    return found


def _third_party(module: str) -> bool:
    root = module.split(".")[0]
    return root not in OWN_PACKAGES and root not in sys.stdlib_module_names \
        and root != "__future__"


def dependency_script(module: str) -> str:
    """``import`` lines of ``module``'s unavoidable third-party dependencies."""
    files, lazy = loaded_by(module)
    lines: list[str] = []
    for path in files:
        for line in module_level_imports(Path(path).read_text()):
            if line not in lines:
                lines.append(line)
    lines += [f"import {name}" for name in lazy]
    return "\n".join(lines) or "pass"


def _time_process(code: str) -> tuple[float, float]:
    """Wall ms of a fresh ``python -c`` running ``code`` then exiting at once, and ms of
    ``code`` itself as timed inside the process (no interpreter start-up)."""
    # os._exit: a Lambda container does not tear its interpreter down after a cold start,
    # and teardown (finalising every module's objects) is the noisiest part of a process.
    timed = ("import os as _o, time as _t\n_s = _t.perf_counter()\n" + code
             + "\nprint((_t.perf_counter() - _s) * 1000, flush=True)\n_o._exit(0)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", timed], cwd=ROOT, env=_env(), check=True,
                          capture_output=True, text=True, timeout=120)
    wall = (time.perf_counter() - start) * 1000
    return wall, float(done.stdout.strip().splitlines()[-1])


def without_bytecode(module: str, workdir: Path, processes: int) -> float:
    """Median in-process ms of ``import module`` when no .pyc can be read or written (as
    in Lambda's read-only /var/task when the artifact ships none): every module compiles."""
    samples = []
    for i in range(processes):
        prefix = workdir / f"no-pycache-{i}"
        code = (f"import sys, time\nsys.pycache_prefix = {str(prefix)!r}\n"
                "sys.dont_write_bytecode = True\nt = time.perf_counter()\n"
                f"import {module}\nprint((time.perf_counter() - t) * 1000)")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True,
                              capture_output=True, text=True, timeout=120)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return median(samples)


def own_code_ms(module: str, processes: int) -> float:
    """Median in-process ms of ``import module`` once its dependencies are imported: what
    our own modules cost, without the noise of two separately timed processes."""
    code = (dependency_script(module) + "\nimport time\nt = time.perf_counter()\n"
            f"import {module}\nprint((time.perf_counter() - t) * 1000)")
    samples = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True,
                              capture_output=True, text=True, timeout=120)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return median(samples)


def artifact_size(workdir: Path) -> dict[str, float | str]:
    """The Lambda artifact built by infra/build/build_functions.sh (one for every function)."""
    script = ROOT / "infra" / "build" / "build_functions.sh"
    if not script.exists():
        return {"error": "infra/build/build_functions.sh is missing"}
    out = workdir / "artifact"
    done = subprocess.run(["bash", str(script), str(out)], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return {"error": f"build_functions.sh exited {done.returncode}: {done.stderr[-500:]}"}
    files = [p for p in out.rglob("*") if p.is_file()]
    ours = [p for p in files if p.relative_to(out).parts[0] in ("functions", "shared")]
    import shutil

    archive = shutil.make_archive(str(workdir / "artifact"), "zip", out)
    return {"unzipped_mb": sum(p.stat().st_size for p in files) / 1e6,
            "ours_kb": sum(p.stat().st_size for p in ours) / 1e3,
            "zipped_mb": Path(archive).stat().st_size / 1e6, "files": len(files)}


def run(config: BenchConfig) -> BenchResult:
    processes = 2 if config.quick else 15
    names = handlers()
    scripts: dict[str, str] = {"pass": "pass"}
    for name in names:
        scripts[name] = f"import {name}"
        scripts[f"{name} deps"] = dependency_script(name)
    if not config.quick:
        for code in scripts.values():  # warm: bytecode compiled, files in the page cache
            _time_process(code)
    ms: dict[str, list[float]] = {k: [] for k in scripts}
    inside: dict[str, list[float]] = {k: [] for k in scripts}
    for order in rotations(list(scripts), processes):
        for key in order:
            wall, measured = _time_process(scripts[key])
            ms[key].append(wall)
            inside[key].append(measured)
    base = median(ms["pass"])
    rows, goals = [], []
    for name in names:
        own, deps = median(ms[name]) - base, median(ms[f"{name} deps"]) - base
        own_in, deps_in = median(inside[name]), median(inside[f"{name} deps"])
        r = ratio(own, deps)
        residual = math.nan if config.quick else own_code_ms(name, 3)
        rows.append([name, own, deps, r, own_in, deps_in, ratio(own_in, deps_in), residual,
                     len(scripts[f"{name} deps"].splitlines())])
        goals.append(Goal(f"{name}: import <= {RATIO_LIMIT}x its dependencies'",
                          f"{own:.0f} ms vs {deps:.0f} ms = {r:.2f}x", r <= RATIO_LIMIT))
    size = {} if config.quick else artifact_size(config.workdir)
    cold = math.nan if config.quick else without_bytecode("functions.api", config.workdir, 3)
    notes = [f"median of {processes} fresh processes each, `python -c pass` "
             f"({base:.0f} ms) subtracted"]
    warm_api = median(inside["functions.api"])
    if not config.quick:
        notes.append(f"functions.api without any .pyc (the artifact ships none, and /var/task "
                     f"is read-only): {cold:.0f} ms in process, vs {warm_api:.0f} ms with "
                     "warm bytecode")
    if size:
        notes.append("artifact (infra/build/build_functions.sh, the same for every "
                     "function): " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float)
                                               else f"{k} {v}" for k, v in size.items()))
    return BenchResult(
        name="cold_start",
        title="5. Cold start (import ms above `python -c pass`)",
        headers=["module", "import ms (process - pass)", "its deps ms", "x deps",
                 "import ms (in process)", "its deps ms (in process)", "x deps (in process)",
                 "own code ms (deps preloaded)", "dep imports"],
        rows=rows, goals=goals, notes=notes,
        data={"ms": ms, "in_process_ms": inside, "pass_ms": base,
              "api_without_bytecode_ms": cold,
              "dependency_scripts": scripts, "artifact": size},
    )
