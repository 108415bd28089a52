"""Imports run one way (shared/ARCHITECTURE.md): functions/, worker/, infra/local, bench/ ->
shared/ -> libraries, and the ``offload`` CLI names none of the parts it runs.

Every module's imports are read with ``ast``, including imports inside functions and under
``if TYPE_CHECKING:``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("shared", "functions", "worker", "infra", "bench", "offload", "tests")

# Package -> the project packages it must never import.
FORBIDDEN = {
    "shared": {"functions", "worker", "infra", "bench", "offload", "tests"},
    "functions": {"worker", "infra", "bench", "offload", "tests"},
    "worker": {"functions", "infra", "bench", "offload", "tests"},
    "offload": {"functions", "worker", "infra", "bench", "tests"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imported_names(module: str, path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``; ``from p import x`` names ``p.x`` when
    that is a module, else ``p``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in known else base


def project_imports(package: str) -> dict[str, list[tuple[int, str]]]:
    """Module -> the project modules it imports (anywhere in its body)."""
    known = {name for part in PARTS for name in modules_of(part)}
    return {
        module: [(line, name) for line, name in imported_names(module, path, known)
                 if name.split(".")[0] in PARTS]
        for module, path in modules_of(package).items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":  # open nodes are exactly those on the path
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    # GIVEN every module of the package, lazy imports included
    imports = project_imports(package)
    assert imports, f"no modules found under {package}/"
    # WHEN the imports of the layers above it are collected
    wrong = [f"{module}:{line} imports {name}" for module, found in imports.items()
             for line, name in found if name.split(".")[0] in FORBIDDEN[package]]
    # THEN there are none
    assert wrong == []


def test_shared_modules_import_each_other_without_a_cycle() -> None:
    # GIVEN the import graph between shared/ modules (lazy imports included)
    graph = {module: {name for _, name in found if name.startswith("shared.") and name != module}
             for module, found in project_imports("shared").items()}
    # WHEN it is searched for a cycle
    # THEN there is none
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    # GIVEN two modules that import each other, one of them inside a function
    (tmp_path / "a.py").write_text("from shared.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from shared.a import y\n")
    known = {"shared.a", "shared.b"}
    graph = {
        name: {imported for _, imported in imported_names(name, tmp_path / f"{name[7:]}.py",
                                                          known)}
        for name in known
    }
    # WHEN the graph is searched
    cycle = find_cycle(graph)
    # THEN the cycle is reported, start to start
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == known
    assert find_cycle({"shared.a": {"shared.b"}, "shared.b": set()}) is None
