import pytest
from omegaconf import OmegaConf

from helpers import REPO_ROOT
from leukemia_cnn.config import (
    KNOB_DEFAULTS,
    PAPER_KNOBS,
    compose,
    find_repo_root,
    flatten,
    hog_feature_length,
    is_paper_faithful,
    knob,
    load_params,
    overrides_from_defaults,
    validate_config,
)
from leukemia_cnn.errors import ConfigError


def test_params_yaml_is_conf_composed():
    """params.yaml (read by DVC stages) must equal conf/ composed with no overrides."""
    committed = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "params.yaml"))
    assert committed == OmegaConf.to_container(compose(root=REPO_ROOT))


def test_paper_defaults():
    cfg = load_params(REPO_ROOT / "params.yaml")
    assert list(cfg.data.classes) == ["Benign", "Early", "Pre", "Pro"]
    assert (cfg.split.train, cfg.split.val, cfg.split.test) == (0.70, 0.15, 0.15)
    assert cfg.preprocess.image_size == 100 and cfg.preprocess.color_mode == "grayscale"
    assert cfg.features.hog.orientations == 9 and cfg.features.pca.n_components == 100
    assert list(cfg.model.filters) == [64, 32, 128] and list(cfg.model.kernel_sizes) == [5, 5, 3]
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (15, 64, 0.001)
    assert cfg.train.loss == "categorical_crossentropy"


def test_knob_defaults_agree_with_conf_and_build_model():
    """Each knob's default is written in conf/, in KNOB_DEFAULTS (for params files older than
    the knob) and in build_model's signature: the three must agree."""
    import inspect

    from leukemia_cnn.modeling.model import build_model

    composed = flatten(compose(root=REPO_ROOT))
    assert {key: composed[key] for key in KNOB_DEFAULTS} == KNOB_DEFAULTS
    assert {key: composed[key] for key in PAPER_KNOBS} == PAPER_KNOBS
    signature = inspect.signature(build_model).parameters
    for key in ("model.batch_norm", "model.batch_norm_momentum", "model.kernel_initializer",
                "model.head", "train.augment", "train.augment_rotation"):
        assert signature[key.split(".")[1]].default == KNOB_DEFAULTS[key], key


def test_params_file_older_than_the_knobs_takes_their_defaults(tmp_path):
    """A params file written before the robust-training knobs (e.g. an old DVC experiment)
    still validates, reads as the paper's configuration and trains as it did."""
    old = OmegaConf.to_container(compose(root=REPO_ROOT))
    for key in KNOB_DEFAULTS:
        section, name = key.split(".")
        del old[section][name]
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(old))
    cfg = load_params(tmp_path / "params.yaml")
    assert OmegaConf.select(cfg, "train.lr_schedule") is None
    assert is_paper_faithful(cfg)
    assert {key: knob(cfg, key) for key in KNOB_DEFAULTS} == KNOB_DEFAULTS
    improved = compose(["experiment=improved"], root=REPO_ROOT)
    assert knob(improved, "train.lr_schedule") == improved.train.lr_schedule
    assert not is_paper_faithful(improved)
    # Logged params are strings: "0" is the paper's 0.0 (no weight averaging), "0.9" is not.
    assert is_paper_faithful(compose(["train.ema_momentum=0"], root=REPO_ROOT))
    assert not is_paper_faithful(compose(["train.ema_momentum=0.9"], root=REPO_ROOT))


