"""The config schema (src/leukemia_cnn/config.py): conf/ and the schema agree, unknown keys
are refused with the nearest valid key, every range is checked, old params files still load,
and under DVC a refused knob stops the pipeline before any output is removed."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from helpers import REPO_ROOT, ran_pipeline, sh
from leukemia_cnn import config
from leukemia_cnn.config import (
    LATE_KNOBS,
    PAPER_KNOBS,
    compose,
    default_of,
    find_repo_root,
    flatten,
    hog_feature_length,
    load_params,
    overrides_from_defaults,
    paper_faithful,
    validate_config,
)
from leukemia_cnn.config_schema import TrainConfig
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.tracking.store import config_id

DEFAULTS = OmegaConf.to_container(compose(root=REPO_ROOT))


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


# --------------------------------------------------------------------------------------------
# conf/ and the schema say the same thing
# --------------------------------------------------------------------------------------------

def _group_files():
    for path in sorted((REPO_ROOT / "conf").glob("*/*.yaml")):
        if path.parent.name not in ("experiment", "hydra"):
            yield path.parent.name, path


@pytest.mark.parametrize("group,path", list(_group_files()), ids=lambda v: str(v)[-30:])
def test_each_conf_file_and_the_schema_have_the_same_keys_and_defaults(group, path):
    """A user reads the defaults in conf/; a params file without a knob gets the schema's:
    both must be the same values, and neither may have a key the other lacks."""
    schema = config.Config.model_fields[group].annotation
    if group == "data":
        schema = {"synthetic": config.SyntheticData, "kaggle": config.KaggleData}[path.stem]
    expected = schema().model_dump()
    written = yaml.safe_load(path.read_text())

    def compare(conf, schema_values, prefix):
        assert list(conf) == list(schema_values), f"{prefix}: keys differ from the schema"
        for key, value in conf.items():
            name = f"{prefix}{key}"
            if isinstance(value, str) and value.startswith("${"):
                # conf/ points a knob at another (split.near_duplicate_max_distance follows the
                # suite's threshold); the schema's default is what a file without it did.
                assert value[2:-1] in config.all_keys(), name
                assert config.is_late(name), name
            elif isinstance(value, dict) and isinstance(schema_values[key], dict) and key != "class_counts":
                compare(value, schema_values[key], f"{name}.")
            else:
                assert value == schema_values[key], name
                assert type(value) is type(schema_values[key]), name

    compare(written, expected, f"{group}.")


def test_the_top_level_and_the_groups_are_the_schemas():
    composed = DEFAULTS
    assert list(composed) == list(config.Config.model_fields)
    assert composed["seed"] == default_of("seed")
    assert validate_config(compose(root=REPO_ROOT)).model_dump() == composed


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO_ROOT / "conf" / "experiment")
                                              .glob("*.yaml")))
def test_every_experiment_file_passes_the_schema(experiment):
    cfg = validate_config(compose([f"experiment={experiment}"], root=REPO_ROOT))
    assert cfg.sweep.experiment == experiment


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_the_paper_knobs_are_the_defaults_of_conf():
    assert {key: DEFAULTS[key.split(".")[0]][key.split(".")[1]] for key in PAPER_KNOBS} == PAPER_KNOBS


def test_stages_get_the_typed_config():
    """What every stage reads is the schema's model: its values have the schema's types."""
    cfg = load_params(REPO_ROOT / "params.yaml")
    assert isinstance(cfg, config.Config) and isinstance(cfg.train, TrainConfig)
    assert type(cfg.train.epochs) is int and type(cfg.train.learning_rate) is float
    assert type(cfg.split.train) is float and cfg.model.filters == [64, 32, 128]


def test_the_hash_distance_has_one_range_for_the_split_and_the_suite():
    split = config.bounds("split.near_duplicate_max_distance")
    suite = config.bounds("validation.near_duplicate_max_distance")
    bounds = ("ge", "gt", "le", "lt")
    assert [split[b] for b in bounds] == [suite[b] for b in bounds] == [0, None, 63, None]
    for key in ("split.near_duplicate_max_distance", "validation.near_duplicate_max_distance"):
        validate_config(compose([f"{key}=63"], root=REPO_ROOT))
        with pytest.raises(ConfigError, match=f"`{key}` = 64 is invalid; allowed: .*63"):
            validate_config(compose([f"{key}=64"], root=REPO_ROOT))


# --------------------------------------------------------------------------------------------
# Params files written before a knob existed
# --------------------------------------------------------------------------------------------

def test_params_file_older_than_the_late_knobs_loads_with_the_schema_defaults(tmp_path):
    """A params file without the late knobs (e.g. an old DVC experiment) loads, reads as the
    paper's configuration, trains as it did and keeps its configuration id."""
    old = json.loads(json.dumps(DEFAULTS))
    for key in LATE_KNOBS:
        section, *rest = key.split(".")
        node = old[section]
        for part in rest[:-1]:
            node = node[part]
        node.pop(rest[-1], None)
    del old["sweep"], old["report"]  # whole groups that came later
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(old))

    cfg = load_params(tmp_path / "params.yaml")
    assert cfg.train.lr_schedule == "constant" and cfg.report.name == "table1"
    assert cfg.split.near_duplicate_max_distance is None  # what the split did before the knob
    assert paper_faithful(cfg)
    defaults = flatten(compose(root=REPO_ROOT))
    assert config_id(flatten(old)) == config_id(flatten(cfg))
    assert config_id(flatten(cfg)) == config_id({**defaults,
                                                 "split.near_duplicate_max_distance": None})
    synthetic = {key: value for key, value in LATE_KNOBS.items()
                 if key.rsplit(".", 1)[0] != "data" or hasattr(cfg.data, key.split(".")[1])}
    assert {key: _value(cfg, key) for key in synthetic} == synthetic


