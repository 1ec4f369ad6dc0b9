"""One rule for every writer (docs/data-quality.md, "Your files are safe"): the configured
paths obey the rule of --output (no exemption for a default), values that would silently
mean something else are usage errors, a model URI is checked before anything is copied,
commands that read the MLflow store never create one, and `study` publishes only over its
own report. Each case runs on the scratch guard project or a project the test makes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.datasets import tree_digest, write_file
from helpers.guard import GUARD_IMAGE, GUARD_SOURCE, changed, git, one_line_error, run
from leukemia_cnn.errors import ConfigError, OutputError
from leukemia_cnn.fileio import OUTPUT_RECORD
from leukemia_cnn.pathrules import check_sweep_dir
from leukemia_cnn.study import workspace as study

# paths.<key> -> the command that writes it, run with a params file holding the bad value
WRITERS = {
    "raw_dir": ["data", "get", "--source", GUARD_SOURCE, "--no-validate", "--no-dvc-add"],
    "manifest": ["validate-raw"],
    "splits": ["split"],
    "model_dir": ["check-config"],
    "reports_dir": ["check-config"],
}
# values a configured path must never take: the project's history, stores, code, config,
# tracked files, the project itself, $HOME, another command's output
BAD_VALUES = [".git", ".git/x", "mlruns", "mlflow.db", "src", "src/leukemia_cnn", "conf",
              "README.md", "params.yaml", "dvc.yaml", ".", "..", "/", "${oc.env:HOME}",
              "~/x", "data/raw/Benign", "data/splits.csv", "studies/x", ""]


def write_bad_params(project: Path, key: str, value: str) -> Path:
    """A hand-edited composed config (the reproduction: `params` used to accept any value)."""
    config = yaml.safe_load((project / "params.yaml").read_text())
    config["paths"][key] = value
    target = project / "edited.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(list(WRITERS)), value=st.sampled_from(BAD_VALUES))
def test_a_configured_path_obeys_the_rule_of_every_output(guard_project, key, value, capfd):
    """`params paths.raw_dir=.git` then `data get` used to delete .git with exit 0."""
    project = guard_project
    os.chdir(project)
    if key in ("splits", "manifest") and value in ("data/splits.csv",):
        value = "data/raw/x.csv"  # the other key's own default would only clash with itself
    before = tree_digest(project)
    code, err = run(["params", "--output", "new.yaml", f"paths.{key}={value}"], capfd)
    assert one_line_error(code, err, "params") and f"paths.{key}" in err, err
    params = write_bad_params(project, key, value)
    written = tree_digest(project)
    code, err = run([*WRITERS[key], "--params", params.name], capfd)
    assert one_line_error(code, err, " ".join(WRITERS[key][:2]).replace(" --source", ""))
    assert f"`paths.{key}`" in err  # (an overlap names both keys)
    assert changed(before, tree_digest(project)) == {"edited.yaml"}
    assert tree_digest(project) == written
    params.unlink()


def test_the_configured_defaults_pass_the_rule(guard_project, capfd, monkeypatch):
    monkeypatch.chdir(guard_project)
    code, err = run(["params", "--check"], capfd)
    assert code == 0, err


def test_reports_a_user_committed_do_not_refuse_the_reports_folder(guard_project, capfd,
                                                                   monkeypatch):
    """`git add -A` after `dvc repro` tracks reports no stage declares (classification_report
    .txt, registered.json): the reports folder, written file by file, stays valid, while a
    folder a command replaces whole (paths.model_dir) still may not hold tracked files."""
    monkeypatch.chdir(guard_project)
    check_file = guard_project / "reports" / "config_check.json"
    had_check = check_file.exists()
    write_file(guard_project / "reports" / "classification_report.txt", b"earlier report\n")
    write_file(guard_project / "notes" / "mine.txt", b"a user's note\n")
    git("add", "reports/classification_report.txt", "notes/mine.txt", cwd=guard_project)
    git("commit", "-qm", "reports and notes", cwd=guard_project)
    try:
        code, err = run(["check-config"], capfd)
        assert code == 0, err
        code, err = run(["params", "--output", "new.yaml", "paths.model_dir=notes"], capfd)
        assert one_line_error(code, err, "params") and "holds files git tracks" in err
    finally:
        git("rm", "-q", "--cached", "reports/classification_report.txt", "notes/mine.txt",
            cwd=guard_project)
        git("commit", "-qm", "untrack", cwd=guard_project)
        (guard_project / "notes" / "mine.txt").unlink()  # the fixture's notes/ stays
        (guard_project / "reports" / "classification_report.txt").unlink()
        if not had_check:
            check_file.unlink(missing_ok=True)


def test_a_sweep_folder_outside_the_project_is_refused(guard_project, capfd, monkeypatch):
    """`sweep ... hydra.sweep.dir=/` used to be dropped silently."""
    monkeypatch.chdir(guard_project)
    for value in ("/", "/tmp", "..", "src", ".git/sweeps"):
        with pytest.raises(ConfigError, match="hydra.sweep.dir"):
            check_sweep_dir([f"hydra.sweep.dir={value}"], guard_project)
    check_sweep_dir(["hydra.sweep.dir=multirun/mine", "seed=1,2"], guard_project)
    code, err = run(["sweep", "-m", "hydra.sweep.dir=/", "train.epochs=1"], capfd)
    assert code == 1 and "hydra.sweep.dir=/" in err and "outside the project" in err


# ------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize("argv, option", [
    (["predict", GUARD_IMAGE, "--model-uri", ""], "--model-uri"),
    (["explain", GUARD_IMAGE, "--model", ""], "--model"),
    (["promote", "--data", ""], "--data"),
    (["study", "--source", "x", "--seeds", "abc"], "--seeds"),
    (["study", "--source", "x", "--seeds", "1,,2"], "--seeds"),
    (["study", "--source", ""], "--source"),
    (["data", "get", "--source", ""], "--source"),
    (["data", "get", "--source", GUARD_SOURCE, "--output", ""], "--output"),
    (["predict", GUARD_IMAGE, "--output", " "], "--output"),
])
def test_a_value_that_would_silently_mean_something_else_is_a_usage_error(
        guard_project, argv, option, capfd, monkeypatch):
    """`--model-uri ''` used to use the champion, `promote --data ''` matched every set,
    `study --seeds abc` crashed (exit 3), `--source ''` blamed an --output never given."""
    monkeypatch.chdir(guard_project)
    before = tree_digest(guard_project)
    code, err = run(argv, capfd)
    assert one_line_error(code, err, argv[0], status=2) and f"argument {option}" in err
    assert option == "--output" or "--output" not in err
    assert tree_digest(guard_project) == before


# ------------------------------------------------------------------------- models and stores


@pytest.mark.parametrize("uri, says", [
    ("file:///etc", "is not an MLflow model folder"),
    ("/etc", "is not an MLflow model folder"),
    ("http://127.0.0.1:9/x", "could not load model http://127.0.0.1:9/x"),
])
def test_a_model_uri_that_names_no_model_is_one_line(guard_project, uri, says, capfd,
                                                     monkeypatch):
    """`file:///etc` used to be copied whole before failing; the HTTP URI crashed (exit 3)."""
    monkeypatch.chdir(guard_project)
    for argv in (["predict", GUARD_IMAGE, "--model-uri", uri],
                 ["explain", GUARD_IMAGE, "--model", uri, "--output", "heat"]):
        before = tree_digest(guard_project)
        code, err = run(argv, capfd)
        assert one_line_error(code, err, argv[0]) and says in err, err
        assert tree_digest(guard_project) == before


def test_reading_commands_never_create_a_store(guard_project, tmp_path, capfd, monkeypatch):
    """`predict` from a folder without a store used to create an empty mlflow.db there."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded store
    monkeypatch.chdir(tmp_path)
    image = str(guard_project / GUARD_IMAGE)
    code, err = run(["predict", image, "--params", str(guard_project / "params.yaml")], capfd)
    assert code == 0, err  # the project's store answers
    shutil.copy(guard_project / "params.yaml", tmp_path / "params.yaml")
    code, err = run(["predict", image], capfd)
    assert one_line_error(code, err, "predict") and "no MLflow store" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ------------------------------------------------------------------------- study


