"""The MLflow UI a user meets, in a real browser: Playwright drives Debian's Chromium
(/usr/bin/chromium; `.ci/run` installs it) against `mlflow server` on a store this test makes
(a tiny training on the synthetic arrays, its baseline, registration and promotion).

Set LEUKEMIA_CNN_UI_SCREENSHOTS=<folder> to keep a screenshot of every page it opens.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from helpers import REPO_ROOT, TINY_OVERRIDES, write_preprocessed
from helpers.servers import free_port, server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium: `apt-get install "
                       "chromium` (.ci/run does it)"),
]


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory):
    """A git-committed workspace with a baseline run and one registered, promoted CNN run."""
    from leukemia_cnn.config import load_config
    from leukemia_cnn.features import features
    from leukemia_cnn.modeling import evaluate, train
    from leukemia_cnn.registry import register

    root = tmp_path_factory.mktemp("ui")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "store"], cwd=root, check=True)
    cfg = load_config([*TINY_OVERRIDES, "train.epochs=3"], root=REPO_ROOT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        write_preprocessed(root, cfg)
        features.run(cfg, root)
        trained = train.run(cfg, root)
        evaluate.run(cfg, root)
        registered = register.run(cfg, root)
    return root, trained, registered


@pytest.fixture(scope="module")
def ui(ui_store):
    """``(url, page, shoot)``: the server's URL, a Chromium page, a screenshot helper."""
    sync_api = pytest.importorskip("playwright.sync_api")
    root = ui_store[0]
    port = free_port()
    shots = os.environ.get("LEUKEMIA_CNN_UI_SCREENSHOTS")
    command = [shutil.which("mlflow") or "mlflow", "server", "--backend-store-uri",
               f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)]
    with server(command, port, root) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)

        def shoot(name: str) -> None:
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"{name}.png"))

        yield url, page, shoot
        browser.close()


def test_a_new_user_reaches_the_runs_table_with_datasets(ui_store, ui):
    root, trained, _ = ui_store
    url, page, shoot = ui
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("leukemia-cnn")
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}")
    page.get_by_text("Model training", exact=True).first.wait_for()
    page.wait_for_timeout(3000)  # the landing page and its pop-over finish loading
    shoot("landing")
    # MLflow 3.17 picks the landing page from the browser's workflow switch, not from the
    # experiment: a new browser opens on GenAI pages; "Model training" is the one click.
    guidance = page.get_by_role("button", name="Got it")
    if guidance.count():
        guidance.first.click()
    page.get_by_text("Model training", exact=True).first.click()
    page.get_by_text(trained["run_name"], exact=True).first.wait_for()
    assert "workflowType=machine_learning" in page.url
    body = page.inner_text("body")
    shoot("runs")
    # the runs table: the experiment's description, the run names, one dataset digest per split
    assert "Keras CNN classifying acute lymphoblastic leukemia" in body
    assert trained["run_name"] == "paper-s42-synthetic"
    assert "baseline-s42-synthetic" in body and "Model registry" in body
    page.get_by_text("Dataset", exact=True).first.wait_for()
    digests = set(re.findall(r"synthetic-train \(([0-9a-f]{12})\)", body))
    assert len(digests) == 1, body  # both runs trained on the same train rows


def test_the_run_page_shows_description_and_grouped_curves(ui_store, ui):
    _, trained, _ = ui_store
    url, page, shoot = ui
    page.goto(f"{url}/#/experiments/{trained['experiment_id']}/runs/{trained['run_id']}"
              "?workflowType=machine_learning")
    page.get_by_text("Keras CNN trained by", exact=False).first.wait_for()
    shoot("run")
    lines = page.inner_text("body").splitlines()
    # Keras's duplicate accuracy is gone; train and val curves are metrics of one prefix
    assert not {"keras_accuracy", "val_keras_accuracy", "accuracy", "val_loss"} & set(lines)
    assert {"accuracy/train", "accuracy/val", "loss/train", "loss/val"} <= set(lines)
    page.goto(f"{url}/#/experiments/{trained['experiment_id']}/runs/{trained['run_id']}"
              "/model-metrics?workflowType=machine_learning")
    page.get_by_text("(loss/val)").first.wait_for()
    shoot("run-metrics")
    # one section per quantity, train and val side by side in it
    body = page.inner_text("body")
    assert re.search(r"accuracy\s*\(2\)", body) and re.search(r"loss\s*\(2\)", body), body


def test_the_registry_shows_the_champions_whole_card(ui_store, ui):
    _, _, registered = ui_store
    url, page, shoot = ui
    version = registered["champion_version"]
    page.goto(f"{url}/#/models/leukemia-cnn/versions/{version}?workflowType=machine_learning")
    page.get_by_text(f"Model card: leukemia-cnn version {version}").first.wait_for()
    shoot("registry-version")
    body = page.inner_text("body")
    assert re.search(r"Aliases: champion \(when this card was written", body), body
    assert "train.epochs: 3" in body and "see the run's" not in body
    assert "A research model, not a medical device" in body
