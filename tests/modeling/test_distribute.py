"""`train.distribute`: multi-GPU training with tf.distribute.MirroredStrategy, exercised on the
CPU (MirroredStrategy mirrors onto the CPU device when there is no GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import TINY_OVERRIDES, write_preprocessed


def test_unknown_distribute_value_names_the_allowed_ones(make_cfg):
    from leukemia_cnn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.distribute.*horovod.*null.*mirrored"):
        make_cfg("train.distribute=horovod")


def test_default_trains_without_a_strategy(make_cfg):
    from leukemia_cnn.modeling.train import distribution_strategy

    assert make_cfg().train.distribute is None
    assert distribution_strategy(make_cfg()) is None


def test_mirrored_strategy_trains_one_epoch_on_cpu(tmp_path, make_cfg, mlflow_store, capsys):
    import tensorflow as tf

    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.modeling import train

    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=1", "train.distribute=mirrored")
    write_preprocessed(tmp_path, cfg)
    x_train, y_train, _ = load_split(tmp_path / cfg.paths.preprocessed_dir, "train")
    x_val, y_val, _ = load_split(tmp_path / cfg.paths.preprocessed_dir, "val")
    model, history, _ = train.fit(cfg, x_train, y_train, x_val, y_val)
    assert isinstance(model.distribute_strategy, tf.distribute.MirroredStrategy)
    assert "MirroredStrategy with 1 replica(s)" in capsys.readouterr().out
    assert len(history) == 1 and np.isfinite(history["loss"]).all()
    # The whole stage too: the run records the knob and the model is logged and loadable.
    result = train.run(cfg, tmp_path)
    from mlflow import MlflowClient

    run = MlflowClient().get_run(result["run_id"])
    assert run.data.params["train.distribute"] == "mirrored"
    assert run.info.status == "FINISHED"
    assert (tmp_path / "models" / "cnn.keras").is_file()
