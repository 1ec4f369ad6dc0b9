"""Nothing a user types destroys data: every command writes only its declared outputs.

A scratch project (a git repository with tracked code and config, DVC-tracked raw images, a
`cache: false` report, an MLflow store with a registered model, untracked user files, an input
image and a link to a tracked folder) is hashed file by file before and after each command run
with a hostile path; only the command's declared output may differ, and no traceback may reach
the user.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.datasets import tree_digest, write_file
from helpers.guard import GUARD_IMAGE, GUARD_SOURCE, changed, git, one_line_error, run
from leukemia_cnn.errors import OutputError
from leukemia_cnn.fileio import (
    OUTPUT_MARKER,
    OUTPUT_RECORD,
    check_output,
    is_marked,
    mark_output,
    record_output,
    shown,
    swap_folder,
)
from leukemia_cnn.tracked import dvc_tracked

IMAGE, SOURCE = GUARD_IMAGE, GUARD_SOURCE


@pytest.fixture
def project(guard_project):
    return guard_project


# (command line with {path}, kind of output, where relative paths are taken from)
COMMANDS = {
    "params": (["params", "--output", "{path}"], "file"),
    "data synth": (["data", "synth", "--scale", "0.001", "--no-dvc-add", "--output", "{path}"],
                   "folder"),
    "data get": (["data", "get", "--source", SOURCE, "--no-validate", "--no-dvc-add",
                  "--output", "{path}"], "folder"),
    "predict": (["predict", IMAGE, "--output", "{path}"], "file"),
    "explain": (["explain", IMAGE, "--output", "{path}"], "folder"),
}

# Hostile paths: the project itself, what git or DVC tracks, inputs, the user's own files and
# folders, a link to a tracked folder, a missing folder; and a few fine new ones.
BASES = [".", "{root}", "..", "data", "conf", "src", "src/leukemia_cnn", ".git", ".dvc",
         "data/raw", "data/raw/Benign", "reports/validate_raw.md", "params.yaml",
         "conf/config.yaml", "dvc.yaml", "mlflow.db", "mlruns", IMAGE, SOURCE, "inbox", "notes",
         "notes.txt", "link-conf", "missing/deeper", "new-output"]
SUFFIXES = ["", "/", "/.", "/new.csv", "/../conf", "/../new-output", "/x/y.json"]


def declared(command: str, path: str, root: Path) -> Path:
    return (root / path).resolve()


def check_invariant(command: str, path: str, root: Path, capfd) -> tuple[int, str]:
    argv = [part.replace("{path}", path) for part in COMMANDS[command][0]]
    before = tree_digest(root)
    code, err = run(argv, capfd)
    after = tree_digest(root)
    target = declared(command, path, root)
    for key in changed(before, after):
        here = (root / key).resolve()
        new_parent = key not in before and target.is_relative_to(here)
        record = here == target.parent / OUTPUT_RECORD  # which files the command wrote
        assert here == target or here.is_relative_to(target) or new_parent or record, (
            f"`leukemia-cnn {' '.join(argv)}` changed {key} (exit {code}): {err}")
    assert "Traceback" not in err
    assert code in (0, 1), err
    if code:
        assert err.strip().splitlines()[-1].startswith(f"leukemia-cnn {command}: error:")
    assert not [key for key in after if ".tmp" in key or ".old-" in key]
    # Leave the project as it was for the next case (a replaced own output is fine).
    for key in sorted(set(after) - set(before), key=len):
        item = root / key
        if item.is_symlink() or item.is_file():
            item.unlink()
        elif item.is_dir():
            shutil.rmtree(item)
    return code, err


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("path", ["{root}", ".", "..", "data", "conf", "src", "link-conf",
                                  ".git", "mlruns", "data/raw/Benign", "reports/validate_raw.md",
                                  "conf/config.yaml", "notes", "notes.txt", "mlflow.db", IMAGE,
                                  SOURCE])
def test_hostile_outputs_are_refused_and_change_nothing(project, command, path, capfd,
                                                        monkeypatch):
    monkeypatch.chdir(project)
    path = path.replace("{root}", str(project))
    code, err = check_invariant(command, path, project, capfd)
    assert code == 1 and "nothing was written" in err
    assert "--output" in err and "Pass --output" in err


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(list(COMMANDS)), base=st.sampled_from(BASES),
       suffix=st.sampled_from(SUFFIXES))
def test_no_path_makes_a_command_write_outside_its_output(project, command, base, suffix, capfd,
                                                          monkeypatch):
    monkeypatch.chdir(project)
    check_invariant(command, base.replace("{root}", str(project)) + suffix, project, capfd)


def test_a_command_replaces_its_own_earlier_output(project, capfd, monkeypatch):
    monkeypatch.chdir(project)
    try:
        assert run(["data", "get", "--source", SOURCE, "--no-validate", "--no-dvc-add",
                    "--output", "data/extra"], capfd)[0] == 0
        assert is_marked(project / "data" / "extra", "data")
        # synth and get write the same kind of tree: one may replace the other's
        code, err = run(["data", "synth", "--scale", "0.001", "--no-dvc-add", "--output",
                         "data/extra"], capfd)
        assert code == 0, err
        # the ingested tree (WBC-Pro-000.jpg) is gone, the synthetic image is in
        assert [p.name for p in (project / "data" / "extra" / "Pro").iterdir()] == [
            "WBC-Malignant-Pro-001.jpg"]
        out = project / "predictions.csv"
        assert run(["predict", IMAGE, "--output", "predictions.csv"], capfd)[0] == 0
        first = out.read_text()
        assert first.startswith("path,predicted_class")
        code, err = run(["predict", IMAGE, "--format", "json", "--output", "predictions.csv"],
                        capfd)
        assert code == 0, err
        assert out.read_text().startswith("[") and out.read_text() != first
        # ... but a file it did not write, never
        out.write_text("my notes\n")
        assert run(["predict", IMAGE, "--output", "predictions.csv"], capfd)[0] == 1
        assert out.read_text() == "my notes\n"
    finally:
        shutil.rmtree(project / "data" / "extra", ignore_errors=True)
        (project / "predictions.csv").unlink(missing_ok=True)


@pytest.mark.parametrize("name", ["validate_raw", "notes"])
def test_report_name_never_replaces_another_file(project, name, capfd, monkeypatch):
    """`report --name validate_raw` would overwrite a DVC stage's uncached report."""
    monkeypatch.chdir(project)
    if name == "notes":
        write_file(project / "reports" / "notes.md", b"my notes\n")
    before = tree_digest(project)
    code, err = run(["report", "--name", name], capfd)
    assert code == 1 and "--name" in err and "nothing was written" in err
    assert "Traceback" not in err
    assert tree_digest(project) == before
    (project / "reports" / "notes.md").unlink(missing_ok=True)


