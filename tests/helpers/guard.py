"""The scratch project of the output-guard tests: where its inputs lie, a tiny registered
model for `predict`, and quiet git."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

GUARD_IMAGE = "inbox/cell.jpg"  # predict's input in the guard project, untracked
GUARD_SOURCE = "inbox/tree"  # data get's source folder there, untracked


def register_tiny_model(root: Path) -> None:
    """An untrained two-layer CNN logged as the project's pyfunc model and made champion in
    ``root/mlflow.db``: enough for `predict` to run (its answers are not the point)."""
    import keras
    import mlflow

    from leukemia_cnn.config import load_params
    from leukemia_cnn.config_schema import ModelConfig
    from leukemia_cnn.modeling.model import build_model
    from leukemia_cnn.serving.pyfunc import log_model
    from leukemia_cnn.tracking.store import setup_mlflow

    cfg = load_params(root / "params.yaml")
    setup_mlflow(cfg, root)
    model = build_model((32, 32, 1), 4, ModelConfig(filters=[4], kernel_sizes=[3], dense_units=8))
    with tempfile.TemporaryDirectory() as work, mlflow.start_run():
        keras.saving.save_model(model, Path(work) / "model.keras")
        info = log_model(Path(work) / "model.keras", list(cfg.data.classes), 32, "grayscale")
    name = cfg.mlflow.registered_model_name
    version = mlflow.register_model(info.model_uri, name).version
    mlflow.MlflowClient().set_registered_model_alias(name, cfg.mlflow.champion_alias,
                                                     version)


def run(argv: list[str], capfd) -> tuple[int, str]:
    """``leukemia-cnn ARGV`` in this process; (exit status, stderr)."""
    from leukemia_cnn.cli.main import main as cli_main

    try:
        code = cli_main(argv)
    except SystemExit as exited:  # argparse usage errors
        code = exited.code
    return code, capfd.readouterr().err


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The keys of two :func:`helpers.datasets.tree_digest` results that differ."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def one_line_error(code: int, err: str, command: str, status: int = 1) -> bool:
    """Whether a run failed with ``status`` and its error is one line ``leukemia-cnn COMMAND:
    error: ...``, the last one (a usage error, status 2, adds a hint line), no traceback.
    Progress and notes printed before it are fine."""
    lines = err.strip().splitlines()
    if status == 2:
        lines = lines[-2:-1]  # the hint follows the error
    errors = [line for line in err.splitlines() if "error:" in line]
    prefix = "leukemia-cnn " + ("" if status == 2 else f"{command}: ")
    return (code == status and "Traceback" not in err and bool(lines) and len(errors) == 1
            and lines[-1] == errors[0] and errors[0].startswith(prefix))


def git(*args: str, cwd: Path) -> None:
    """``git ARGS`` in ``cwd``, quietly; fails the test on an error."""
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
