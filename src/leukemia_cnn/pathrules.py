"""The rule every configured path obeys (``paths.*``, ``hydra.sweep.dir``), checked when a
config is loaded or composed, before any command writes.

The schema (:mod:`leukemia_cnn.config`) checks that a knob is a string; whether that string
is a safe place to write depends on the project on disk (its root, what git tracks), so it is
checked here. A configured path must lie inside the project (after ``${oc.env:HOME}`` and
``..`` are resolved), must not be or lie inside the project's own machinery (``.git``,
``.dvc``, ``src``, ``conf``, ``tests``, the MLflow store, study workspaces, ...), must be
neither a file git tracks nor a folder holding one (the pipeline's own outputs aside: metrics
git tracks, the ``.gitignore`` DVC writes), and must not overlap another command's
configured output. There is no exemption for a default: ``data/raw`` passes because it obeys
the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from leukemia_cnn.config_schema import Config
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.tracked import dvc_tracked, git_tracked

# Top-level names of the project's code, config, history and stores: no output goes there.
RESERVED = (".git", ".dvc", ".github", ".ci", ".venv", "src", "conf", "tests", "docs",
            "benchmarks", "studies", "mlruns", "mlartifacts", "mlflow.db", "multirun",
            "outputs", "dvc.yaml", "dvc.lock", "params.yaml", "data.dvc")
# paths.<key> -> what it names: a file or a folder.
FILES = ("manifest", "splits")
# Folders that commands write file by file (each file guarded), never replace whole: files git
# tracks inside them (reports a user committed after `dvc repro`) are no reason to refuse them.
FILE_BY_FILE = ("reports_dir",)


def path_reason(value: str, root: Path, git_files: list[Path],
                reserved: Iterable[str] = RESERVED, file_by_file: bool = False) -> str | None:
    """Why ``value`` (relative to ``root``, or absolute) is no place to write, or None
    (``file_by_file``: a folder never replaced whole may hold files git tracks)."""
    if not str(value).strip():
        return "is empty"
    given = Path(str(value)).expanduser()
    real = (given if given.is_absolute() else root / given).resolve()
    if real == root or not real.is_relative_to(root):
        return f"resolves to {real}, outside the project {root}"
    top = real.relative_to(root).parts[0]
    if top in reserved:
        return f"is inside {top}, which is the project's own (code, config, history or stores)"
    outs = dvc_tracked(root, git_files)
    # git may track the pipeline's own outputs (metrics with cache: false, DVC's .gitignore)
    own = [p for p in git_files if p.name == ".gitignore" or any(p.is_relative_to(o) for o in outs)]
    for path in sorted(set(git_files) - set(own)):
        if path == real:
            return "is a file git tracks"
        if path.is_relative_to(real) and not file_by_file:
            return f"holds files git tracks (e.g. {path.relative_to(root).as_posix()})"
    for path, where in outs.items():
        if real.is_relative_to(path) and real != path:
            return f"is inside {path.relative_to(root).as_posix()}, an output DVC tracks ({where})"
    return None


def _kind_reason(key: str, real: Path) -> str | None:
    if key in FILES and real.is_dir():
        return "is a folder; it names a file"
    if key not in FILES and real.exists() and not real.is_dir():
        return "is a file; it names a folder"
    return None


def check_paths(cfg: Config, root: Path) -> None:
    """Refuse the first ``paths.*`` value that breaks the rule (see the module doc), or two
    that overlap, with a one-line ConfigError naming the key."""
    root = Path(root).resolve()
    paths = cfg.paths.model_dump()
    git_files = git_tracked(root)
    seen: dict[str, Path] = {}
    for key, value in paths.items():
        reason = path_reason(str(value), root, git_files, file_by_file=key in FILE_BY_FILE)
        real = (root / Path(str(value)).expanduser()).resolve()
        reason = reason or _kind_reason(key, real)
        for other, where in seen.items():
            if reason is None and (real.is_relative_to(where) or where.is_relative_to(real)):
                reason = f"overlaps `paths.{other}` ({paths[other]}), another command's output"
        if reason:
            raise ConfigError(f"config key `paths.{key}` = {value!r} {reason}; set it to a new "
                              f"path inside the project, e.g. `leukemia-cnn params "
                              f"paths.{key}=<path>` (default in conf/paths/default.yaml)")
        seen[key] = real


def check_sweep_dir(overrides: Iterable[str], root: Path) -> None:
    """Refuse a ``hydra.sweep.dir=`` override that breaks the rule (jobs write there)."""
    root = Path(root).resolve()
    git_files = git_tracked(root)
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") in ("hydra.sweep.dir", "hydra.run.dir"):
            sweeps = [name for name in RESERVED if name not in ("multirun", "outputs")]
            reason = path_reason(value, root, git_files, sweeps)
            if reason:
                raise ConfigError(f"override `{item}` {reason}; leave it out (jobs go to "
                                  "multirun/<sweep id>) or name a new folder inside the project")
