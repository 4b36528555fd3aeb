"""The package's import graph, read from the source (``ast``): every import counts, at module level, inside a
function or under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_distill"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name: str) -> set[str]:
    """The hf_distill modules that module ``name`` imports (``from . import x`` names the submodule ``x``)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:  # a name imported from a module, not a module
                candidate = candidate.rpartition(".")[0]
            if candidate.startswith("hf_distill") and candidate != name:
                found.add(candidate)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a depth-first search), or None. A package's ``__init__`` importing its own
    submodules lazily is no cycle, so edges into the top-level ``hf_distill`` are left out."""
    state: dict[str, str] = {}  # "open" on the current path, "done" once every module below it is done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target == "hf_distill":
                continue
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_reads_relative_absolute_and_type_checking_imports():
    assert "hf_distill.losses.registry" in GRAPH["hf_distill.losses.logit"]  # from .registry import ...
    assert "hf_distill.evaluation.metrics" in GRAPH["hf_distill.evaluate_metric.distillation"]  # absolute
    assert "hf_distill.evaluation.model_result" in GRAPH["hf_distill"]  # under TYPE_CHECKING


def test_no_import_cycle_in_the_package():
    assert find_cycle(GRAPH) is None


def test_configuration_and_losses_import_no_trainer_side_module():
    """Dependencies point one way: the arguments read the loss registry only, the losses nothing outside themselves
    (TYPE_CHECKING imports included)."""
    assert all(target.startswith("hf_distill.losses") for target in GRAPH["hf_distill.training_args"])
    for name, imported in GRAPH.items():
        if name.startswith("hf_distill.losses"):
            assert all(target.startswith("hf_distill.losses") for target in imported), name


def test_only_the_commands_import_the_recipe_workflow():
    """``workflow`` is what the recipes and ``hf-distill`` share; the library under it does not import it."""
    commands = {"hf_distill.cli", "hf_distill.evaluation.compare_command"}
    for name, imported in GRAPH.items():
        if name not in commands and not name.startswith("hf_distill.workflow"):
            assert not any(target.startswith("hf_distill.workflow") for target in imported), name


def test_documented_import_paths_of_moved_modules_keep_working():
    from hf_distill.evaluation.metrics import compute_metrics_fn
    from hf_distill.methods.pruning import load_pruned_model
    from hf_distill.metrics import compute_metrics_fn as old_compute_metrics_fn
    from hf_distill.pruning import load_pruned_model as old_load_pruned_model

    assert old_compute_metrics_fn is compute_metrics_fn and old_load_pruned_model is load_pruned_model
