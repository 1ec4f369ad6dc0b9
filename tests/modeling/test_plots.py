import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukemia_cnn.modeling.plots import new_figure, plot_confusion, plot_curves, save_figure


def history(epochs: int = 4) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": epoch, "loss": 1 / epoch, "val_loss": 1.2 / epoch,
                         "argmax_accuracy": epoch / epochs, "val_argmax_accuracy": epoch / 5})


def test_curves_are_a_png_of_the_figure_size(tmp_path):
    path = plot_curves(history(), tmp_path / "figs" / "curves.png", "run 1")
    with Image.open(path) as image:  # 10x4 inches at 110 dpi, the folder made for it
        assert image.format == "PNG" and image.size == (1100, 440)
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temporary left


def test_confusion_matrix_is_drawn_with_sklearn_and_replaces_an_earlier_file(tmp_path):
    target = tmp_path / "confusion_test.png"
    target.write_bytes(b"an earlier figure")
    matrix = np.array([[5, 1, 0, 0], [0, 4, 2, 0], [0, 0, 6, 0], [1, 0, 0, 5]])
    assert plot_confusion(matrix, ["Benign", "Early", "Pre", "Pro"], target, "test") == target
    with Image.open(target) as image:  # 5x4.4 inches at 110 dpi
        assert image.format == "PNG" and image.size == (550, 484)
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 50 and pixels.max() > 200  # drawn, not blank


def test_a_failed_save_keeps_the_earlier_file(tmp_path):
    target = tmp_path / "figure.nosuchformat"
    target.write_bytes(b"earlier")
    figure, axis = new_figure()
    axis.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="not supported"):
        save_figure(figure, target)
    assert target.read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.nosuchformat"]
