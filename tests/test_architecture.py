"""The house rules a newcomer relies on: packages import one way, and every DVC stage lists as
deps exactly the project modules its command runs (so editing a module re-runs exactly the
stages that run it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT
from leukemia_cnn.cli.parser import STAGES
from leukemia_cnn.cli.stagedeps import STAGE_CODE, project_imports, rewrite, stage_code_files

PACKAGE = REPO_ROOT / "src" / "leukemia_cnn"
# Lower ranks never import higher ones; packages of one rank do not import each other.
# (quality reads data's tables, tracking tags runs with data's lineage; the top-level modules
# are shared by all.)
RANKS = {"data": 1, "tracking": 2, "quality": 2, "features": 3, "modeling": 4, "registry": 5,
         "serving": 6, "monitoring": 7, "study": 8, "cli": 9}
FOUNDATION = {"config", "config_schema", "config_shifts", "config_types", "config_validate",
              "errors", "fileio", "pathrules", "console", "devtools", "markdown", "tracked",
              "__init__"}
# Known exceptions, each with its reason; a new one needs a reason here.
AGAINST_THE_FLOW: dict[tuple[str, str], str] = {
    ("leukemia_cnn.modeling.train", "leukemia_cnn.serving.pyfunc"):
        "the train stage logs the served model (its class and log_model) in its own run",
    ("leukemia_cnn.modeling.pyfunc", "leukemia_cnn.serving.pyfunc"):
        "models logged before serving/ existed unpickle their class by this old name",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


STAGE_MODULES = {name.replace("-", "_"): module for name, (module, _) in STAGES.items()}


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


@pytest.mark.parametrize("stage", sorted(STAGE_CODE))
def test_stage_deps_are_the_modules_it_runs(stage):
    """Editing a module re-runs exactly the stages whose command imports it (and editing
    data/synthetic.py or data/ingest/, which no stage imports, re-runs none)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    listed = {dep for dep in stages[stage]["deps"] if isinstance(dep, str)
              and dep.startswith("src/")}
    runs = set(stage_code_files(stage))
    assert listed == runs, (f"dvc.yaml stage {stage!r}: its src/ deps differ from the modules "
                            f"its command runs (missing {sorted(runs - listed)}, extra "
                            f"{sorted(listed - runs)}); run `make deps`")


def test_make_deps_leaves_a_current_dvc_yaml_unchanged():
    text = (REPO_ROOT / "dvc.yaml").read_text()
    assert rewrite(text) == text