@pytest.mark.parametrize("params", [".", "conf", "src", "data", "link-conf", IMAGE, "mlflow.db",
                                    "missing/params.yaml", "notes.txt"])
@pytest.mark.parametrize("command", ["validate-raw", "split", "train", "report", "promote",
                                     "summary"])
def test_a_hostile_params_file_is_one_line_and_changes_nothing(project, command, params, capfd,
                                                               monkeypatch):
    monkeypatch.chdir(project)
    before = tree_digest(project)
    code, err = run([command, "--params", params], capfd)
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"leukemia-cnn {command}: error:")
    assert tree_digest(project) == before


# ------------------------------------------------------------------------- the guard itself


def test_dvc_tracked_reads_the_pipeline_as_dvc_does(tmp_path):
    """An output named through params.yaml (``${...}``) or in a nested dvc.yaml is DVC's too;
    a broken dvc.yaml is an error, never an empty pipeline."""
    root = tmp_path / "project"
    write_file(root / "params.yaml", b"paths:\n  made: data/made\n")
    write_file(root / "dvc.yaml", b"stages:\n  s:\n    cmd: x\n    outs:\n      - ${paths.made}\n")
    write_file(root / "sub" / "dvc.yaml", b"stages:\n  t:\n    cmd: y\n    metrics:\n      - m.json\n")
    write_file(root / "data.dvc", b"outs:\n- path: data/raw\n")
    assert dvc_tracked(root) == {root / "data" / "made": "dvc.yaml stage s",
                                 root / "sub" / "m.json": "sub/dvc.yaml stage t",
                                 root / "data" / "raw": "data.dvc"}
    write_file(root / "dvc.yaml", b"stages:\n  s: [\n")
    with pytest.raises(OutputError, match=r"DVC cannot read the pipeline of .*dvc\.yaml"):
        dvc_tracked(root)