@pytest.fixture
def results_project(tmp_path):
    """A git project with a committed report `real` (figures too) and a hand-written `mine`."""
    root = tmp_path / "project"
    write_file(root / "dvc.yaml", b"stages: {}\n")
    write_file(root / "docs" / "results" / "real.md", b"# the committed study\n")
    write_file(root / "docs" / "results" / "real.html", b"<html>committed</html>\n")
    write_file(root / "docs" / "results" / "real_files" / "fig.png", b"png")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    write_file(root / "docs" / "results" / "mine.md", b"# my own notes\n")
    return root


def fake_workspace(tmp_path: Path, name: str) -> Path:
    """What a finished study leaves in its workspace: reports/NAME.md, .html, NAME_files/."""
    reports = tmp_path / "ws" / "reports"
    write_file(reports / f"{name}.md", b"# Table 1 reproduced\nnew numbers\n")
    write_file(reports / f"{name}.html", b"<html>new</html>\n")
    write_file(reports / f"{name}_files" / "curves.png", b"new png")
    return tmp_path / "ws"


@pytest.mark.parametrize("name", ["real", "mine"])
def test_study_publishes_over_a_committed_or_foreign_report_only_when_told(
        results_project, tmp_path, name):
    """The default name `real` used to rewrite the tracked docs/results/real.md and delete
    real_files/*.png; `--name mine` overwrote a hand-written mine.md."""
    workspace = fake_workspace(tmp_path, name)
    before = tree_digest(results_project / "docs")
    with pytest.raises(OutputError, match="--overwrite-report"):
        study.check_publish(results_project, name)
    with pytest.raises(OutputError, match="nothing was written"):
        study.publish(results_project, workspace, name, tmp_path)
    assert tree_digest(results_project / "docs") == before
    published = study.publish(results_project, workspace, name, tmp_path, overwrite=True)
    assert "new numbers" in published.read_text()
    assert (published.parent / f"{name}_files" / "curves.png").read_bytes() == b"new png"