def test_a_required_key_missing_from_a_params_file_is_named(tmp_path):
    old = json.loads(json.dumps(DEFAULTS))
    del old["train"]["batch_size"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="`train.batch_size` is missing; add it to conf/"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("group", ["train", "data", "model"])
def test_a_group_given_a_number_is_one_line_naming_the_group(tmp_path, group):
    # this used to recurse until RecursionError (an "internal error"), or say "allowed: None"
    broken = json.loads(json.dumps(DEFAULTS))
    broken[group] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match=rf"`{group}` = 5 is invalid; allowed: a mapping of "
                                          rf"the keys of `{group}`"):
        load_params(tmp_path / "params.yaml")


def test_paper_faithful_reads_logged_params():
    improved = compose(["experiment=improved"], root=REPO_ROOT)
    assert not paper_faithful(improved)
    # Logged params are strings: "0" is the paper's 0.0 (no weight averaging), "0.9" is not.
    assert paper_faithful(compose(["train.ema_momentum=0"], root=REPO_ROOT))
    assert not paper_faithful(compose(["train.ema_momentum=0.9"], root=REPO_ROOT))


# --------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,key,nearest", [
    ("+train.epochz=2", "train.epochz", "train.epochs"),
    ("train.epochz=2", "train.epochz", "train.epochs"),
    ("+trian.epochs=2", "trian", "train"),
    ("+model.filter=[8]", "model.filter", "model.filters"),
    ("+features.pca.n_component=5", "features.pca.n_component", "features.pca.n_components"),
    ("+data.synth.scael=0.1", "data.synth.scael", "data.synth.scale"),
    ("+seeds=3", "seeds", "seed"),
])
def test_unknown_keys_are_refused_with_the_nearest_valid_key(override, key, nearest):
    with pytest.raises(ConfigError) as info:
        validate_config(compose([override], root=REPO_ROOT))
    message = str(info.value)
    assert f"`{key}` is unknown" in message and f"did you mean `{nearest}`?" in message
    assert "\n" not in message


def test_an_unknown_key_with_nothing_near_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"`train.zzzzzzzz` is unknown .*valid keys here: "
                                          r"train.epochs, train.batch_size"):
        validate_config(compose(["+train.zzzzzzzz=1"], root=REPO_ROOT))


def test_a_key_of_the_other_data_option_says_which_option_has_it():
    with pytest.raises(ConfigError, match=r"`data.variant` belongs to data=kaggle, not to "
                                          r"data=synthetic.*select data=kaggle"):
        validate_config(compose(["+data.variant=Original"], root=REPO_ROOT))


