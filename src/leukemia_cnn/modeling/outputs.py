"""The train stage's outputs, replaced all together or not at all.

DVC keeps them in place while the stage runs (``persist: true`` in dvc.yaml), train writes the
new model and history in a staging folder (``models/cnn.keras.tmp-<hex>``, git- and
DVC-ignored) and :func:`publish` moves them in only after the MLflow run has finished. Ctrl-C,
SIGTERM, SIGKILL or an error before that leaves the last good ``models/cnn.keras``,
``models/guard.npz``, ``models/run.json``, ``reports/train.json`` and ``reports/train_history.csv``
as they were, consistent with each other and with ``dvc.lock``.

A ``dvc repro``/``dvc exp run`` that receives SIGTERM dies without stopping the command it
runs: :func:`exit_with_dvc` makes train stop too (as on Ctrl-C), so that an orphaned training
does not later write a model that ``dvc.lock`` and ``reports/metrics.json`` do not describe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from leukemia_cnn.fileio import write_json
from leukemia_cnn.modeling.guard import GUARD_FILE

MODEL_FILE = "cnn.keras"
HISTORY_FILE = "train_history.csv"


def publish(staging: Path, model_dir: Path, reports_dir: Path, record: dict,
            summary: dict) -> None:
    """Move the staged model and history in, then write ``run.json`` and ``train.json``
    (each replacement is one atomic rename)."""
    os.replace(staging / MODEL_FILE, model_dir / MODEL_FILE)
    if (staging / GUARD_FILE).exists():  # the out-of-distribution guard beside the model
        os.replace(staging / GUARD_FILE, model_dir / GUARD_FILE)
    os.replace(staging / HISTORY_FILE, reports_dir / HISTORY_FILE)
    write_json(model_dir / "run.json", record)
    write_json(reports_dir / "train.json", summary)


def dvc_process():
    """The ``dvc`` process that runs this command (psutil.Process), or None outside DVC.

    DVC sets ``DVC_STAGE`` for a stage's command and runs it through a shell; the nearest
    ancestor whose command line names dvc is the one whose death orphans us.
    """
    if not os.environ.get("DVC_STAGE"):
        return None
    import psutil

    with contextlib.suppress(psutil.Error):
        for ancestor in psutil.Process().parents():
            with contextlib.suppress(psutil.Error):
                if any(Path(part).name == "dvc" or part == "dvc.cli" for part in
                       ancestor.cmdline()[:3]):
                    return ancestor
        return psutil.Process().parent()
    return None


@contextlib.contextmanager
def exit_with_dvc() -> Iterator[None]:
    """Inside the block, the death of the running ``dvc`` sends this process SIGTERM
    (raised as an interrupt by train's handler). Does nothing outside DVC."""
    watched = dvc_process()
    if watched is None:
        yield
        return
    import psutil

    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):  # seconds between two looks for the DVC process
            try:  # killed but not yet reaped by its own parent: a zombie, as good as gone
                alive = watched.is_running() and watched.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="exit-with-dvc", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
