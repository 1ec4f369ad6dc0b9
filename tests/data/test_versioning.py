"""``data get``'s DVC versioning: `dvc add` the raw folder, its `.dvc` file where the project
expects it (data.dvc), the move staged in git, one-line errors; and the remote set-up of
docs/scaling.md, which verifies what `dvc pull` brings (issue 31, item 7)."""

import re
import subprocess
import sys

import pytest
import yaml

from helpers import REPO_ROOT
from helpers.datasets import class_tree, tree_digest, write_image
from helpers.disks import dvc
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


# The remote set-up of docs/scaling.md: `verify` on (issue 31, item 7).
SCALING = REPO_ROOT / "docs" / "scaling.md"


def documented_remote_commands(remote: str) -> list[list[str]]:
    """The `dvc remote ...` lines of docs/scaling.md's local-folder set-up, with the folder
    replaced by ``remote``."""
    section = SCALING.read_text().split("### A local or network folder", 1)[1].split("```")[1]
    lines = [line.split("#", 1)[0].split() for line in section.splitlines()
             if line.startswith("dvc remote ")]
    return [[remote if re.match(r"/mnt/", arg) else arg for arg in line] for line in lines]


def pushed_project(tmp_path, verify: bool | None):
    """A git + DVC project whose data/raw was pushed to a folder remote set up as documented
    (``verify`` None) or with verify forced; returns (project, remote)."""
    project, remote = tmp_path / "origin", tmp_path / "remote"
    project.mkdir()
    git("init", "-q", cwd=project)
    dvc("init", "-q", cwd=project)
    class_tree(project / "data" / "raw", per_class=2)
    dvc("add", "-q", "--", "data/raw", cwd=project)
    for command in documented_remote_commands(str(remote)):
        dvc(*command[1:], cwd=project)
    if verify is not None:
        dvc("remote", "modify", "shared", "verify", str(verify).lower(), cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "data and remote", cwd=project)
    dvc("push", "-q", cwd=project)
    return project, remote


def alter_one_object(remote) -> None:
    """Overwrite one image's object on the remote with other bytes (same size)."""
    objects = sorted(p for p in (remote / "files").rglob("*") if p.is_file()
                     and not p.name.endswith(".dir"))
    victim = objects[0]
    victim.chmod(0o644)
    victim.write_bytes(bytes(reversed(victim.read_bytes())))


def clone_and_pull(tmp_path, project, name):
    clone = tmp_path / name
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    pulled = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone,
                            capture_output=True, text=True)
    return clone, pulled


def test_the_documented_remote_refuses_an_altered_object(tmp_path):
    assert ["dvc", "remote", "modify", "shared", "verify", "true"] in documented_remote_commands(
        "/x"), "docs/scaling.md's remote set-up must turn on verify"
    project, remote = pushed_project(tmp_path, verify=None)
    alter_one_object(remote)

    clone, pulled = clone_and_pull(tmp_path, project, "clone")

    assert pulled.returncode != 0, pulled.stdout
    assert "Checkout failed" in pulled.stderr
    restored = tree_digest(clone / "data" / "raw") if (clone / "data" / "raw").exists() else {}
    original = tree_digest(project / "data" / "raw")
    assert all(original.get(k) == v for k, v in restored.items())  # nothing altered arrived
    assert "not in cache" in dvc("status", cwd=clone).stdout


def test_without_verify_the_altered_object_is_pulled_silently(tmp_path):
    """What the documented set-up prevents (DVC's default)."""
    project, remote = pushed_project(tmp_path, verify=False)
    alter_one_object(remote)

    clone, pulled = clone_and_pull(tmp_path, project, "clone")

    assert pulled.returncode == 0
    assert tree_digest(clone / "data" / "raw") != tree_digest(project / "data" / "raw")
    assert "up to date" in dvc("status", cwd=clone).stdout
