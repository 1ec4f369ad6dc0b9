"""``leukemia-cnn study --source FOLDER``: the paper's study on any Kaggle-layout image set, in
its own workspace so the project's own data and state are untouched.

The workspace ``studies/<name>/`` (git- and DVC-ignored) is a copy of the project's files (as
``tests`` and ``benchmarks`` copy it: tracked or not, minus data and outputs) made a git
repository, with its own ``data/`` (the source's images, DVC-tracked there), its own
``params.yaml`` (``data=kaggle``) and its own MLflow store (``studies/<name>/mlflow.db``; the
variable ``MLFLOW_TRACKING_URI`` still overrides it). In it the study runs:

1. ``leukemia-cnn params data=kaggle`` and ``leukemia-cnn data get --source FOLDER``,
2. ``dvc repro preprocess`` (validation, split, preprocess),
3. ``leukemia-cnn sweep -m experiment=<rows> seed=<seeds> train.train_fraction=1.0``: the
   paper's four Table 1 rows, the conv-layer rows (2, 3, 4 layers) and the ``fast`` recipe
   over seeds 1-5,
4. ``leukemia-cnn report``, copied to ``docs/results/<name>.md`` (with ``.html`` and the
   figures) in the project; ``--no-sample-images`` leaves out Fig. 2 (images of the source
   with their predictions), for images that may not be published.

The project's ``data/``, ``data.dvc``, ``params.yaml``, ``mlflow.db`` and reports are never
written. ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from leukemia_cnn.devtools import copy_project
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.fileio import OUTPUT_MARKER

# The paper's Table 1 rows, then the number-of-conv-layers rows (conv3 is the paper's network
# at its default training; the Table 1 rows train it with each epoch/batch/loss setting), then
# the project's recipe for the same input (conf/experiment/fast.yaml), so the report tests
# "the recipe beats the paper's best" on the same images.
STUDY_EXPERIMENTS = ("table1_e15_b64_cce", "table1_e15_b64_bce", "table1_e15_b32_cce",
                     "table1_e10_b32_cce", "conv2", "conv3", "conv4", "fast")
STUDY_SEEDS = (1, 2, 3, 4, 5)
WORKSPACES = "studies"
RESULTS = Path("docs") / "results"


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
            f"remove it (`rm -rf {workspace}`) or pick another name with --name")
    copy_project(root, workspace)
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=leukemia-cnn", "-c", "user.email=study@localhost",
                  "commit", "-qm", "study workspace"]):
        subprocess.run(args, cwd=workspace, check=True, capture_output=True)
    return workspace


def run_commands(commands: list[list[str]], workspace: Path) -> None:
    """Run each command in ``workspace`` with this interpreter's scripts first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        print(f"study: [{workspace.name}] {' '.join(command)}", flush=True)
        code = subprocess.call(command, cwd=workspace, env=env)
        if code != 0:
            raise LeukemiaCNNError(
                f"study step `{' '.join(command)}` failed (exit code {code}) in {workspace}; "
                "fix the cause shown above, then remove the workspace and start again")


def publish(root: Path, workspace: Path, name: str, source: Path) -> Path:
    """Copy the workspace's report (``reports/<name>.md``, ``.html``, ``<name>_files/``) to the
    project's ``docs/results/``, the Markdown with a line naming the images; return its path."""
    reports = workspace / "reports"
    target = Path(root) / RESULTS
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(reports / f"{name}.html", target / f"{name}.html")
    title, _, rest = (reports / f"{name}.md").read_text().partition("\n")
    origin = (f"Images: `{Path(source).resolve()}` (the study `leukemia-cnn study --name {name}`, "
              f"workspace `{WORKSPACES}/{name}/`, whose MLflow store holds every run).")
    (target / f"{name}.md").write_text(f"{title}\n\n{origin}\n{rest}")
    assets = target / f"{name}_files"
    if assets.exists():
        shutil.rmtree(assets)
    if (reports / f"{name}_files").is_dir():
        # (not the report's output marker: docs/results/ is the project's, not the report's)
        shutil.copytree(reports / f"{name}_files", assets,
                        ignore=shutil.ignore_patterns(OUTPUT_MARKER))
    return target / f"{name}.md"


def main(root: Path, source: str, name: str, experiments=STUDY_EXPERIMENTS, seeds=STUDY_SEEDS,
         jobs: int = 2, overrides: tuple[str, ...] = (), dry_run: bool = False,
         sample_images: bool = True) -> Path | None:
    """Make the workspace, run the study in it and publish its report; see the module doc."""
    source_path = Path(source).expanduser()
    if not source_path.exists():
        raise LeukemiaCNNError(f"study --source {source}: no such file or folder; give a "
                               "Kaggle-layout folder (<Class>/*.jpg) or the Kaggle zip")
    workspace = workspace_path(root, name)
    commands = plan(root, source_path, name, experiments, seeds, jobs, overrides, sample_images)
    print(f"study: workspace {workspace} (own data/, params.yaml and MLflow store "
          f"{workspace / 'mlflow.db'}); report -> {Path(root) / RESULTS / (name + '.md')}")
    if dry_run:
        for command in commands:
            print("  " + " ".join(command))
        return None
    make_workspace(Path(root), workspace)
    run_commands(commands, workspace)
    published = publish(Path(root), workspace, name, source_path)
    print(f"study: report {published}")
    return published
