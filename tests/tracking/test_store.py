import subprocess
import sys
import threading

import mlflow

from helpers import REPO_ROOT
from leukemia_cnn.config import flatten
from leukemia_cnn.tracking.store import config_id, store_lock

# One worker: set the store up (first use creates the sqlite tables), then log runs.
WORKER = """
import sys
from pathlib import Path
import mlflow
from leukemia_cnn.config import load_config
from leukemia_cnn.tracking.store import setup_mlflow
setup_mlflow(load_config(root=Path(sys.argv[1])), Path(sys.argv[2]))
for index in range(2):
    with mlflow.start_run(run_name=f"worker{sys.argv[3]}-{index}"):
        mlflow.set_tag("sweep_id", "parallel")
        mlflow.log_params({f"param{i}": f"{sys.argv[3]}-{index}-{i}" for i in range(40)})
        for step in range(20):
            mlflow.log_metrics({"loss": 1 / (step + 1), "accuracy": step / 20}, step=step)
"""


def test_parallel_workers_on_a_fresh_sqlite_store_lose_no_run(tmp_path, monkeypatch):
    """Unserialised, concurrent table creation corrupts a new sqlite store; setup_mlflow
    serialises it, and concurrent logging afterwards loses nothing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(REPO_ROOT), str(tmp_path),
                                 str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for n in range(3)]
    results = [(w.wait(timeout=300), w.stderr.read()) for w in workers]
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"])
    assert len(runs) == 6 and set(runs["status"]) == {"FINISHED"}
    client = mlflow.MlflowClient()
    for run_id in runs["run_id"]:
        run = client.get_run(run_id)
        worker_index = run.info.run_name.removeprefix("worker")
        # Every param, and every step of every metric, with its value.
        assert run.data.params == {f"param{i}": f"{worker_index}-{i}" for i in range(40)}
        loss = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
        accuracy = {m.step: m.value for m in client.get_metric_history(run_id, "accuracy")}
        assert loss == {step: 1 / (step + 1) for step in range(20)}
        assert accuracy == {step: step / 20 for step in range(20)}


# A lock that waits for itself would hang a test: this bounds the wait (it is no speed limit).
DEADLOCK_SECONDS = 60
# Another process asks for the lock without waiting: exit status 0 when it got it.
PROBE = "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)"


def test_store_lock_is_reentrant_within_a_process(tmp_path):
    """A caller that holds the lock (setup_mlflow) may call code that takes it again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    entered = threading.Event()

    def nested():
        with store_lock(uri), store_lock(uri):
            entered.set()

    threading.Thread(target=nested, daemon=True).start()
    assert entered.wait(DEADLOCK_SECONDS), "store_lock waited for itself: it is not re-entrant"
    with store_lock("http://tracking-server:5000"):  # not sqlite: nothing to lock
        pass


def test_store_lock_keeps_other_processes_out_until_released(tmp_path):
    uri, lock = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlflow.db.lock"

    def probe():
        return subprocess.run([sys.executable, "-c", PROBE, str(lock)], capture_output=True,
                              text=True, timeout=DEADLOCK_SECONDS)

    with store_lock(uri), store_lock(uri):
        held = probe()
    assert held.returncode != 0 and "BlockingIOError" in held.stderr, held.stderr
    assert probe().returncode == 0 and lock.is_file()  # released; the lock file stays


def test_config_id_ignores_seed_and_plumbing(make_cfg):
    base = flatten(make_cfg("seed=1"))
    assert config_id(base) == config_id(flatten(make_cfg("seed=2", "sweep.id=x",
                                                         "train.verbose=0")))
    assert config_id(base) != config_id(flatten(make_cfg("seed=1", "train.batch_size=32")))
    # MLflow params are strings: the id is the same from a run's params.
    assert config_id(base) == config_id({k: str(v) for k, v in base.items()})
    # A knob at its default is the configuration a run logged before the knob existed.
    older = {k: v for k, v in base.items() if k not in ("train.ema_momentum", "train.augment")}
    assert config_id(base) == config_id(older)
    assert config_id({**older, "train.ema_momentum": "0"}) == config_id(base)
    assert config_id(flatten(make_cfg("seed=1", "train.ema_momentum=0.9"))) != config_id(base)


def test_config_id_tells_the_recipe_knobs_apart(make_cfg):
    base = config_id(flatten(make_cfg("seed=1")))
    older = {k: v for k, v in flatten(make_cfg("seed=1")).items()
             if k not in ("train.label_smoothing", "evaluate.tta", "train.mixed_precision")}
    assert config_id(older) == base  # runs logged before these knobs: the same configuration
    for knob_setting in ("evaluate.tta=true", "train.label_smoothing=0.1",
                         "train.weight_decay=0.01", "train.augment_dihedral=true",
                         "model.standardize=per_image", "train.mixed_precision=bfloat16"):
        assert config_id(flatten(make_cfg("seed=1", knob_setting))) != base, knob_setting


def test_log_datasets_logs_each_split_without_mlflow_advice(tmp_path, mlflow_store, recwarn):
    import pandas as pd

    from leukemia_cnn.data.lineage import DataLineage
    from leukemia_cnn.tracking.store import log_datasets

    mlflow.set_experiment("log-datasets")
    rows = pd.DataFrame({"path": [f"{c}/{i}.jpg" for c in "ab" for i in range(3)] * 3,
                         "class": ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 6,
                         "label": [0, 0, 0, 1, 1, 1] * 3,
                         "sha256": [f"{i:064x}" for i in range(18)],
                         "split": ["train"] * 6 + ["val"] * 6 + ["test"] * 6})
    lineage = DataLineage(version="0123456789abcdef0123456789abcdef.dir", source="folder",
                          name="smears", uri=str(tmp_path / "raw"), val_digest="v")
    with mlflow.start_run() as run:
        log_datasets(lineage, rows)
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["smears-test", "smears-train", "smears-val"]
    assert {t.value for i in inputs for t in i.tags if t.key == "n_images"} == {"6"}
    # MLflow's schema advice (integer columns, equal source types) never reaches the user
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)], \
        [str(w.message) for w in recwarn]
