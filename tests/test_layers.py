"""The package's architecture as its imports show it: layers that import only downward, and no import cycles."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flowers_hf"

# The package's folders (and its top-level entry points), bottom to top. A folder is one unit: every import from one
# unit into another must go to a lower layer, so that read folder by folder the imports run only downward.
LAYERS = {
    "core": 0,  # errors, cli plumbing, disk, Hub ids: used by every layer
    "data": 1,  # from a source to a tensor
    "model": 2,  # the timm model as a transformers model, saved and loaded
    "serving": 3,  # a saved model answering photos: PyTorch or ONNX Runtime, Grad-CAM, the open-set rule
    "evaluation": 4,  # scoring a model: metrics, calibration, corruptions, open set
    "training": 5,  # the Trainer, its arguments, stages, frozen features
    "reporting": 6,  # the run folder, plots, the model card, publishing
    "export": 7,  # python -m flowers_hf.export
    "audit": 7,  # python -m flowers_hf.audit: duplicates, leaks, label errors, outliers
    "evaluate": 8,  # python -m flowers_hf.evaluate
    "push": 8,  # python -m flowers_hf.push
    "train": 8,  # train.py's work
    "tune": 9,  # python -m flowers_hf.tune: trials are train.py runs
}
# Modules that are entry points inside a lower folder: they may import any layer below the top.
ENTRY_POINTS = {"flowers_hf.data.__main__": 8}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, prefix: str = "flowers_hf") -> set[str]:
    """Every ``prefix`` module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path.name}: relative import (the package imports by absolute name)")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            found.add(node.module)
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(prefix)}
    return found


def unit(module: str) -> str:
    """The folder (or top-level module) of ``flowers_hf`` that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "flowers_hf"


def _layer(module: str) -> float:
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    assert unit(module) in LAYERS, f"{module} belongs to no layer: add its folder to LAYERS"
    return LAYERS[unit(module)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module from another folder on the same or a higher layer than its importer's."""
    return [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if unit(target) != unit(module) and _layer(target) >= _layer(module)
    ]


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph read folder by folder: which units import which (entry points left out)."""
    folders: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module not in ENTRY_POINTS:
            folders.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return folders


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


GRAPH = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py")) if path.stem != "__init__"}
GRAPH |= {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("__init__.py"))}


def test_every_module_has_a_layer_and_imports_only_downward():
    assert len(GRAPH) > 40  # the whole package was read
    assert {unit(module) for module in GRAPH} - {"flowers_hf"} == set(LAYERS)  # every folder has a layer
    assert upward_imports(GRAPH) == []


def test_no_import_cycles_between_modules_or_folders():
    assert find_cycle(GRAPH) is None
    assert find_cycle(folder_graph(GRAPH)) is None


def test_every_folder_says_what_it_is_and_what_it_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), (
            f"{init.parent.name}/__init__.py: say what the layer is and what it imports"
        )


def test_bench_has_no_import_cycle():
    bench = PACKAGE.parent / "bench"
    graph = {
        f"bench.{path.stem}": {name for name in _imports(path, prefix="bench") if name != "bench"}
        for path in bench.glob("*.py")
    }
    assert len(graph) > 5
    assert find_cycle(graph) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    assert upward_imports({"flowers_hf.data.transforms": {"flowers_hf.training.trainer"}}) == [
        "flowers_hf.data.transforms (1) imports flowers_hf.training.trainer (5)"
    ]
    assert upward_imports({"flowers_hf.evaluation.scoring": {"flowers_hf.reporting.plots"}})
    assert upward_imports({"flowers_hf.core.hub": {"flowers_hf.reporting.publish"}})  # hub stays a leaf
    assert upward_imports({"flowers_hf.evaluate": {"flowers_hf.push"}})  # entry points import no entry point
    assert upward_imports({"flowers_hf.data.__main__": {"flowers_hf.core.cli", "flowers_hf.reporting.plots"}}) == []
    assert upward_imports({"flowers_hf.data.load": {"flowers_hf.data.folder"}}) == []  # inside a folder: free
    modules = {"flowers_hf.data.a": {"flowers_hf.model.b"}, "flowers_hf.model.b": {"flowers_hf.core.c"}}
    assert find_cycle(folder_graph(modules)) is None
    modules["flowers_hf.core.c"] = {"flowers_hf.data.d"}  # core -> data -> model -> core: a circle of folders
    assert find_cycle(folder_graph(modules)) == ["core", "data", "model", "core"]
    cyclic = {"flowers_hf.a": {"flowers_hf.b"}, "flowers_hf.b": {"flowers_hf.c"}, "flowers_hf.c": {"flowers_hf.a"}}
    assert find_cycle(cyclic) == ["flowers_hf.a", "flowers_hf.b", "flowers_hf.c", "flowers_hf.a"]
