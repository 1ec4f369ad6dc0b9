"""``leukemia-cnn study --source FOLDER``: the paper's study on any Kaggle-layout image set, in
its own workspace so the project's own data and state are untouched.

The workspace ``studies/<name>/`` (git- and DVC-ignored) is a git repository of the project's
files (:func:`leukemia_cnn.devtools.copy_project`) with its own ``data/`` (the source's images,
DVC-tracked there), ``params.yaml`` (``data=kaggle``) and MLflow store (``mlflow.db``;
``MLFLOW_TRACKING_URI`` still overrides it). The study runs :func:`plan` in it and copies the
report to ``docs/results/<name>.md`` (with ``.html`` and the figures) in the project.

The project's ``data/``, ``data.dvc``, ``params.yaml``, ``mlflow.db`` and reports are never
written. ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.devtools import copy_project
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.fileio import OUTPUT_MARKER, record_output, swap_folder, write_text

# The paper's Table 1 rows, then the number-of-conv-layers rows (conv3 is the paper's network
# at its default training; the Table 1 rows train it with each epoch/batch/loss setting), then
# the project's recipe for the same input (conf/experiment/fast.yaml), so the report tests
# "the recipe beats the paper's best" on the same images.
STUDY_EXPERIMENTS = ("table1_e15_b64_cce", "table1_e15_b64_bce", "table1_e15_b32_cce",
                     "table1_e10_b32_cce", "conv2", "conv3", "conv4", "fast")
STUDY_SEEDS = (1, 2, 3, 4, 5)
WORKSPACES = "studies"
RESULTS = Path("docs") / "results"
STUDY_OUTPUT = "study"  # whose record marks a published report (fileio.record_output)


def workspace_path(root: Path, name: str) -> Path:
    """``<root>/studies/<name>``; ``name`` must be a plain file stem."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise LeukemiaCNNError(f"study name {name!r} is not a file stem: use letters, digits, "
                               "'_', '-' or '.', starting with a letter or digit (e.g. "
                               "`leukemia-cnn study --source FOLDER --name real`)")
    return Path(root) / WORKSPACES / name


def plan(root: Path, source: Path, name: str, experiments=STUDY_EXPERIMENTS, seeds=STUDY_SEEDS,
         jobs: int = 2, overrides: tuple[str, ...] = (),
         sample_images: bool = True) -> list[list[str]]:
    """The commands the study runs in its workspace, in order (each a list of arguments)."""
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    return [
        ["leukemia-cnn", "params", "data=kaggle"],
        ["leukemia-cnn", "data", "get", "--source", str(Path(source).resolve())],
        ["dvc", "repro", "preprocess"],
        ["leukemia-cnn", "sweep", "-m", "data=kaggle", f"experiment={','.join(experiments)}",
         f"seed={','.join(str(s) for s in seeds)}", "train.train_fraction=1.0",
         f"sweep.id={name}", f"sweep.tf_threads={threads}", "sweep.register=false",
         f"hydra.launcher.n_jobs={jobs}", *overrides],
        ["leukemia-cnn", "report", "--sweep-id", name, "--name", name,
         *([] if sample_images else ["--no-sample-images"])],
    ]


def make_workspace(root: Path, workspace: Path) -> Path:
    """Copy the project's files into ``workspace`` and make it a git repository (DVC needs one)."""
    if workspace.exists():
        raise LeukemiaCNNError(
            f"study workspace {workspace} already exists (an earlier study of that name): "
            f"remove it (`rm -rf -- {shlex.quote(str(workspace))}`) or pick another name with "
            "--name")
    copy_project(root, workspace)
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=leukemia-cnn", "-c", "user.email=study@localhost",
                  "commit", "-qm", "study workspace"]):
        subprocess.run(args, cwd=workspace, check=True, capture_output=True)
    return workspace