def test_study_republishes_its_own_report(results_project, tmp_path):
    workspace = fake_workspace(tmp_path, "fresh")
    study.publish(results_project, workspace, "fresh", tmp_path)
    study.publish(results_project, workspace, "fresh", tmp_path)  # its own, unchanged
    results = results_project / "docs" / "results"
    assert (results / OUTPUT_RECORD).is_file()
    (results / "fresh.md").write_text("edited by hand\n")
    with pytest.raises(OutputError, match="did not write"):
        study.publish(results_project, workspace, "fresh", tmp_path)


def test_a_refused_study_leaves_no_workspace(results_project, tmp_path, capfd, monkeypatch):
    """`study --source .` (or a refused report) used to leave a 3.5 MB studies/NAME/."""
    monkeypatch.chdir(results_project)
    before = tree_digest(results_project)
    with pytest.raises(Exception, match="holds the project"):
        study.main(results_project, ".", "x")
    (tmp_path / "images").mkdir()
    with pytest.raises(OutputError, match="--overwrite-report"):
        study.main(results_project, str(tmp_path / "images"), "real")
    assert not (results_project / "studies").exists()
    assert tree_digest(results_project) == before


# ------------------------------------------------------------------------- issue 31


TOOL_TARGETS = [
    (["predict", GUARD_IMAGE, "--output", ".git/hooks/pre-commit"], "predict"),
    (["params", "--output", ".git/x.yaml"], "params"),
    *[(["drift", "--source", GUARD_SOURCE, "--no-guard", "--output", target], "drift")
      for target in (".git/x.md", ".dvc/x.md", "mlruns/x.md", ".venv/x.md", "/dev/stdout",
                     "/dev/null", "/proc/self/fd/1")],
    (["explain", GUARD_IMAGE, "--output", ".venv/heat"], "explain"),
    (["data", "synth", "--scale", "0.001", "--no-dvc-add", "--output", "node_modules/x"],
     "data synth"),
]


@pytest.mark.parametrize("argv, command", TOOL_TARGETS,
                         ids=[" ".join(argv[-2:]) + f" ({command})" for argv, command in
                              TOOL_TARGETS])
def test_no_output_goes_into_a_tool_folder_or_a_device(guard_project, argv, command, capfd,
                                                       monkeypatch):
    """issue 31: `predict IMG --output .git/hooks/pre-commit`, `params --output .git/x.yaml`
    and `drift --output .git/x.md` (.dvc, mlruns, .venv) were written; `drift --output
    /dev/stdout` into a pipe ran the whole check, then failed on `/proc/PID/fd/pipe:[N]`."""
    monkeypatch.chdir(guard_project)
    before = tree_digest(guard_project)
    code, err = run(argv, capfd)
    assert one_line_error(code, err, command), err
    assert "nothing was written" in err
    assert ("a device or process file" in err if argv[-1].startswith(("/dev", "/proc"))
            else "belongs to a tool" in err), err
    assert tree_digest(guard_project) == before


def test_a_folder_holding_a_virtual_environment_is_a_tool_folder(guard_project, capfd,
                                                                 monkeypatch):
    monkeypatch.chdir(guard_project)
    write_file(guard_project / "env" / "pyvenv.cfg", b"home = /usr/bin\n")
    try:
        code, err = run(["predict", GUARD_IMAGE, "--output", "env/lib/out.csv"], capfd)
        assert one_line_error(code, err, "predict") and "a Python virtual environment" in err
    finally:
        shutil.rmtree(guard_project / "env")


@pytest.mark.parametrize("argv, starts", [
    (["params", "--output", "-"], "paths:"),
    (["predict", GUARD_IMAGE, "--output", "-"], "path,predicted_class"),
])
def test_dash_prints_to_stdout_and_writes_nothing(guard_project, argv, starts, capfd,
                                                  monkeypatch):
    monkeypatch.chdir(guard_project)
    before = tree_digest(guard_project)
    code, _ = run(argv, capfd)  # the helper reads stderr; stdout stays in capfd
    assert code == 0
    # (run() consumed stdout too: run again and read both)
    from leukemia_cnn.cli.main import main as cli_main

    assert cli_main(argv) == 0
    out = capfd.readouterr().out
    assert out.startswith(starts), out[:200]
    assert not (guard_project / "-").exists() and tree_digest(guard_project) == before