def test_params_command_refuses_a_plus_key_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from leukemia_cnn.cli.main import main

    monkeypatch.chdir(REPO_ROOT)
    target = tmp_path / "params.yaml"
    assert main(["params", "+train.epochz=2", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert "`train.epochz` is unknown" in err and "`train.epochs`" in err
    assert len(err.strip().splitlines()) == 1 and not target.exists()
    assert main(["params", "split.seed=-5", "--output", str(target)]) == 1
    assert "`split.seed` = -5 is invalid; allowed: an integer >= 0" in capsys.readouterr().err
    assert not target.exists()


def test_a_group_option_that_does_not_exist_is_one_line():
    with pytest.raises(ConfigError, match=r"Could not find 'data/kagle'.*kaggle.*synthetic") as info:
        compose(["data=kagle"], root=REPO_ROOT)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# Values and ranges
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,key", [
    ("train.loss=hinge", "train.loss"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=-1", "train.epochs"),
    ("train.epochs='15'", "train.epochs"),
    ("features.pca.n_components=5000", "features.pca.n_components"),
    ("split.train=0.8", "split.train/val/test"),
    ("split.seed=-5", "split.seed"),
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
    ("train.verbose=3", "train.verbose"),
    ("train.distribute=horovod", "train.distribute"),
    ("features.hog.block_norm=L3", "features.hog.block_norm"),
    ("features.hog.pixels_per_cell=[8,4]", "features.hog.pixels_per_cell"),
    ("features.n_jobs=0", "features.n_jobs"),
    ("data.synth.jpeg_quality=96", "data.synth.jpeg_quality"),
    ("data.synth.scale=0", "data.synth.scale"),
    ("data.synth.class_counts.Pro=0", "data.synth.class_counts"),
    ("sweep.tf_threads=0", "sweep.tf_threads"),
    ("report.name=../keep", "report.name"),
    ("report.confidence=1", "report.confidence"),
    ("mlflow.experiment_name=''", "mlflow.experiment_name"),
    ("seed=-1", "seed"),
])
def test_bad_values_are_rejected_naming_the_key(override, key):
    cfg = compose([override], root=REPO_ROOT)
    with pytest.raises(ConfigError, match=f"`{key}`") as info:
        validate_config(cfg)
    assert "allowed" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("overrides,key", [
    (["data=kaggle", "data.variant=Both"], "data.variant"),
    (["data=kaggle", "data.skip_unknown_classes=maybe"], "data.skip_unknown_classes"),
    (["data.classes=[Benign,benign,Pre]"], "data.classes"),
    (["data.source=''"], "data.source"),
    (["data.classes=[Benign,Early,Pre,Pro,Monocyte]"], "data.synth.class_counts"),
    (["validation.max_class_share=1.5"], "validation.max_class_share"),
    (["validation.min_class_share=0.6"], "validation.min_class_share/max_class_share"),
    (["validation.min_width=5000"], "validation.min_width/max_width"),
    (["validation.max_image_pixels=0"], "validation.max_image_pixels"),
    (["validation.max_total_bytes=-1"], "validation.max_total_bytes"),
    (["validation.allowed_modes=[]"], "validation.allowed_modes"),
])
def test_bad_data_and_validation_values_are_rejected_naming_the_key(overrides, key):
    cfg = compose(overrides, root=REPO_ROOT)
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


def test_kaggle_data_option_composes_and_validates():
    cfg = validate_config(compose(["data=kaggle"], root=REPO_ROOT))
    assert cfg.data.source == "kaggle" and cfg.data.variant == "Original"
    assert list(cfg.data.classes) == ["Benign", "Early", "Pre", "Pro"]
    assert cfg.data.skip_unknown_classes is False and not hasattr(cfg.data, "synth")


def _ranged_numeric_keys():
    """Every number knob with a range (not lists or mappings of numbers), with its type."""
    keys = []
    for key in config.all_keys():
        node = config.node_of(key)
        kinds = {member.get("type") for member in node.get("anyOf", [node])} - {"null"}
        meta = config.bounds(key)
        if kinds in ({"integer"}, {"number"}) and any(v is not None for v in meta.values()):
            keys.append((key, int if kinds == {"integer"} else float, meta))
    return keys


RANGED = _ranged_numeric_keys()


def _out_of_range(kind, meta):
    """Values just outside and far outside each bound, plus NaN and infinities for floats."""
    options = []
    integers = kind is int
    for bound, below in (("ge", True), ("gt", True), ("le", False), ("lt", False)):
        value = meta.get(bound)
        if value is None:
            continue
        if integers:
            limit = value - 1 if bound == "ge" else value if bound == "gt" else (
                value + 1 if bound == "le" else value)
            options.append(st.integers(max_value=limit) if below else st.integers(min_value=limit))
        else:
            options.append(st.floats(max_value=value, exclude_max=bound == "ge",
                                     allow_nan=False) if below else
                           st.floats(min_value=value, exclude_min=bound == "le", allow_nan=False))
    if not integers:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(options)


def _with_in(data, key, value):
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return data


def _with(key, value):
    """The composed defaults with ``key`` set to ``value`` (a plain dict)."""
    return _with_in(json.loads(json.dumps(DEFAULTS)), key, value)


@pytest.mark.parametrize("key,kind,meta", RANGED, ids=[k for k, _, _ in RANGED])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_out_of_range_number_is_refused_naming_the_key(key, kind, meta, data):
    """Every numeric knob with a range, at generated values outside it."""
    value = data.draw(_out_of_range(kind, meta))
    with pytest.raises(ConfigError, match=f"`{key}` = .* is invalid; allowed: "):
        validate_config(_with(key, value))


# Knobs whose in-range values may still break a rule over several keys (ratios summing to 1,
# min <= max, HOG cells and conv layers that fit the image, warm-up shorter than training).
CROSS_RULES = {"split.train", "split.val", "split.test", "validation.min_width",
               "validation.max_width", "validation.min_height", "validation.max_height",
               "validation.min_class_share", "validation.max_class_share",
               "preprocess.image_size", "features.hog.orientations",
               "features.hog.pixels_per_cell", "features.hog.cells_per_block",
               "features.pca.n_components", "model.filters", "model.kernel_sizes",
               "model.pool_size", "train.epochs", "data.synth.class_counts", "augment.stain"}


def _in_range(kind, meta):
    ge, gt, le, lt = (meta[b] for b in ("ge", "gt", "le", "lt"))
    if kind is int:
        low = ge if ge is not None else (gt + 1 if gt is not None else None)
        high = le if le is not None else (lt - 1 if lt is not None else 10**9)
        return st.integers(min_value=low, max_value=high)
    return st.floats(min_value=ge if ge is not None else gt, exclude_min=gt is not None,
                     max_value=le if le is not None else (lt if lt is not None else 1e9),
                     exclude_max=lt is not None, allow_nan=False, allow_infinity=False)


SINGLE = [(k, t, m) for k, t, m in RANGED if k not in CROSS_RULES]


@pytest.mark.parametrize("key,kind,meta", SINGLE, ids=[k for k, _, _ in SINGLE])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_in_range_number_is_accepted(key, kind, meta, data):
    value = data.draw(_in_range(kind, meta))
    if key in ("train.lr_warmup_epochs",):
        value = min(value, DEFAULTS["train"]["epochs"] - 1)
    cfg = validate_config(_with(key, value))
    assert _value(cfg, key) == value


# --------------------------------------------------------------------------------------------
# Loading, composing, helpers
# --------------------------------------------------------------------------------------------

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


def test_bad_params_file_is_rejected_before_any_stage_work(tmp_path, monkeypatch, capsys):
    """A stage started with a bad params.yaml stops at loading, before touching data."""
    from leukemia_cnn.cli.main import main

    bad = OmegaConf.to_container(compose(root=REPO_ROOT))
    bad["train"]["batch_size"] = 0
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(bad))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "--no-dvc-add"]) == 1
    assert main(["validate-raw"]) == 1
    assert main(["check-config"]) == 1
    assert "`train.batch_size` = 0 is invalid" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


