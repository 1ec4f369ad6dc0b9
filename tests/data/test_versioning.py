"""``data get``'s DVC versioning: `dvc add` the raw folder, its `.dvc` file where the project
expects it (data.dvc), the move staged in git, one-line errors."""

import subprocess

import pytest
import yaml

from helpers.datasets import class_tree, write_image
from leukemia_cnn.data.versioning import dvc_command, dvc_target, dvc_track
from leukemia_cnn.errors import LeukemiaCNNError


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git + DVC repository whose DVC stages what it writes (core.autostage)."""
    root = tmp_path / "repo"
    root.mkdir()
    git("init", "-q", cwd=root)
    subprocess.run([*dvc_command(), "init", "-q"], cwd=root, check=True)
    subprocess.run([*dvc_command(), "config", "core.autostage", "true"], cwd=root, check=True)
    return root


def test_the_target_must_be_inside_a_dvc_repository(tmp_path, repo):
    assert dvc_target(repo, repo / "data" / "raw") == "data/raw"
    with pytest.raises(LeukemiaCNNError, match=r"is not a DVC repository .*--no-dvc-add"):
        dvc_target(tmp_path, tmp_path / "data")
    with pytest.raises(LeukemiaCNNError, match=r"is outside the DVC repository .*--no-dvc-add"):
        dvc_target(repo, tmp_path / "elsewhere")


def test_the_dvc_file_is_moved_where_the_project_expects_it_and_updated_in_place(repo):
    raw = class_tree(repo / "data" / "raw", per_class=1)
    dvc_file = repo / "data.dvc"
    assert dvc_track(repo, raw, dvc_file) == dvc_file
    first = yaml.safe_load(dvc_file.read_text())["outs"][0]
    assert first["path"] == "data/raw" and first["nfiles"] == 4
    assert not (repo / "data" / "raw.dvc").exists()
    staged = git("diff", "--cached", "--name-only", cwd=repo).split()
    assert "data.dvc" in staged and "data/raw.dvc" not in staged  # the move, not DVC's file

    write_image(raw / "Benign" / "extra.jpg", seed=99)
    assert dvc_track(repo, raw, dvc_file) == dvc_file
    second = yaml.safe_load(dvc_file.read_text())["outs"][0]
    assert second["nfiles"] == 5 and second["md5"] != first["md5"]
    assert not (repo / "data" / "raw.dvc").exists()


def test_without_a_dvc_file_dvc_keeps_its_own(repo):
    raw = class_tree(repo / "images", per_class=1)
    assert dvc_track(repo, raw) == repo / "images.dvc"
    assert yaml.safe_load((repo / "images.dvc").read_text())["outs"][0]["path"] == "images"


def test_a_failing_dvc_add_is_one_line_that_names_the_command(repo):
    with pytest.raises(LeukemiaCNNError, match=r"`dvc add missing` failed in .*--no-dvc-add") as error:
        dvc_track(repo, repo / "missing", repo / "missing.dvc")
    assert "\n" not in str(error.value) and not (repo / "missing.dvc").exists()