def test_package_init_files_run_no_code():
    """A package's __init__.py runs whenever one of its modules is imported, yet no stage
    lists it as a dep: it must stay a docstring (no imports, no code)."""
    for path in sorted(PACKAGE.rglob("__init__.py")):
        body = [node for node in ast.parse(path.read_text()).body
                if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        names = [target.id for node in body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)]
        assert len(body) == len(names) and set(names) <= {"__version__"}, (
            f"{path.relative_to(REPO_ROOT)} runs code; move it into a module")


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
MLFLOW_PACKAGES = {"tracking", "registry", "serving"}
# Known exceptions, each with its reason; a new one needs a reason here.
MLFLOW_EXCEPTIONS: dict[str, str] = {}


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every import in ``path``, at any depth of its code."""
    tree = ast.parse(path.read_text())
    found = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    return found | {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_tracking_registry_and_serving_import_mlflow(path):
    name = module_name(path)
    if group(name) in MLFLOW_PACKAGES or name in MLFLOW_EXCEPTIONS:
        return
    assert "mlflow" not in top_level_imports(path), (
        f"{name} imports mlflow; log through leukemia_cnn.tracking.runs (add the function "
        "you need there) or give the exception and its reason in MLFLOW_EXCEPTIONS")


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
                          "leukemia_cnn.data.ingest.get", "leukemia_cnn.study.report",
                          "leukemia_cnn.serving.predict", "leukemia_cnn.serving.explain",
                          "leukemia_cnn.registry.card", "leukemia_cnn.cli.summary"})


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_command_module_has_one_entry_point_signature(name):
    import importlib
    import inspect

    parameters = list(inspect.signature(importlib.import_module(name).run).parameters)
    assert parameters[:2] == ["cfg", "root"], f"{name}.run{parameters}"


@pytest.fixture(scope="module")
def committed_pipeline(tmp_path_factory):
    """A git + DVC copy of the project whose dvc.lock records every stage as run."""
    from helpers import ran_pipeline

    return ran_pipeline(tmp_path_factory.mktemp("deps") / "repo")


def stages_to_rerun(repo: Path, edited: str) -> set[str]:
    """The stages `dvc status` says changed after a comment is appended to ``edited``."""
    import json

    from helpers import sh

    path = repo / edited
    original = path.read_text()
    path.write_text(original + "# an edit\n")
    try:
        status = json.loads(sh("dvc", "status", "--json", cwd=repo).stdout or "{}")
    finally:
        path.write_text(original)
    return {name.rsplit(":", 1)[-1] for name in status}


@pytest.mark.slow
def test_editing_the_data_makers_reruns_no_stage_but_a_stage_module_reruns_its_stages(
        committed_pipeline):
    """`dvc status` after editing one module: the synthetic painter and the Kaggle ingestion
    (run by `leukemia-cnn data`, not by a stage) re-run nothing; a module a stage imports
    re-runs exactly the stages that import it."""
    assert stages_to_rerun(committed_pipeline, "src/leukemia_cnn/data/synthetic.py") == set()
    assert stages_to_rerun(committed_pipeline, "src/leukemia_cnn/data/ingest/get.py") == set()
    assert stages_to_rerun(committed_pipeline, "src/leukemia_cnn/data/split.py") == {"split"}
    # validate_splits takes its thread count from data/imaging, not from validate_raw
    assert stages_to_rerun(committed_pipeline,
                           "src/leukemia_cnn/quality/validate_raw.py") == {"validate_raw"}
    users = {stage for stage in STAGE_CODE
             if "src/leukemia_cnn/data/imaging.py" in stage_code_files(stage)}
    assert stages_to_rerun(committed_pipeline, "src/leukemia_cnn/data/imaging.py") == users
    assert "train" in users and "split" not in users


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_modules_and_functions_stay_short(path):
    """docs/architecture.md: no module over 400 lines, no function over 60."""
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, (
        f"{module_name(path)} has {len(text.splitlines())} lines; split it by what it does")
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module_name(path)}: functions over 60 lines: {long}"


CASTS = re.compile(r"\b(?:int|float|str|bool)\(cfg(?:\.\w+)+\)|\bknob\(|OmegaConf\.select\(cfg")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_stage_code_reads_the_typed_config_without_casts(path):
    """docs/architecture.md: stages take the validated Config; a value has the schema's type,
    so nothing re-casts it or reads it with a default of its own."""
    found = CASTS.findall(path.read_text())
    assert not found, f"{module_name(path)} re-casts or re-defaults config values: {found}"


# A subprocess given this long (seconds) is expected to run for minutes.
LONG_TIMEOUT = 600


def test_tests_that_wait_minutes_for_a_subprocess_are_marked_slow():
    """`make test` leaves out `@pytest.mark.slow`: a test that gives a subprocess ten minutes
    (a benchmark that trains, a pipeline run) must carry the mark."""
    unmarked = []
    for path in sorted((REPO_ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_slow = any(isinstance(node, ast.Assign) and "slow" in ast.unparse(node.value)
                          and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
                          for node in tree.body)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            slow = module_slow or any("mark.slow" in ast.unparse(d) for d in node.decorator_list)
            waits = [kw.value.value for call in ast.walk(node) if isinstance(call, ast.Call)
                     for kw in call.keywords if kw.arg == "timeout"
                     and isinstance(kw.value, ast.Constant)
                     and isinstance(kw.value.value, int | float)]
            if not slow and any(wait >= LONG_TIMEOUT for wait in waits):
                unmarked.append(f"{path.relative_to(REPO_ROOT)}::{node.name}")
    assert not unmarked, f"mark these @pytest.mark.slow: {unmarked}"