def test_check_config_writes_a_marker_that_does_not_depend_on_the_knobs(tmp_path, monkeypatch):
    from leukemia_cnn.cli.main import main

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "reports" / config.CONFIG_CHECK_FILE
    contents = []
    for overrides in ([], ["train.epochs=3"]):
        (tmp_path / "params.yaml").write_text(
            yaml.safe_dump(OmegaConf.to_container(compose(overrides, root=REPO_ROOT))))
        assert main(["check-config"]) == 0
        contents.append(marker.read_bytes())
    # Same bytes: DVC re-runs a stage after check_config only for the stage's own params.
    assert contents[0] == contents[1]


# --------------------------------------------------------------------------------------------
# Under DVC: a refused knob stops the pipeline before any output is removed
# --------------------------------------------------------------------------------------------

def _snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file of the project outside .git/.dvc (outputs, params, data, lock)."""
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(repo.rglob("*"))
            if p.is_file() and p.relative_to(repo).parts[0] not in (".git", ".dvc")}


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory):
    """A project whose pipeline has run: every stage output exists and dvc.lock records it
    (`dvc commit` of stand-in outputs: the stages themselves are not what is tested here)."""
    repo = ran_pipeline(tmp_path_factory.mktemp("cfgdvc") / "repo")
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    return repo


def _refused_under_dvc(repo: Path, command: list[str], key: str) -> None:
    before = _snapshot(repo)
    result = sh(*command, cwd=repo, check=False)
    try:
        assert result.returncode != 0, result.stdout
        lines = [line for line in result.stderr.splitlines() if key in line]
        assert lines, result.stderr
        # The stage's error is one line naming the key and what is allowed (or the nearest key).
        assert any(line.startswith("leukemia-cnn check-config: error: config key") for line in lines)
        after = _snapshot(repo)
        changed = {name for name in before.keys() | after.keys()
                   if before.get(name) != after.get(name)}
        assert changed <= {"params.yaml"}, changed  # DVC wrote the -S value; nothing else moved
        assert "Running stage 'check_config'" in result.stdout
        assert "Running stage" not in result.stdout.replace("Running stage 'check_config'", "")
    finally:
        sh("git", "checkout", "-q", "params.yaml", cwd=repo)


def test_dvc_exp_run_with_a_refused_knob_removes_no_output(ran_project):
    """The issue's case: `dvc exp run -S train.batch_size=0` used to delete the train stage's
    outputs (cache: false: unrecoverable) before the stage refused the value."""
    _refused_under_dvc(ran_project, ["dvc", "exp", "run", "-S", "train.batch_size=0"],
                       "`train.batch_size` = 0")
    _refused_under_dvc(ran_project, ["dvc", "exp", "run", "-S", "+train.epochz=2"],
                       "did you mean `train.epochs`")


def test_dvc_exp_run_with_a_key_not_in_conf_fails_in_composition(ran_project):
    """Without `+`, DVC's own Hydra composition refuses the key before any stage starts."""
    before = _snapshot(ran_project)
    result = sh("dvc", "exp", "run", "-S", "train.epochz=2", cwd=ran_project, check=False)
    assert result.returncode != 0
    assert "Could not override 'train.epochz'" in result.stderr
    assert _snapshot(ran_project) == before