def test_check_output_reasons(tmp_path):
    root = tmp_path / "project"
    write_file(root / "conf" / "config.yaml", b"a: 1\n")
    write_file(root / "dvc.yaml", b"stages:\n  s:\n    cmd: x\n    outs:\n      - data/out\n")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)

    def reason(target, **kwargs):
        options = dict(kind="folder", root=root, flag="--output", instead="X.", owner="t")
        with pytest.raises(OutputError) as info:
            check_output(target, **{**options, **kwargs})
        return str(info.value)

    assert "is the project root" in reason(root)
    assert "holds the project" in reason(tmp_path)
    assert "holds files git tracks (e.g. conf/config.yaml)" in reason(root / "conf")
    assert "is a file git tracks" in reason(root / "dvc.yaml", kind="file")
    assert "an output DVC tracks (dvc.yaml stage s)" in reason(root / "data" / "out")
    assert "is inside data/out" in reason(root / "data" / "out" / "x")
    assert "holds data/out" in reason(root / "data")
    assert "is an input" in reason(root / "in.jpg", kind="file", inputs=[root / "in.jpg"])
    assert "overlaps the input" in reason(root / "in", inputs=[root / "in" / "x.zip"])
    (root / "user").mkdir()
    assert check_output(root / "user", kind="folder", root=root, flag="--output", instead="X.",
                        owner="t")  # an empty folder: nothing to lose
    write_file(root / "user" / "mine.txt", b"mine")
    assert f"no {OUTPUT_MARKER} file" in reason(root / "user")
    write_file(root / "user.csv", b"mine")
    assert "did not write" in reason(root / "user.csv", kind="file")
    assert "is a folder" in reason(root / "user", kind="file")
    assert "is not a folder" in reason(root / "user.csv" / "x.csv", kind="file")
    # allowed: new paths, the configured default, a marked folder, an owned file
    options = dict(root=root, flag="--output", instead="X.", owner="t")
    assert check_output(root / "new" / "deeper", kind="folder", **options) == root / "new" / "deeper"
    assert check_output(root / "dvc.yaml", kind="file", declared=root / "dvc.yaml", **options)
    mark_output(root / "user", "t")
    assert check_output(root / "user", kind="folder", **options) == root / "user"
    record_output(root / "user.csv", "t")
    assert check_output(root / "user.csv", kind="file", **options)
    # ... until someone edits it, or it was another command's
    assert "did not write" in reason(root / "user.csv", kind="file", owner="other")
    write_file(root / "user.csv", b"mine, edited")
    assert "did not write" in reason(root / "user.csv", kind="file")
    (root / "link").symlink_to(root / "user")
    assert check_output(root / "link", kind="folder", **options) == root / "user"


def test_swap_folder_replaces_the_tree_at_once(tmp_path):
    target, staging = tmp_path / "out", tmp_path / "out.tmp-1"
    write_file(target / "old.txt", b"old")
    write_file(staging / "new.txt", b"new")
    # a folder that is not provably the command's own is never removed
    with pytest.raises(OutputError, match="not an earlier output"):
        swap_folder(staging, target, "1", "t")
    assert os.listdir(target) == ["old.txt"]
    mark_output(target, "t")
    swap_folder(staging, target, "1", "t")
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(target) == ["new.txt"]


def test_shown_is_relative_inside_the_root_and_as_given_outside(tmp_path):
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    assert shown(root / "data" / "raw", root) == "data/raw"
    assert shown(root, root) == "."
    # a relative path or a `..` detour names the same folder
    assert shown(root / "conf" / ".." / "data", root) == "data"
    outside = tmp_path / "elsewhere" / "x.jpg"
    assert shown(outside, root) == str(outside)
    # a link into the project is shown by what it points at
    (tmp_path / "link").symlink_to(root / "data")
    assert shown(tmp_path / "link", root) == "data"


# ------------------------------------------------------------------------- ownership is recorded


@pytest.mark.parametrize("content", ["path,predicted_class,reviewed_by\nslide1.jpg,Pro,dr_a\n",
                                     "[]\n", '[{"path": "a.jpg", "predicted_class": "Pro"}]\n'])
def test_predict_never_takes_a_user_file_for_its_output_by_its_content(project, content, capfd,
                                                                       monkeypatch):
    """A pathologist's review sheet that starts like a prediction table is still theirs."""
    monkeypatch.chdir(project)
    sheet = project / "review.csv"
    sheet.write_text(content)
    try:
        code, err = check_invariant("predict", "review.csv", project, capfd)
        assert code == 1 and "did not write" in err and sheet.read_text() == content
    finally:
        sheet.unlink()


