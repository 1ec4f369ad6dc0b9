"""The house rules a newcomer relies on: packages import one way, and every DVC stage lists as
deps all the project code its command runs (so editing that code re-runs the stage)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT
from leukemia_cnn.cli import STAGES

PACKAGE = REPO_ROOT / "src" / "leukemia_cnn"
# Lower ranks never import higher ones; packages of one rank do not import each other.
# (quality reads data's tables, tracking tags runs with data's lineage; the top-level modules
# are shared by all.)
RANKS = {"data": 1, "tracking": 2, "quality": 2, "features": 3, "modeling": 4, "registry": 5,
         "study": 6, "cli": 7}
FOUNDATION = {"config", "errors", "fileio", "pathrules", "console", "devtools", "__init__"}
# Known exceptions, each with its reason; a new one needs a reason here.
AGAINST_THE_FLOW = {
    ("leukemia_cnn.data.ingest", "leukemia_cnn.quality.validate_raw"):
        "`data get` checks the new tree with the raw-data suite before swapping it in",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Every leukemia_cnn module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leukemia_cnn"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if module_file(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("leukemia_cnn"))
    return {name for name in found if module_file(name)}


def module_file(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def group(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_flow_one_way(path):
    me = group(module_name(path))
    bad = []
    for name in project_imports(path):
        other = group(name)
        if other in FOUNDATION or other == me or (module_name(path), name) in AGAINST_THE_FLOW:
            continue
        if me in FOUNDATION:
            bad.append(f"{name} (a top-level module imports a package)")
        elif RANKS[other] >= RANKS[me]:
            bad.append(f"{name} ({other} is not below {me})")
    assert not bad, f"{module_name(path)} imports against the flow: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_private_name_crosses_modules(path):
    crossing = [f"{node.module}.{alias.name}"
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leukemia_cnn")
                for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert not crossing, f"{module_name(path)} imports private names {crossing}"


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(project_imports(module_file(current)))
    return seen


STAGE_MODULES = {name.replace("-", "_"): module for name, (module, _) in STAGES.items()}
# What each dvc.yaml stage runs: the first stage, `leukemia-cnn check-config`, runs
# config.write_config_check (a top-level module, not a stage module of its name).
STAGE_CODE = {**STAGE_MODULES, "check_config": "leukemia_cnn.config"}


@pytest.mark.parametrize("stage", sorted(STAGE_CODE))
def test_stage_deps_cover_the_code_it_runs(stage):
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    deps = [REPO_ROOT / dep for dep in stages[stage]["deps"] if isinstance(dep, str)]
    uncovered = []
    for name in sorted(closure(STAGE_CODE[stage])):
        path = module_file(name)
        if not any(path == dep or dep in path.parents for dep in deps):
            uncovered.append(str(path.relative_to(REPO_ROOT)))
    assert not uncovered, (f"dvc.yaml stage {stage!r} runs code its deps do not list: {uncovered}; "
                           "add the package folder to its deps")


def test_every_stage_is_a_command_and_a_module_of_its_name():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        if stage not in STAGE_MODULES:
            continue
        assert spec["cmd"].startswith(f"leukemia-cnn {stage.replace('_', '-')}")
        assert STAGE_MODULES[stage].rsplit(".", 1)[1] == stage


@pytest.mark.parametrize("path", [p for p in MODULES if group(module_name(p)) in ("data", "features",
                                                                                  "quality")],
                         ids=lambda p: module_name(p))
def test_data_and_feature_code_never_import_tensorflow(path):
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ImportFrom)}
    assert not imported & {"tensorflow", "keras"}, module_name(path)


# Only these packages talk to MLflow; the others log through tracking.runs.
MLFLOW_PACKAGES = {"tracking", "registry"}
# Known exceptions, each with its reason; a new one needs a reason here.
MLFLOW_EXCEPTIONS = {
    "leukemia_cnn.modeling.pyfunc":
        "the logged model's class subclasses mlflow.pyfunc.PythonModel, and every logged "
        "model pickles it by reference as leukemia_cnn.modeling.pyfunc.LeukemiaCNNModel: moved "
        "to registry/, the models already in a store (the champion) no longer load, and "
        "train (modeling) could not log it without importing registry",
}


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every import in ``path``, at any depth of its code."""
    tree = ast.parse(path.read_text())
    found = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return found | {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_tracking_and_registry_import_mlflow(path):
    name = module_name(path)
    if group(name) in MLFLOW_PACKAGES or name in MLFLOW_EXCEPTIONS:
        return
    assert "mlflow" not in top_level_imports(path), (
        f"{name} imports mlflow; log through leukemia_cnn.tracking.runs (add the function "
        "you need there) or give the exception and its reason in MLFLOW_EXCEPTIONS")


@pytest.mark.parametrize("name", sorted(MLFLOW_EXCEPTIONS))
def test_every_mlflow_exception_still_imports_mlflow(name):
    assert "mlflow" in top_level_imports(module_file(name)), (
        f"{name} no longer imports mlflow: remove it from MLFLOW_EXCEPTIONS")


def test_no_test_file_imports_another_or_conftest():
    offenders = []
    for path in sorted((REPO_ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names
                          if name.split(".")[0] == "conftest" or name.split(".")[0].startswith("test_")]
    assert not offenders, f"shared test code belongs in tests/helpers/: {offenders}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_every_module_imports(path):
    import importlib

    importlib.import_module(module_name(path))


COMMAND_MODULES = sorted({*STAGE_MODULES.values(), "leukemia_cnn.data.synthetic",
                          "leukemia_cnn.data.ingest", "leukemia_cnn.study.report",
                          "leukemia_cnn.registry.predict", "leukemia_cnn.registry.explain",
                          "leukemia_cnn.registry.card", "leukemia_cnn.registry.summary"})


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_command_module_has_one_entry_point_signature(name):
    import importlib
    import inspect

    parameters = list(inspect.signature(importlib.import_module(name).run).parameters)
    assert parameters[:2] == ["cfg", "root"], f"{name}.run{parameters}"