# One refused value per stage's knobs (the stage that would have refused it before).
STAGE_KNOBS = [
    ("validate_raw", "validation.min_images_per_class", -1),
    ("validate_raw", "data.classes", ["Benign"]),
    ("split", "split.seed", -5),
    ("validate_splits", "validation.split_size_tolerance", 1.5),
    ("preprocess", "preprocess.image_size", 8),
    ("features", "features.pca.n_components", 0),
    ("validate_features", "validation.min_explained_variance", 2.0),
    ("train", "model.dropout", 1.0),
    ("train", "train.learning_rate", 0),
    ("evaluate", "data.classes", ["Benign", "Benign"]),
    ("register", "mlflow.registered_model_name", ""),
]


@pytest.mark.slow
@pytest.mark.parametrize("stage,key,value", STAGE_KNOBS, ids=[f"{s}-{k}" for s, k, _ in STAGE_KNOBS])
def test_dvc_repro_with_a_refused_knob_of_each_stage_removes_no_output(ran_project, stage, key,
                                                                       value):
    params = yaml.safe_load((ran_project / "params.yaml").read_text())
    (ran_project / "params.yaml").write_text(yaml.safe_dump(_with_in(params, key, value),
                                                            sort_keys=False))
    _refused_under_dvc(ran_project, ["dvc", "repro"], f"`{key}`")


@pytest.mark.slow
def test_refused_knob_after_a_real_pipeline_run_keeps_every_output(pipeline):
    """After a real `dvc repro` through training: a refused -S value changes nothing."""
    _refused_under_dvc(pipeline["repo"], ["dvc", "exp", "run", "-S", "train.batch_size=0"],
                       "`train.batch_size` = 0")
