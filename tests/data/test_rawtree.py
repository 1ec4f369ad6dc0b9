"""Issue 31, item 2 (data): a full disk loses nothing and says so in one line. `data get`
blames the destination when the disk fills while copying; when it fills while DVC copies the
new tree into its cache, the previous data/raw and data.dvc are put back, whether `dvc add`
fails or (DVC 3.67) exits 0 with objects missing. Real full disks are small tmpfs mounts (the
test is skipped where none can be mounted); the seam tests make the same writes fail
everywhere."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from helpers.datasets import class_tree, tree_digest
from helpers.disks import dvc, dvc_project, enospc, small_disk
from helpers.guard import one_line_error, run
from leukemia_cnn.data import versioning


@pytest.fixture
def versioned(tmp_path, monkeypatch, capfd):
    """A git + DVC project whose data/raw (24 small images) data.dvc versions."""
    project = dvc_project(tmp_path / "project", ("data=kaggle",))
    monkeypatch.chdir(project)
    first = class_tree(tmp_path / "first", seed=1)
    assert run(["data", "get", "--source", str(first)], capfd)[0] == 0
    return project


def big_source(tmp_path: Path) -> Path:
    """40 images per class of 200x200 noise: about 4.5 MB, more than the small disks hold."""
    return class_tree(tmp_path / "big", per_class=40, seed=2, size=(200, 200))


def state(project: Path) -> tuple[dict, bytes, list[str]]:
    """data/raw's files, data.dvc's bytes and what lies beside data/raw (no staging left)."""
    return (tree_digest(project / "data" / "raw"), (project / "data.dvc").read_bytes(),
            sorted(p.name for p in (project / "data").iterdir()))


def test_a_disk_that_fills_while_copying_is_blamed_not_the_source(tmp_path, versioned, capfd):
    before = state(versioned)
    source = big_source(tmp_path)
    data = versioned / "data"
    shutil.copytree(data, tmp_path / "data-copy", symlinks=True)
    with small_disk(data, 600):  # data/ on a small disk, with its files
        shutil.copytree(tmp_path / "data-copy", data, symlinks=True, dirs_exist_ok=True)
        code, err = run(["data", "get", "--source", str(source)], capfd)
        after = state(versioned)

    assert one_line_error(code, err, "data get")
    assert f"no space left on device writing {data}/raw.tmp-" in err
    assert "cannot read" not in err and "data/raw is as it was" in err
    assert after == before


def test_a_full_dvc_cache_keeps_the_previous_data_raw_and_data_dvc(tmp_path, versioned, capfd):
    before = state(versioned)
    source = big_source(tmp_path)
    with small_disk(tmp_path / "cache", 1024) as disk:
        shutil.copytree(versioned / ".dvc" / "cache", disk / "cache")  # the first version
        dvc("cache", "dir", "--local", str(disk / "cache"), cwd=versioned)
        code, err = run(["data", "get", "--source", str(source)], capfd)
        missing = dvc("status", "--json", "data.dvc", cwd=versioned).stdout
        dvc("config", "--local", "--unset", "cache.dir", cwd=versioned)

    assert one_line_error(code, err, "data get")
    assert "data/raw is as it was and so is data.dvc" in err and str(disk) in err
    assert state(versioned) == before
    assert "not in cache" not in missing  # data.dvc points at objects the cache holds


FAKE_DVC = """#!{python}
import sys
from pathlib import Path
if sys.argv[1:3] == ["cache", "dir"]:
    print(Path.cwd() / ".dvc" / "cache")
    sys.exit(0)
Path("data.dvc").write_text("")  # DVC truncated it before the disk filled
sys.stderr.write("ERROR: unexpected error - [Errno 28] No space left on device\\n"
                 "Traceback (most recent call last):\\n  File dulwich/index.py ...\\n")
sys.exit(255)
"""


def test_dvc_add_failing_on_a_full_disk_puts_everything_back(tmp_path, versioned, capfd,
                                                              monkeypatch):
    """The seam: `dvc` itself fails with ENOSPC (the whole disk full); no mount needed."""
    before = state(versioned)
    fake = tmp_path / "dvc"
    fake.write_text(FAKE_DVC.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(versioning, "dvc_command", lambda: [str(fake)])

    code, err = run(["data", "get", "--source", str(class_tree(tmp_path / "new", seed=5))],
                    capfd)

    assert one_line_error(code, err, "data get")
    assert "`dvc add data/raw` ran out of disk space" in err and "dulwich" not in err
    assert "data/raw is as it was and so is data.dvc" in err
    assert state(versioned) == before


def test_a_write_that_fills_the_disk_while_copying_names_the_staging_path(
        tmp_path, versioned, capfd, monkeypatch):
    """The seam of the copy: the destination's write() fails with ENOSPC."""
    before = state(versioned)
    real_open = Path.open

    def open_full(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if mode == "xb" and ".tmp-" in str(self):
            def write(data):
                raise enospc()
            handle.write = write
        return handle

    monkeypatch.setattr(Path, "open", open_full)
    code, err = run(["data", "get", "--source", str(class_tree(tmp_path / "new", seed=5))],
                    capfd)

    assert one_line_error(code, err, "data get")
    assert f"no space left on device writing {versioned}/data/raw.tmp-" in err
    assert "cannot read" not in err
    assert state(versioned) == before