@pytest.mark.parametrize("override,key", [
    ("train.loss=hinge", "train.loss"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=-1", "train.epochs"),
    ("features.pca.n_components=5000", "features.pca.n_components"),
    ("split.train=0.8", "split.train/val/test"),
    ("model.kernel_sizes=[5,5]", "model.kernel_sizes"),
    ("model.padding=full", "model.padding"),
    ("preprocess.color_mode=cmyk", "preprocess.color_mode"),
    ("model.dropout=1.5", "model.dropout"),
    ("train.augment_rotation=0.9", "train.augment_rotation"),
    ("model.kernel_initializer=zeros", "model.kernel_initializer"),
    ("model.head=attention", "model.head"),
    ("train.lr_plateau_patience=0", "train.lr_plateau_patience"),
    ("train.lr_warmup_epochs=-1", "train.lr_warmup_epochs"),
    ("train.lr_warmup_epochs=15", "train.lr_warmup_epochs"),
    ("train.lr_warmup_epochs=2.5", "train.lr_warmup_epochs"),
    ("train.ema_momentum=1.0", "train.ema_momentum"),
    ("train.ema_momentum=-0.5", "train.ema_momentum"),
    ("train.ema_momentum=true", "train.ema_momentum"),
])
def test_bad_values_are_rejected_naming_the_key(override, key):
    cfg = compose([override], root=REPO_ROOT)
    with pytest.raises(ConfigError, match=f"`{key}`") as info:
        validate_config(cfg)
    assert "allowed" in str(info.value)


def test_warmup_with_the_plateau_schedule_is_rejected():
    cfg = compose(["train.lr_schedule=plateau", "train.lr_warmup_epochs=2"], root=REPO_ROOT)
    with pytest.raises(ConfigError, match="`train.lr_warmup_epochs`.*plateau"):
        validate_config(cfg)


def test_too_many_conv_layers_for_the_image_size_is_rejected():
    cfg = compose(["preprocess.image_size=16", "model.filters=[8,8,8,8]",
                   "model.kernel_sizes=[3,3,3,3]", "features.pca.n_components=4"], root=REPO_ROOT)
    with pytest.raises(ConfigError, match="conv layer"):
        validate_config(cfg)


def test_unknown_override_key_is_a_config_error():
    with pytest.raises(ConfigError, match="could not compose"):
        compose(["train.epochz=3"], root=REPO_ROOT)


def test_missing_params_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="leukemia-cnn params"):
        load_params(tmp_path / "params.yaml")


def test_hog_length_matches_skimage():
    import numpy as np
    from skimage.feature import hog

    vector = hog(np.zeros((100, 100)), orientations=9, pixels_per_cell=(8, 8),
                 cells_per_block=(2, 2))
    assert hog_feature_length(100, 8, 2, 9) == vector.size == 4356


def test_overrides_are_recovered_from_a_composed_config():
    cfg = compose(["train.batch_size=32", "seed=3"], root=REPO_ROOT)
    assert overrides_from_defaults(cfg, REPO_ROOT) == ["seed=3", "train.batch_size=32"]
    assert flatten(cfg)["model.filters"] == [64, 32, 128]


def test_dvc_experiment_workspaces_keep_outputs_but_share_the_store(tmp_path, monkeypatch):
    from leukemia_cnn.config import shared_root
    from leukemia_cnn.tracking.store import tracking_uri

    repo = tmp_path / "repo"
    exp = repo / ".dvc" / "tmp" / "exps" / "tmpabc123"
    (exp / "src").mkdir(parents=True)
    (exp / "dvc.yaml").write_text("stages: {}\n")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    # Stage outputs of a queued experiment stay in its workspace ...
    assert find_repo_root(exp / "src") == exp
    # ... while its MLflow runs go to the repository's store.
    assert shared_root(exp) == repo and shared_root(repo) == repo
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None, exp) == f"sqlite:///{(repo / 'mlflow.db').as_posix()}"


@pytest.mark.parametrize("overrides,key", [
    (["data=kaggle", "data.variant=Both"], "data.variant"),
    (["data=kaggle", "data.skip_unknown_classes=maybe"], "data.skip_unknown_classes"),
    (["data.classes=[Benign,benign,Pre]"], "data.classes"),
    (["data.source=''"], "data.source"),
    (["validation.max_class_share=1.5"], "validation.max_class_share"),
    (["validation.min_class_share=0.6"], "validation.min_class_share/max_class_share"),
    (["validation.max_image_pixels=0"], "validation.max_image_pixels"),
    (["validation.max_total_bytes=-1"], "validation.max_total_bytes"),
])
def test_bad_data_and_validation_values_are_rejected_naming_the_key(overrides, key):
    cfg = compose(overrides, root=REPO_ROOT)
    with pytest.raises(ConfigError, match=f"`{key}`") as info:
        validate_config(cfg)
    assert "allowed" in str(info.value)


def test_kaggle_data_option_composes_and_validates():
    cfg = compose(["data=kaggle"], root=REPO_ROOT)
    validate_config(cfg)
    assert cfg.data.source == "kaggle" and cfg.data.variant == "Original"
    assert list(cfg.data.classes) == ["Benign", "Early", "Pre", "Pro"]
    assert cfg.data.skip_unknown_classes is False


def test_bad_params_file_is_rejected_before_any_stage_work(tmp_path, monkeypatch, capsys):
    """A stage started with a bad params.yaml stops at loading, before touching data."""
    from leukemia_cnn.cli import main

    bad = OmegaConf.to_container(compose(root=REPO_ROOT))
    bad["train"]["batch_size"] = 0
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(bad))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "--no-dvc-add"]) == 1
    assert main(["validate-raw"]) == 1
    assert "`train.batch_size` = 0 is invalid" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]