def run_commands(commands: list[list[str]], workspace: Path) -> None:
    """Run each command in ``workspace`` with this interpreter's scripts first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        print(f"study: [{workspace.name}] {shlex.join(command)}", flush=True)
        code = subprocess.call(command, cwd=workspace, env=env)
        if code != 0:
            raise LeukemiaCNNError(
                f"study step `{shlex.join(command)}` failed (exit code {code}) in {workspace}; "
                "fix the cause shown above, then remove the workspace and start again")


def check_publish(root: Path, name: str, overwrite: bool = False) -> tuple[Path, Path, Path]:
    """The guard of the published report ``docs/results/NAME.md``, ``.html``, ``NAME_files/``:
    each new or an earlier study's, unchanged since; a committed or hand-written report only
    with ``overwrite`` (``--overwrite-report``). Returns the three paths."""
    from leukemia_cnn.study.report import check_report_outputs

    return check_report_outputs(Path(root) / RESULTS, name, root, STUDY_OUTPUT,
                                "Pass --name with another name, or --overwrite-report to "
                                "re-publish over it (git keeps the committed version)", overwrite)


def publish(root: Path, workspace: Path, name: str, source: Path, overwrite: bool = False) -> Path:
    """Copy the workspace's report (``reports/<name>.md``, ``.html``, ``<name>_files/``) to the
    project's ``docs/results/`` through the guard (:func:`check_publish`), the Markdown with a
    line naming the images; return its path."""
    reports = workspace / "reports"
    markdown, page, assets = check_publish(root, name, overwrite)
    if (reports / f"{name}_files").is_dir():
        with staging_folder(assets) as (staging, token):
            # (not the report's output marker: docs/results/ is the project's, not the report's)
            shutil.copytree(reports / f"{name}_files", staging,
                            ignore=shutil.ignore_patterns(OUTPUT_MARKER))
            swap_folder(staging, assets, token, STUDY_OUTPUT, assets if overwrite else None)
        record_output(assets, STUDY_OUTPUT)
    write_text(page, (reports / f"{name}.html").read_text(), owner=STUDY_OUTPUT)
    title, _, rest = (reports / f"{name}.md").read_text().partition("\n")
    origin = (f"Images: `{Path(source).resolve()}` (the study `leukemia-cnn study --name {name}`, "
              f"workspace `{WORKSPACES}/{name}/`, whose MLflow store holds every run).")
    write_text(markdown, f"{title}\n\n{origin}\n{rest}", owner=STUDY_OUTPUT)
    return markdown


def check_source(root: Path, source: str, workspace: Path) -> Path:
    """``--source`` as a path: it exists and does not hold the project (nor the workspace)."""
    source_path = Path(source).expanduser()
    if not source.strip() or not source_path.exists():
        raise LeukemiaCNNError(f"study --source {source!r}: no such file or folder; give a "
                               "Kaggle-layout folder (<Class>/*.jpg) or the Kaggle zip")
    if Path(root).resolve().is_relative_to(source_path.resolve()):
        raise LeukemiaCNNError(f"study --source {source}: holds the project (and the workspace "
                               f"{workspace}); give the image folder itself")
    return source_path


def main(root: Path, source: str, name: str, experiments=STUDY_EXPERIMENTS, seeds=STUDY_SEEDS,
         jobs: int = 2, overrides: tuple[str, ...] = (), dry_run: bool = False,
         sample_images: bool = True, overwrite: bool = False) -> Path | None:
    """Make the workspace, run the study in it and publish its report; see the module doc.

    Every refusal (source, name, the published report) comes before the workspace exists; a
    failed set-up step (params, data get) removes the workspace again."""
    workspace = workspace_path(root, name)
    source_path = check_source(root, source, workspace)
    check_publish(root, name, overwrite)
    commands = plan(root, source_path, name, experiments, seeds, jobs, overrides, sample_images)
    print(f"study: workspace {workspace} (own data/, params.yaml and MLflow store "
          f"{workspace / 'mlflow.db'}); report -> {Path(root) / RESULTS / (name + '.md')}")
    if dry_run:
        for command in commands:
            print("  " + " ".join(command))
        return None
    make_workspace(Path(root), workspace)
    try:
        run_commands(commands[:2], workspace)
    except (LeukemiaCNNError, KeyboardInterrupt) as exc:
        shutil.rmtree(workspace, ignore_errors=True)  # nothing but a copy of the project yet
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LeukemiaCNNError(f"{str(exc).split('; fix')[0]}; fix the cause shown above and "
                               "start again (the workspace was removed)") from None
    run_commands(commands[2:], workspace)
    published = publish(Path(root), workspace, name, source_path, overwrite)
    print(f"study: report {published}")
    return published
