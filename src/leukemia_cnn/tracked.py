"""What git and DVC track in a project: the files and outputs the rule of every output
(:mod:`leukemia_cnn.pathrules`, :func:`leukemia_cnn.fileio.check_output`) never lets a
command overwrite."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from leukemia_cnn.errors import OutputError


def git_tracked(root: Path) -> list[Path]:
    """Absolute paths of the files git tracks under ``root`` (none outside a git work tree)."""
    root = Path(root).resolve()
    if shutil.which("git") is None:
        return []
    listed = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=root, capture_output=True)
    if listed.returncode != 0:
        return []
    names = listed.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return [root / name for name in names if name]


def dvc_tracked(root: Path, git_files: Iterable[Path] = ()) -> dict[Path, str]:
    """Outputs DVC tracks under ``root``: each path -> where it is declared
    (``dvc.yaml stage train``, ``data.dvc``).

    A pipeline that uses DVC's templating (``${...}``, ``foreach``, ``matrix``) or nested
    ``dvc.yaml`` files is read by DVC itself; a plain one (this project's) by reading the
    stages' ``outs``, ``metrics`` and ``plots`` as YAML, since importing DVC's ``Repo`` costs
    every command 0.6-1.2 s on 2 cores. The answer is kept while ``dvc.yaml``,
    ``params.yaml`` and the ``.dvc`` files git tracks or that lie at the top of ``root`` are
    unchanged, since a command asks once per path.

    Raises
    ------
    OutputError
        If the pipeline cannot be read (a broken ``dvc.yaml``): no output is checked against
        a pipeline nobody can read.
    """
    root = Path(root).resolve()
    git_files = tuple(git_files)
    files = {root / "dvc.yaml", root / "params.yaml", *root.glob("*.dvc"),
             *(p for p in git_files if p.suffix == ".dvc" or p.name == "dvc.yaml")}
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in sorted(files) if p.is_file())
    pipelines = [p for p in files if p.name == "dvc.yaml" and p.is_file()]
    templated = re.compile(r"\$\{|^\s*(foreach|matrix)\s*:", re.MULTILINE)
    if len(pipelines) > 1 or any(templated.search(p.read_text()) for p in pipelines):
        return dict(_dvc_outs(root, stamp))
    return dict(_plain_outs(root, stamp))


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError:
        return {}
    except yaml.YAMLError as exc:
        raise OutputError(f"DVC cannot read the pipeline of {path}: "
                          f"{str(exc).splitlines()[0]}; fix the file and rerun") from None
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=8)
def _plain_outs(root: Path, stamp: tuple) -> tuple[tuple[Path, str], ...]:
    """``(path, where)`` of the outputs of a pipeline without templating, read as YAML."""
    found = []
    stages = _load_yaml(root / "dvc.yaml").get("stages") or {}
    for name, stage in (stages.items() if isinstance(stages, dict) else ()):
        for key in ("outs", "metrics", "plots"):
            for item in (stage.get(key) or []) if isinstance(stage, dict) else []:
                path = next(iter(item), None) if isinstance(item, dict) else item
                if isinstance(path, str):
                    found.append(((root / path).resolve(), f"dvc.yaml stage {name}"))
    for dvc_file in sorted(Path(name) for name, _, _ in stamp if name.endswith(".dvc")):
        for out in _load_yaml(dvc_file).get("outs") or []:
            if isinstance(out, dict) and isinstance(out.get("path"), str):
                found.append(((dvc_file.parent / out["path"]).resolve(),
                              dvc_file.relative_to(root).as_posix()))
    return tuple(found)


@functools.lru_cache(maxsize=8)
def _dvc_outs(root: Path, stamp: tuple) -> tuple[tuple[Path, str], ...]:
    """``(path, where)`` of every output DVC reads under ``root`` (``stamp``: the cache key)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:  # uninitialized: a project without .dvc/ (yet) still declares its outputs
        with Repo(str(root), uninitialized=True) as repo:
            outs = [(Path(out.fs_path), out.stage) for out in repo.index.outs]
    except DvcException as exc:
        raise OutputError(f"DVC cannot read the pipeline of {root}: {exc}; fix the file it "
                          "names and rerun") from exc
    found = []
    for path, stage in outs:
        name = Path(stage.path).relative_to(root).as_posix()
        found.append((path, name if name.endswith(".dvc") else f"{name} stage {stage.name}"))
    return tuple(found)
