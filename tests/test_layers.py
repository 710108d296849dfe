"""The package's architecture as its imports show it: layers that import only downward, and no import cycles."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flowers_hf"

# Longest prefix wins. Foundations (0) < data (1) < model (2) < evaluation (3) < training (3.5, which uses the
# evaluation metrics) < reporting (4) < command-line entry points (5).
LAYERS = {
    "flowers_hf.errors": 0,
    "flowers_hf.config": 0,
    "flowers_hf.images": 0,
    "flowers_hf.disk": 0,
    "flowers_hf.hub": 0,
    "flowers_hf.data": 1,
    "flowers_hf.modeling": 2,
    "flowers_hf.inference": 2,
    "flowers_hf.explain": 2,
    "flowers_hf.onnx_model": 2,
    "flowers_hf.onnx_export": 2,
    "flowers_hf.open_set": 2,
    "flowers_hf.evaluation": 3,
    "flowers_hf.training": 3.5,
    "flowers_hf.reporting": 4,
    "flowers_hf.cli": 5,
    "flowers_hf.evaluate": 5,
    "flowers_hf.export": 5,
    "flowers_hf.data.__main__": 5,
    "flowers_hf.hub.__main__": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every flowers_hf module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path.name}: relative import (the package imports by absolute name)")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowers_hf"):
            found.add(node.module)
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("flowers_hf")}
    return found


def _layer(module: str) -> float:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return LAYERS[max(matches, key=len)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from a higher layer than its importer's."""
    return [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or ``None``."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            if cycle := visit(target, [*path, module]):
                return cycle
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module, []))), None)


GRAPH = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer_and_imports_only_downward():
    assert len(GRAPH) > 40  # the whole package was read
    assert upward_imports(GRAPH) == []


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    assert upward_imports({"flowers_hf.data.transforms": {"flowers_hf.training.trainer"}}) == [
        "flowers_hf.data.transforms (1) imports flowers_hf.training.trainer (3.5)"
    ]
    assert upward_imports({"flowers_hf.evaluation.scoring": {"flowers_hf.reporting.plots"}})
    assert upward_imports({"flowers_hf.data.__main__": {"flowers_hf.cli"}}) == []
    cyclic = {"flowers_hf.a": {"flowers_hf.b"}, "flowers_hf.b": {"flowers_hf.c"}, "flowers_hf.c": {"flowers_hf.a"}}
    assert find_cycle(cyclic) == ["flowers_hf.a", "flowers_hf.b", "flowers_hf.c", "flowers_hf.a"]
