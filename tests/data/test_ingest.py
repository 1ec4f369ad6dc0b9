"""`leukemia-cnn data get`: Kaggle zip, unpacked folder, any <Class>/ folder, the Kaggle API;
safe extraction, bounds, write-aside-then-swap, dvc add."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT
from helpers.datasets import (
    CLASSES,
    PER_CLASS,
    add_symlink_entry,
    class_tree,
    earlier_data_output,
    image_bytes,
    kaggle_zip,
    tree_digest,
    write_image,
)
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.config import load_config, write_params
from leukemia_cnn.data.ingest import get as ingest
from leukemia_cnn.data.ingest import kaggle_api, sources
from leukemia_cnn.errors import ConfigError, DataError, LeukemiaCNNError
from leukemia_cnn.fileio import OUTPUT_RECORD
from leukemia_cnn.quality.validate_raw import check_staged


@pytest.fixture(scope="module")
def cfg():
    return load_config(["data=kaggle"], root=REPO_ROOT)


def get(cfg, source: Path, out: Path, **kwargs):
    """`leukemia-cnn data get`'s ingestion, with the raw-data suite as the CLI passes it."""
    kwargs.setdefault("validate", check_staged)
    return ingest.ingest(cfg, source, out, progress=False, **kwargs)


def assert_untouched(out: Path, before: dict[str, str]) -> None:
    """``out`` is as it was, and no half-written tree is left beside it."""
    assert tree_digest(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([OUTPUT_RECORD, out.name])


@pytest.fixture
def previous(tmp_path):
    """An earlier data/raw that a refused or interrupted ingestion must leave alone."""
    raw = class_tree(tmp_path / "data" / "raw", prefix="OLD", seed=7)
    earlier_data_output(raw)  # the only tree it may replace
    return raw, tree_digest(raw)


def test_kaggle_zip_ingests_the_chosen_variant_byte_for_byte(cfg, tmp_path, previous):
    raw, _ = previous
    archive = kaggle_zip(tmp_path / "dl" / "leukemia.zip", extra={
        "__MACOSX/Original/Benign/._WBC-Benign-000.jpg": b"\x00",
        "Original/Benign/Thumbs.db": b"\x00", "README.txt": b"ALL dataset"})
    archive_before = tree_digest(archive)

    result = get(cfg, archive, raw)

    assert result.root == "Original/" and result.ignored == len(CLASSES) * PER_CLASS
    assert result.counts_per_class == dict.fromkeys(CLASSES, PER_CLASS)
    assert sorted(p.name for p in raw.iterdir()) == CLASSES
    with zipfile.ZipFile(archive) as opened:
        for cls in CLASSES:
            names = sorted(p.name for p in (raw / cls).iterdir())
            assert names == [f"WBC-{cls}-{n:03d}.jpg" for n in range(PER_CLASS)]
            for name in names:  # original names, original bytes, the Original variant
                assert (raw / cls / name).read_bytes() == opened.read(f"Original/{cls}/{name}")
    assert {item.path for item in result.skipped} == {"__MACOSX/", "Original/Benign/Thumbs.db",
                                                      "README.txt"}
    assert tree_digest(archive) == archive_before  # the source is never modified
    assert not list(raw.rglob("OLD-*"))  # the previous tree was replaced as a whole


def test_segmented_variant_and_unpacked_folder_give_the_same_tree_as_the_zip(cfg, tmp_path):
    archive = kaggle_zip(tmp_path / "leukemia.zip")
    get(cfg, archive, tmp_path / "from_zip", variant="Segmented")
    unpacked = tmp_path / "unpacked" / "leukemia"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(unpacked)

    get(cfg, unpacked, tmp_path / "from_folder", variant="Segmented")

    assert tree_digest(tmp_path / "from_folder") == tree_digest(tmp_path / "from_zip")
    with zipfile.ZipFile(archive) as opened:
        assert ((tmp_path / "from_zip" / "Pro" / "WBC-Pro-002.jpg").read_bytes()
                == opened.read("Segmented/Pro/WBC-Pro-002.jpg"))


def test_any_class_folder_tree_with_odd_case_nesting_and_extensions(cfg, tmp_path):
    source = tmp_path / "my_images"
    for index, folder in enumerate(["benign", "EARLY", "Pre", "pRo"]):
        for number in range(PER_CLASS):
            write_image(source / folder / f"cell_{number}.JPG", seed=index * 100 + number)
    write_image(source / "EARLY" / "batch2" / "extra.jpeg", seed=999)
    raw = tmp_path / "data" / "raw"

    result = get(cfg, source, raw)

    assert result.root == "" and result.counts_per_class["Early"] == PER_CLASS + 1
    assert (raw / "Benign" / "cell_0.JPG").is_file()  # configured spelling, original file name
    assert (raw / "Early" / "batch2" / "extra.jpeg").is_file()  # sub-folders kept
    assert sorted(p.name for p in raw.iterdir()) == CLASSES


def test_unknown_folders_are_an_error_listing_them_unless_skipped(cfg, tmp_path, previous):
    raw, before = previous
    source = class_tree(tmp_path / "src")
    write_image(source / "Mature" / "a.jpg", seed=500)
    write_image(source / "Mature" / "b.jpg", seed=501)
    write_image(source / "loose.jpg", seed=502)

    with pytest.raises(DataError) as info:
        get(cfg, source, raw)
    assert "Mature/ (2 files)" in str(info.value)
    assert "loose.jpg (outside any class folder)" in str(info.value)
    assert "data.skip_unknown_classes" in str(info.value)
    assert_untouched(raw, before)

    lenient = load_config(["data=kaggle", "data.skip_unknown_classes=true"], root=REPO_ROOT)
    result = get(lenient, source, raw)
    assert {item.path for item in result.skipped} == {"Mature/", "loose.jpg"}
    assert not (raw / "Mature").exists() and not (raw / "loose.jpg").exists()


@pytest.mark.parametrize("entry", ["../evil.jpg", "Original/Benign/../../../evil.jpg",
                                   "/tmp/evil.jpg", "C:/evil.jpg", "..\\..\\evil.jpg"])
def test_zip_entries_that_escape_are_refused_before_anything_is_written(cfg, tmp_path, previous,
                                                                       entry):
    raw, before = previous
    archive = kaggle_zip(tmp_path / "dl" / "bad.zip", extra={entry: image_bytes(1)})

    with pytest.raises(DataError, match="absolute path|climbs out") as info:
        get(cfg, archive, raw)

    assert repr(entry) in str(info.value)
    assert_untouched(raw, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dl"]


def test_zip_with_a_symlink_entry_is_refused(cfg, tmp_path, previous):
    raw, before = previous
    archive = kaggle_zip(tmp_path / "bad.zip")
    add_symlink_entry(archive, "Original/Benign/passwd.jpg", "/etc/passwd")

    with pytest.raises(DataError, match="'Original/Benign/passwd.jpg' is a symbolic link"):
        get(cfg, archive, raw)

    assert_untouched(raw, before)


def test_folder_links_that_leave_the_source_or_point_to_folders_are_refused(cfg, tmp_path,
                                                                            previous):
    raw, before = previous
    outside = write_image(tmp_path / "private" / "secret.jpg", seed=1)
    source = class_tree(tmp_path / "src")
    (source / "Pre" / "secret.jpg").symlink_to(outside)
    with pytest.raises(DataError, match=r"Pre/secret.jpg is a symbolic link to .*outside"):
        get(cfg, source, raw)

    (source / "Pre" / "secret.jpg").unlink()
    (source / "Pro" / "more").symlink_to(tmp_path / "private", target_is_directory=True)
    with pytest.raises(DataError, match="Pro/more is a link to a folder"):
        get(cfg, source, raw)
    assert_untouched(raw, before)

    (source / "Pro" / "more").unlink()  # a file link inside the source is copied as a file
    (source / "Early" / "again.jpg").symlink_to(source / "Early" / "WBC-Early-000.jpg")
    result = get(cfg, source, raw)
    assert not (raw / "Early" / "again.jpg").is_symlink()
    assert any("duplicates" in warning for warning in result.warnings)


@pytest.mark.parametrize("override,match", [
    ("validation.max_total_bytes=20000", "max_total_bytes"),
    ("validation.max_files=10", "max_files = 10"),
    ("validation.max_image_pixels=1000", r"40x40 = 1,600 pixels exceed validation.max_image_pixels"),
])
def test_bounds_refuse_the_source_and_leave_data_raw(tmp_path, previous, override, match):
    raw, before = previous
    bounded = load_config(["data=kaggle", override], root=REPO_ROOT)

    with pytest.raises(DataError, match=match):
        get(bounded, kaggle_zip(tmp_path / "dl" / "leukemia.zip"), raw)

    assert_untouched(raw, before)


def test_lying_archive_sizes_are_caught_while_copying(cfg, tmp_path, previous, monkeypatch):
    raw, before = previous
    archive = kaggle_zip(tmp_path / "dl" / "leukemia.zip")
    real_entries = sources.ZipSource.entries
    monkeypatch.setattr(sources.ZipSource, "entries",  # headers claiming 1 byte per file
                        lambda self: [sources.Entry(e.name, 1) for e in real_entries(self)])
    bounded = load_config(["data=kaggle", "validation.max_total_bytes=20000"], root=REPO_ROOT)

    with pytest.raises(DataError, match="decompresses to more than"):
        get(bounded, archive, raw)

    assert_untouched(raw, before)


def test_a_source_failing_the_raw_checks_is_not_swapped_in(cfg, tmp_path, previous):
    raw, before = previous
    source = class_tree(tmp_path / "src")
    (source / "Early" / "broken.jpg").write_bytes(image_bytes(3)[:200])

    with pytest.raises(DataError) as info:
        get(cfg, source, raw)

    message = str(info.value)
    assert f"raw data in {source} failed" in message
    assert "Early/broken.jpg: not a decodable image" in message
    assert f"{raw} was left unchanged" in message and "--no-validate" in message
    assert "run the stage again" not in message
    assert_untouched(raw, before)

    get(cfg, source, raw, validate=None)
    assert (raw / "Early" / "broken.jpg").is_file()


def test_interrupted_ingestion_leaves_the_previous_tree(cfg, tmp_path, previous, monkeypatch):
    raw, before = previous
    real_copy, calls = ingest._copy_file, []

    def copy_then_interrupt(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_copy(*args)

    monkeypatch.setattr(ingest, "_copy_file", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        get(cfg, kaggle_zip(tmp_path / "dl" / "leukemia.zip"), raw)

    assert_untouched(raw, before)


def test_variant_and_layout_problems_are_explained(cfg, tmp_path):
    only_segmented = kaggle_zip(tmp_path / "seg.zip", variants=("Segmented",))
    with pytest.raises(DataError, match=r"no Original/ folder \(data.variant = Original\).*Segmented/"):
        get(cfg, only_segmented, tmp_path / "out")

    no_variant = load_config(root=REPO_ROOT)  # data=synthetic has no data.variant
    with pytest.raises(ConfigError, match="`data.variant` or --variant"):
        get(no_variant, kaggle_zip(tmp_path / "both.zip"), tmp_path / "out")

    flat = tmp_path / "flat"
    write_image(flat / "a.jpg", seed=1)
    with pytest.raises(DataError, match="no folder named after a class"):
        get(cfg, flat, tmp_path / "out")

    with pytest.raises(DataError, match="not a readable zip archive"):
        (tmp_path / "fake.zip").write_text("<html>login required</html>")
        get(cfg, tmp_path / "fake.zip", tmp_path / "out")

    twice = class_tree(tmp_path / "twice")
    write_image(twice / "benign" / "WBC-Benign-000.jpg", seed=42)
    with pytest.raises(DataError, match="would both become Benign/WBC-Benign-000.jpg"):
        get(cfg, twice, tmp_path / "out")

    with pytest.raises(DataError, match="overlap"):
        get(cfg, twice / "Pre", twice)
    assert not (tmp_path / "out").exists()


def test_kaggle_api_without_package_or_credentials_says_how_to_get_the_zip(cfg, tmp_path,
                                                                          monkeypatch):
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR",
                 "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(kaggle_api.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(LeukemiaCNNError, match="`kaggle` package") as info:
        ingest.run(cfg, tmp_path, source="kaggle", dvc_add=False)
    assert "https://www.kaggle.com/datasets/mehradaria/leukemia" in str(info.value)
    assert "--source" in str(info.value)

    monkeypatch.setattr(kaggle_api.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(LeukemiaCNNError, match="no Kaggle API credentials") as info:
        ingest.run(cfg, tmp_path, source="kaggle", dvc_add=False)
    assert "--source" in str(info.value)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_kaggle_api_download_is_ingested(cfg, tmp_path, monkeypatch):
    """The official client's calls, with a stand-in package (tests never use the network)."""
    downloads = []

    class FakeKaggleApi:
        def authenticate(self):
            pass

        def dataset_download_files(self, dataset, path, quiet, unzip):
            downloads.append((dataset, unzip))
            kaggle_zip(Path(path) / "leukemia.zip")

    package = types.ModuleType("kaggle")
    package.__spec__ = importlib.machinery.ModuleSpec("kaggle", None)
    extended = types.ModuleType("kaggle.api.kaggle_api_extended")
    extended.KaggleApi = FakeKaggleApi
    monkeypatch.setitem(sys.modules, "kaggle", package)
    monkeypatch.setitem(sys.modules, "kaggle.api", types.ModuleType("kaggle.api"))
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", extended)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")

    result = ingest.run(cfg, tmp_path, source="kaggle", dvc_add=False, progress=False)

    assert downloads == [("mehradaria/leukemia", False)]
    assert result.source == "Kaggle mehradaria/leukemia" and result.root == "Original/"
    assert result.counts_per_class == dict.fromkeys(CLASSES, PER_CLASS)
    # the download is removed; the record says data/raw is `data get`'s own
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [OUTPUT_RECORD, "raw"]


def run_dvc(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True,
                   capture_output=True, env={"DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin",
                                             "HOME": str(cwd)})


def test_cli_data_get_writes_data_raw_and_data_dvc(cfg, tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    run_dvc("init", "--no-scm", cwd=project)
    write_params(cfg, project / "params.yaml")
    first = kaggle_zip(tmp_path / "leukemia.zip")
    monkeypatch.chdir(project)

    assert cli_main(["data", "get", "--source", str(first)]) == 0

    out = capsys.readouterr().out
    assert "ingested 24 images from leukemia.zip (Original/)" in out
    assert "data.dvc versions data/raw" in out
    tracked = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]
    assert tracked["path"] == "data/raw" and tracked["nfiles"] == len(CLASSES) * PER_CLASS
    assert not (project / "data" / "raw.dvc").exists()

    second = class_tree(tmp_path / "mine", per_class=5, seed=3)
    assert cli_main(["data", "get", "--source", str(second)]) == 0
    retracked = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]
    assert retracked["nfiles"] == len(CLASSES) * 5 and retracked["md5"] != tracked["md5"]

    before = tree_digest(project / "data")
    assert cli_main(["data", "get", "--source", str(tmp_path / "missing.zip")]) == 1
    assert "source" in capsys.readouterr().err and tree_digest(project / "data") == before


def test_synthetic_source_is_the_default_and_delegates_to_the_generator(tmp_path, capsys):
    synthetic = load_config(["data.synth.scale=0.01"], root=REPO_ROOT)
    assert synthetic.data.source == "synthetic"

    assert ingest.run(synthetic, tmp_path, dvc_add=False) is None

    counts = {cls: len(list((tmp_path / "data" / "raw" / cls).glob("*.jpg"))) for cls in CLASSES}
    assert counts == {"Benign": 5, "Early": 10, "Pre": 10, "Pro": 8}
    assert "synthetic images" in capsys.readouterr().out
