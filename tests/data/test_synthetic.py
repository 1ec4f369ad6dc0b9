"""The built-in synthetic dataset: layout, names, counts, determinism, safe replacement of
data/raw, DVC versioning through data.dvc, and class differences that are morphological."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from leukemia_cnn.data import synthetic as synth
from leukemia_cnn.data.imaging import load_model_input
from leukemia_cnn.errors import ConfigError, LeukemiaCNNError, OutputError
from leukemia_cnn.fileio import OUTPUT_RECORD

CLASSES = ["Benign", "Early", "Pre", "Pro"]
TINY_SCALE = 0.004  # 504/985/963/804 -> 2/4/4/3 images


def tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_main(cfg, root, **kwargs):
    options = {"scale": TINY_SCALE, "seed": None, "output": None, "if_empty": False,
               "dvc_add": False}
    synth.run(cfg, root, **{**options, **kwargs})


def test_writes_kaggle_layout_names_and_scaled_counts(make_cfg, tmp_path, capsys):
    cfg = make_cfg()
    run_main(cfg, tmp_path)

    raw = tmp_path / cfg.paths.raw_dir
    assert sorted(p.name for p in raw.iterdir()) == sorted(CLASSES)
    prefixes = {"Benign": "WBC-Benign", "Early": "WBC-Malignant-Early",
                "Pre": "WBC-Malignant-Pre", "Pro": "WBC-Malignant-Pro"}
    for name in CLASSES:
        expected = max(1, round(cfg.data.synth.class_counts[name] * TINY_SCALE))
        names = sorted(p.name for p in (raw / name).iterdir())
        assert names == [f"{prefixes[name]}-{i:03d}.jpg" for i in range(1, expected + 1)]
    # no staging or backup folders are left next to data/raw
    # beside it only the record that data/raw is `data synth`'s own (no staging folder)
    assert sorted(p.name for p in raw.parent.iterdir()) == [OUTPUT_RECORD, "raw"]
    summary = capsys.readouterr().out
    assert "Benign 2, Early 4, Pre 4, Pro 3" in summary and "data/raw" in summary


def test_images_are_224_rgb_jpegs_the_pipeline_can_read(tmp_path):
    paths = synth.generate(tmp_path, CLASSES, dict.fromkeys(CLASSES, 1), seed=0, progress=False)
    assert len(paths) == 4
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (224, 224))
        array = load_model_input(path)
        assert array.shape == (100, 100, 1) and 0.0 <= array.min() < array.max() <= 1.0


def test_file_names_grow_a_digit_past_999():
    assert synth.file_name("Pre", 7, 963) == "WBC-Malignant-Pre-007.jpg"
    assert synth.file_name("Benign", 12, 1500) == "WBC-Benign-0012.jpg"


def test_class_sizes_follow_proportions_times_scale():
    counts = {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}
    assert synth.class_sizes(counts, CLASSES, 1.0) == counts
    assert synth.class_sizes(counts, CLASSES, 0.5) == {"Benign": 252, "Early": 492,
                                                       "Pre": 482, "Pro": 402}
    assert synth.class_sizes(counts, CLASSES, 1e-6) == dict.fromkeys(CLASSES, 1)


@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), "big"])
def test_bad_scale_is_a_config_error_naming_the_key(make_cfg, tmp_path, scale):
    with pytest.raises(ConfigError, match=r"data\.synth\.scale"):
        run_main(make_cfg(), tmp_path, scale=scale)
    assert not (tmp_path / "data").exists()


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    counts = {"Benign": 2, "Pro": 2}
    first = synth.generate(tmp_path / "a", ["Benign", "Pro"], counts, seed=7, progress=False)
    synth.generate(tmp_path / "b", ["Benign", "Pro"], counts, seed=7, progress=False)
    synth.generate(tmp_path / "c", ["Benign", "Pro"], counts, seed=8, progress=False)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    other = tree(tmp_path / "c")
    assert other.keys() == tree(tmp_path / "a").keys()
    assert all(other[name] != data for name, data in tree(tmp_path / "a").items())
    assert len({p.read_bytes() for p in first}) == len(first)  # no two images alike


def test_output_does_not_depend_on_the_number_of_workers(tmp_path):
    counts = dict.fromkeys(CLASSES, 17)  # three batches of 32: runs in parallel
    synth.generate(tmp_path / "one", CLASSES, counts, seed=3, progress=False, n_jobs=1)
    synth.generate(tmp_path / "two", CLASSES, counts, seed=3, progress=False, n_jobs=2)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_if_empty_leaves_a_folder_with_images_untouched(make_cfg, tmp_path, capsys):
    cfg = make_cfg()
    raw = tmp_path / cfg.paths.raw_dir
    (raw / "Benign").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(raw / "Benign" / "mine.png")
    before = tree(raw)

    run_main(cfg, tmp_path, if_empty=True, dvc_add=True)  # returns before any DVC work

    assert tree(raw) == before
    assert "already holds images" in capsys.readouterr().out


def test_if_empty_fills_a_folder_without_images(make_cfg, tmp_path):
    cfg = make_cfg()
    raw = tmp_path / cfg.paths.raw_dir
    raw.mkdir(parents=True)
    run_main(cfg, tmp_path, if_empty=True)  # an empty folder: nothing to lose
    assert len(list(raw.rglob("*.jpg"))) == 13
    # a folder of the user's own files is never replaced, even without images
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.txt").write_text("not an image")
    with pytest.raises(OutputError, match="did not write"):
        run_main(cfg, tmp_path, if_empty=True, output=str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "README.txt").read_text() == "not an image"


def test_a_failure_mid_generation_leaves_the_previous_data_intact(make_cfg, tmp_path,
                                                                  monkeypatch):
    cfg = make_cfg()
    run_main(cfg, tmp_path, seed=1)
    raw = tmp_path / cfg.paths.raw_dir
    before = tree(raw)

    real = synth.generate_image
    calls = []

    def failing(rng, class_name, image_size=224):
        calls.append(class_name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(rng, class_name, image_size)

    monkeypatch.setattr(synth, "generate_image", failing)
    with pytest.raises(KeyboardInterrupt):
        run_main(cfg, tmp_path, seed=2)

    assert tree(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir()) == [OUTPUT_RECORD, "raw"]  # no staging


def test_class_differences_are_morphological_not_brightness(tmp_path):
    """Pro fields hold more dark nuclear area than Benign ones, but the slide background is
    drawn independently of the class: its brightness does not tell the classes apart."""
    counts = {"Benign": 20, "Pro": 20}
    synth.generate(tmp_path, ["Benign", "Pro"], counts, seed=11, progress=False, n_jobs=1)
    nuclear, background = {}, {}
    for name in counts:
        gray = np.stack([load_model_input(p)[..., 0] for p in sorted((tmp_path / name).iterdir())])
        bright = np.percentile(gray.reshape(len(gray), -1), 95, axis=1)
        background[name] = bright
        # nuclei are far darker than erythrocytes relative to each field's own background
        nuclear[name] = (gray < 0.6 * bright[:, None, None]).mean(axis=(1, 2))

    assert nuclear["Pro"].mean() > 2 * nuclear["Benign"].mean()
    low, high = background["Benign"], background["Pro"]
    assert max(low.min(), high.min()) < min(low.max(), high.max())  # ranges overlap
    pooled = np.sqrt((low.var() + high.var()) / 2)
    assert abs(low.mean() - high.mean()) < pooled


def test_unknown_class_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.classes"):
        synth.generate(tmp_path, ["Benign", "Monocyte"], {"Benign": 1, "Monocyte": 1}, seed=0,
                       progress=False)


def _dvc(root, *args):
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True,
                          capture_output=True, text=True)


@pytest.fixture
def dvc_repo(tmp_path):
    """A fresh git + DVC repository with auto-staging on, as in this project."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _dvc(tmp_path, "init", "-q")
    _dvc(tmp_path, "config", "core.autostage", "true")
    return tmp_path