@pytest.mark.parametrize("command, output", [("predict", "out.csv"), ("params", "mine.yaml")])
def test_a_temporary_name_never_is_a_user_file(project, command, output, capfd, monkeypatch):
    """Writers once used `.NAME.tmp` and deleted it afterwards, whoever's it was."""
    monkeypatch.chdir(project)
    user_file = project / f".{output}.tmp"
    user_file.write_text("the user's own\n")
    argv = ["predict", IMAGE, "--output", output] if command == "predict" else [
        "params", "--output", output]
    try:
        code, err = run(argv, capfd)
        assert code == 0, err
        assert user_file.read_text() == "the user's own\n"
        assert not [p for p in project.iterdir() if p.name.endswith(".tmp") and p != user_file]
    finally:
        for path in (user_file, project / output, project / OUTPUT_RECORD):
            path.unlink(missing_ok=True)


def test_params_output_replaces_only_its_own_unedited_file(project, capfd, monkeypatch):
    monkeypatch.chdir(project)
    mine = project / "my_experiment.yaml"
    try:
        assert run(["params", "--output", mine.name, "train.epochs=3"], capfd)[0] == 0
        assert run(["params", "--output", mine.name, "train.epochs=4"], capfd)[0] == 0
        edited = mine.read_text().replace("epochs: 4", "epochs: 7  # tuned by hand")
        mine.write_text(edited)
        code, err = run(["params", "--output", mine.name], capfd)
        assert code == 1 and "did not write" in err and "nothing was written" in err
        assert mine.read_text() == edited
    finally:
        mine.unlink(missing_ok=True)
        (project / OUTPUT_RECORD).unlink(missing_ok=True)


@pytest.mark.parametrize("where", ["in-user-folder", "in-explain-folder"])
def test_explain_never_replaces_a_users_heatmap(project, where, capfd, monkeypatch):
    """A user's X/cell_gradcam.png, whether X is their folder or an earlier explain output."""
    monkeypatch.chdir(project)
    folder = project / ("mine" if where == "in-user-folder" else "explained")
    if where == "in-explain-folder":
        assert run(["explain", IMAGE, "--output", folder.name], capfd)[0] == 0
    write_file(folder / "cell_gradcam.png", b"my annotated heatmap")
    try:
        code, err = check_invariant("explain", folder.name, project, capfd)
        assert code == 1 and "nothing was written" in err
        assert (folder / "cell_gradcam.png").read_bytes() == b"my annotated heatmap"
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("output", [IMAGE, "notes.txt", "src/leukemia_cnn", "data/raw/Benign",
                                    "."])
def test_explain_refuses_a_bad_output_before_loading_the_model(project, output, capfd,
                                                               monkeypatch):
    from leukemia_cnn.serving import explain

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(explain, "load_explainer", loaded)
    monkeypatch.chdir(project)
    code, err = check_invariant("explain", output, project, capfd)
    assert one_line_error(code, err, "explain") and "Errno" not in err
    assert f"--output {output}:" in err


def test_data_output_outside_the_repository_is_refused_before_writing(project, capfd,
                                                                      monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    outside = tmp_path / "elsewhere" / "raw"
    for argv in (["data", "get", "--source", SOURCE, "--output", str(outside)],
                 ["data", "synth", "--scale", "0.001", "--output", str(outside)]):
        code, err = run(argv, capfd)
        assert one_line_error(code, err, " ".join(argv[:2])) and "outside" in err
        assert not (tmp_path / "elsewhere").exists()


def test_every_output_is_relative_to_the_current_folder(project, capfd, monkeypatch):
    """`data get --output` and `predict --output` read a relative path the same way."""
    here = project / "notes"
    monkeypatch.chdir(here)
    try:
        code, err = run(["data", "get", "--source", f"../{SOURCE}", "--no-validate",
                         "--no-dvc-add", "--params", "../params.yaml", "--output", "got"], capfd)
        assert code == 0, err
        assert is_marked(here / "got", "data") and not (project / "got").exists()
        code, err = run(["predict", f"../{IMAGE}", "--params", "../params.yaml", "--output",
                         "got.csv"], capfd)
        assert code == 0, err
        assert (here / "got.csv").is_file() and not (project / "got.csv").exists()
    finally:
        shutil.rmtree(here / "got", ignore_errors=True)
        for name in ("got.csv", OUTPUT_RECORD):
            (here / name).unlink(missing_ok=True)
