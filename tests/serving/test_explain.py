import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.config_schema import ModelConfig
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.modeling.gradcam import explain_images, gradcam, upsample
from leukemia_cnn.registry import register
from leukemia_cnn.serving.explain import output_paths

SIZE = 48
QUARTER = SIZE // 4


def planted_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gray noise; class 0 has a bright disc near the centre of the top-left quadrant, class 1
    near that of the bottom-right one: the class is the blob's place and nothing else."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    x = rng.normal(0.3, 0.05, (n, SIZE, SIZE)).astype(np.float32)
    for image, label in zip(x, labels, strict=True):
        cy, cx = (QUARTER, QUARTER) if label == 0 else (3 * QUARTER, 3 * QUARTER)
        cy, cx = np.array([cy, cx]) + rng.integers(-2, 3, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = 1.0
    return np.clip(x, 0, 1)[..., np.newaxis], labels


@pytest.fixture(scope="module")
def planted_model():
    """The paper's CNN (3 valid conv blocks, flatten head), small, trained for 3 epochs; its
    last block's pooled map is 4x4."""
    import keras

    from leukemia_cnn.modeling.model import build_model, set_seeds

    set_seeds(0)
    x, y = planted_images(256)
    model = build_model((SIZE, SIZE, 1), 2, ModelConfig(filters=[8, 8, 8], kernel_sizes=[3, 3, 3],
                                                        dense_units=16, dropout=0.0))
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    model.fit(x, np.eye(2)[y], epochs=3, batch_size=32, verbose=0)
    return model


def blob_share(maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: the share of the upsampled map's mass in the quadrant of its blob."""
    shares = []
    for cam, label in zip(maps, labels, strict=True):
        heat = upsample(cam, (SIZE, SIZE))
        half = SIZE // 2
        quadrant = heat[:half, :half] if label == 0 else heat[half:, half:]
        shares.append(quadrant.sum() / heat.sum() if heat.sum() > 0 else 0.0)
    return np.array(shares)


def test_heatmap_concentrates_on_the_planted_feature(planted_model):
    x, y = planted_images(40, seed=1)
    maps, probabilities = gradcam(planted_model, x)
    assert (probabilities.argmax(axis=1) == y).mean() == 1.0
    assert maps.min() >= 0 and np.allclose(maps.reshape(len(maps), -1).max(axis=1), 1.0)
    shares = blob_share(maps, y)
    # The blob's quadrant is a quarter of the image; measured 0.78-0.89 per image, mean 0.85.
    assert shares.min() > 0.6 and shares.mean() > 0.75
    # Classic Grad-CAM averages the gradient over the map; with the flatten head it loses
    # the place (measured mean 0.17: 0.00 / 0.34 per class), hence HiResCAM by default.
    classic = blob_share(gradcam(planted_model, x, method="gradcam")[0], y)
    assert classic.mean() < shares.mean() - 0.2


def test_overlay_is_at_the_original_resolution_in_colour(planted_model):
    gray = (planted_images(2, seed=2)[0][..., 0] * 255).astype(np.uint8)
    originals = [Image.fromarray(np.stack([g, g // 2, g], axis=-1)).resize((64, 48))
                 for g in gray]
    results = explain_images(planted_model, originals, SIZE, "grayscale")
    for result in results:
        assert result["overlay"].size == (64, 48) and result["overlay"].mode == "RGB"
        assert result["heatmap"].shape == (48, 64)
        assert result["probabilities"].sum() == pytest.approx(1.0)
    with pytest.raises(LeukemiaCNNError, match="allowed: hirescam, gradcam"):
        gradcam(planted_model, planted_images(1)[0], method="saliency")


def test_output_names_never_replace_an_input(tmp_path):
    images = [str(tmp_path / "a" / "cell.jpg"), str(tmp_path / "b" / "cell.jpg")]
    out = output_paths(images, tmp_path / "out")
    assert [p.name for p in out] == ["cell_gradcam.png", "cell-2_gradcam.png"]
    assert all(p.parent == (tmp_path / "out").resolve() for p in out)
    with pytest.raises(LeukemiaCNNError, match="would overwrite it"):
        output_paths([str(tmp_path / "x.png"), str(tmp_path / "x_gradcam.png")], tmp_path)


@pytest.fixture
def champion(trained, monkeypatch):
    from leukemia_cnn.config import write_params

    register.run(trained.cfg, trained.root)
    monkeypatch.chdir(trained.root)
    write_params(trained.cfg, trained.root / "params.yaml")
    return trained


def smear_jpegs(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for index in range(n):
        pixels = rng.integers(120, 255, (60, 80, 3), dtype=np.uint8)
        pixels[20:40, 30:50] = (120, 40, 160)  # a purple "nucleus"
        path = folder / f"smear-{index}.jpg"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(str(path))
    return paths


def test_explain_cli_writes_a_heatmap_per_image(champion, tmp_path, capsys):
    images = smear_jpegs(tmp_path / "imgs")
    out = tmp_path / "heat"
    assert cli_main(["explain", *images, "--output", str(out)]) == 0
    for image in images:
        written = out / (image.rsplit("/", 1)[1].replace(".jpg", "_gradcam.png"))
        with Image.open(written) as heat:
            assert heat.size == (80, 60) and heat.mode == "RGB"
    printed = capsys.readouterr().out
    assert printed.count("_gradcam.png") == 2 and "(p " in printed

    # An output that would replace an input is refused before anything is written.
    victim = tmp_path / "imgs" / "smear-0_gradcam.png"
    Image.new("RGB", (10, 10)).save(victim)
    before = victim.read_bytes()
    assert cli_main(["explain", images[0], str(victim), "--output", str(tmp_path / "imgs")]) == 1
    assert "would overwrite it" in capsys.readouterr().err
    assert victim.read_bytes() == before


def test_served_model_returns_a_heatmap_only_on_request(champion, tmp_path):
    import mlflow

    from leukemia_cnn.serving.predict import read_images

    images = read_images(smear_jpegs(tmp_path / "imgs"))
    model = mlflow.pyfunc.load_model("models:/leukemia-cnn@champion")
    plain = model.predict(images)
    assert "heatmap" not in plain.columns
    with_map = model.predict(images, params={"heatmap": True})
    pd.testing.assert_frame_equal(with_map.drop(columns="heatmap"), plain)
    for encoded in with_map["heatmap"]:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as heat:
            assert heat.size == (80, 60) and heat.format == "PNG"


def test_explain_says_whether_the_image_looks_like_the_training_data(champion, tmp_path,
                                                                     capsys):
    from leukemia_cnn.data.shifts import skimage_samples
    from leukemia_cnn.serving import explain

    camera = tmp_path / "camera.jpg"
    skimage_samples(("camera",))["camera"].save(camera, quality=92)
    rows = explain.run(champion.cfg, champion.root, [str(camera)],
                       output=str(tmp_path / "heat"))
    assert rows[0]["in_distribution"] is False and rows[0]["ood_score"] > 0
    printed = capsys.readouterr()
    assert "in_distribution false" in printed.out and "do not trust" in printed.out
    assert "1 image(s) flagged" in printed.err
