"""Issue 31, item 7: DVC remotes verify what they pull. The remote set-up of docs/scaling.md
(its commands, run as written) turns on `verify`, so an object altered on the remote is
refused by `dvc pull`; without it DVC pulls it silently."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO_ROOT
from helpers.datasets import class_tree, tree_digest
from helpers.disks import dvc, git

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