def test_dvc_add_versions_data_raw_in_top_level_data_dvc(make_cfg, dvc_repo):
    cfg = make_cfg()
    run_main(cfg, dvc_repo, seed=1, dvc_add=True)

    stage = yaml.safe_load((dvc_repo / "data.dvc").read_text())
    assert stage["outs"][0]["path"] == "data/raw"
    first_md5 = stage["outs"][0]["md5"]
    assert not (dvc_repo / "data" / "raw.dvc").exists()
    assert "/raw" in (dvc_repo / "data" / ".gitignore").read_text().splitlines()

    run_main(cfg, dvc_repo, seed=2, dvc_add=True)

    stage = yaml.safe_load((dvc_repo / "data.dvc").read_text())
    assert stage["outs"][0]["path"] == "data/raw"
    assert stage["outs"][0]["md5"] != first_md5
    assert not (dvc_repo / "data" / "raw.dvc").exists()
    assert "up to date" in _dvc(dvc_repo, "status", "data.dvc").stdout
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=dvc_repo,
                            capture_output=True, text=True, check=True).stdout.split()
    assert "data.dvc" in staged and "data/raw.dvc" not in staged


def test_dvc_add_outside_a_dvc_repo_says_to_pass_no_dvc_add(make_cfg, tmp_path):
    with pytest.raises(LeukemiaCNNError, match="--no-dvc-add"):
        run_main(make_cfg(), tmp_path, dvc_add=True)