@pytest.mark.parametrize("argv", [["explain", GUARD_IMAGE, "--output", "-"],
                                  ["data", "get", "--source", GUARD_SOURCE, "--no-validate",
                                   "--no-dvc-add", "--output", "-"]])
def test_dash_is_refused_where_a_command_writes_files(guard_project, argv, capfd, monkeypatch):
    monkeypatch.chdir(guard_project)
    code, err = run(argv, capfd)
    assert one_line_error(code, err, " ".join(argv[:2]) if argv[0] == "data" else argv[0])
    assert "writes files, not to stdout" in err and not (guard_project / "-").exists()


def sklearn_model(root: Path) -> str:
    """The project's own HOG + PCA baseline kind of model: a scikit-learn MLflow model."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from leukemia_cnn.config import load_params
    from leukemia_cnn.tracking.store import setup_mlflow

    setup_mlflow(load_params(root / "params.yaml"), root)
    fitted = LogisticRegression().fit(np.eye(4), [0, 1, 2, 3])
    with mlflow.start_run():
        return mlflow.sklearn.log_model(fitted, name="hog-pca-logreg").model_uri


def loader_module_model(folder: Path, witness: Path) -> Path:
    """A model folder whose MLmodel names its own loader module (code that writes a file)."""
    write_file(folder / "MLmodel", (
        b"flavors:\n  python_function:\n    loader_module: witness_loader\n    code: code\n"
        b"    data: data\n"))
    write_file(folder / "code" / "witness_loader.py", (
        f"open({str(witness)!r}, 'w').write('ran')\n"
        "def _load_pyfunc(path):\n    return None\n").encode())
    (folder / "data").mkdir()
    return folder


def test_a_model_that_is_not_the_projects_image_model_is_one_line(guard_project, tmp_path,
                                                                  capfd, monkeypatch):
    """issue 31: `predict IMG --model-uri <an sklearn model>` was exit 3 ("internal error ...
    this is a bug"); a folder whose MLmodel names a loader module ran that module's code."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(guard_project)
    witness = tmp_path / "loader-ran"
    models = {"sklearn": sklearn_model(guard_project),
              "loader module": str(loader_module_model(tmp_path / "model", witness))}
    before = tree_digest(guard_project)
    for name, uri in models.items():
        for argv in (["predict", GUARD_IMAGE, "--model-uri", uri],
                     ["drift", "--source", GUARD_SOURCE, "--model-uri", uri, "--output", "-"],
                     ["explain", GUARD_IMAGE, "--model", uri, "--output", "heat"]):
            code, err = run(argv, capfd)
            assert one_line_error(code, err, argv[0]), (name, err)
            assert "is not a leukemia-cnn image model" in err, (name, err)
    assert not witness.exists()  # the loader module never ran
    assert changed(before, tree_digest(guard_project)) <= {"mlflow.db"}


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(guard_project, tmp_path, capfd,
                                                            monkeypatch):
    """issue 31: files named `=HYPERLINK(...).jpg` or `+cmd.jpg` gave CSV cells starting with
    `=` or `+` (formula injection in a spreadsheet); a name with terminal escape codes was
    printed raw to stderr."""
    import csv
    import io
    import json

    from leukemia_cnn.cli.main import main as cli_main

    image = (guard_project / GUARD_IMAGE).read_bytes()
    names = ['=HYPERLINK("https:x.example","click").jpg', "+cmd.jpg", "-2+3.jpg", "@SUM(1).jpg"]
    for name in names:
        write_file(tmp_path / name, image)
    (tmp_path / "evil\x1b]0;owned\x07.jpg").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)  # bare names, as a user in that folder passes them
    params = str(guard_project / "params.yaml")
    code = cli_main(["predict", "--params", params, "--", *names, "evil\x1b]0;owned\x07.jpg"])
    captured = capfd.readouterr()
    assert code == 1  # the unreadable one
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [row["path"] for row in rows] == [f"'{name}" for name in names] + [
        "evil\x1b]0;owned\x07.jpg"]  # a cell, not a terminal: kept as it is
    for row in rows:
        assert all(not value.startswith(("=", "+", "-", "@")) for value in row.values()), row
    assert "\x1b" not in captured.err and "\\x1b]0;owned\\x07" in captured.err
    code = cli_main(["predict", "--params", params, "--format", "json", names[0]])
    assert code == 0  # JSON keeps the name as it is
    assert json.loads(capfd.readouterr().out)[0]["path"] == names[0]
