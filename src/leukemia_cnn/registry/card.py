"""Model cards: what a registered model version is, generated from what MLflow holds.

``model_card(client, name, version)`` reads the version (aliases, tags), its training run
(params, metrics, tags: data source and version, split sizes, per-class precision/recall/F1
on val and test, calibration, configuration, training time) and writes Markdown with the
model's known limits. The register stage logs it as the run's ``model_card.md`` artifact and
puts it in the version's description (:func:`publish_card`); ``leukemia-cnn card [VERSION]``
prints a fresh one (default: the champion).
"""

from __future__ import annotations

import datetime as dt
import math

from leukemia_cnn.errors import LeukemiaCNNError

CARD_ARTIFACT = "model_card.md"
# MLflow stores a version's description in a VARCHAR(5000) column (PostgreSQL enforces it);
# room is left for the registration sentence before the card and promotion's note after it.
DESCRIPTION_LIMIT = 4300
MISSING = "not recorded"

# The configuration keys the card lists (the full resolved config is the run's config.yaml).
CONFIG_KEYS = (
    "preprocess.image_size", "preprocess.color_mode", "model.filters", "model.kernel_sizes",
    "model.padding", "model.dense_units", "model.dropout", "model.standardize",
    "model.batch_norm", "train.epochs", "train.batch_size", "train.loss",
    "train.learning_rate", "train.train_fraction", "train.augment", "train.class_weight",
    "train.lr_schedule", "train.lr_warmup_epochs", "train.early_stopping_patience",
    "train.calibration", "split.train", "split.val", "split.test", "split.seed", "seed",
)


def _number(metrics: dict, key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _classes(params: dict, metrics: dict) -> list[str]:
    """The class names: the logged ``data.classes`` param, else the per-class metric names."""
    logged = params.get("data.classes")
    if logged:
        names = [n.strip().strip("'\"") for n in logged.strip("[]").split(",") if n.strip()]
        if names:
            return names
    return sorted({k.removeprefix("val_f1_") for k in metrics
                   if k.startswith("val_f1_") and k != "val_f1_macro"})


def _time(millis: int | None) -> str:
    if not millis:
        return MISSING
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _performance(metrics: dict, classes: list[str]) -> list[str]:
    lines = ["| split | images | accuracy (argmax) | macro F1 |", "|---|---|---|---|"]
    for split in ("val", "test"):
        n = metrics.get(f"{split}_n_images")
        lines.append(f"| {split} | {int(n) if n is not None else '-'} | "
                     f"{_number(metrics, f'{split}_accuracy')} | "
                     f"{_number(metrics, f'{split}_f1_macro')} |")
    lines += ["", "| class | val precision | val recall | val F1 | val n | test precision | "
              "test recall | test F1 | test n |", "|---|---|---|---|---|---|---|---|---|"]
    for name in classes:
        cells = []
        for split in ("val", "test"):
            cells += [_number(metrics, f"{split}_{kind}_{name}") for kind in
                      ("precision", "recall", "f1")]
            support = metrics.get(f"{split}_support_{name}")
            cells.append(str(int(support)) if support is not None else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _calibration(metrics: dict, params: dict) -> list[str]:
    if "val_ece_uncalibrated" not in metrics:
        return [f"Calibration: {MISSING} (the run predates it; re-train to measure it)."]
    fitted = metrics.get("calibration_fitted_temperature", 1.0)
    served = metrics.get("calibration_temperature", 1.0)
    mode = params.get("train.calibration", "auto")
    lines = [f"Temperature scaling (`train.calibration={mode}`): T = {fitted:.3f} fitted on the "
             f"validation split (minimum val NLL); the served probabilities "
             f"{'use it' if served != 1.0 else 'do not use it (T = 1)'}. The predicted class "
             "never changes.", "",
             "| split | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|"]
    for split in ("val", "test"):
        lines.append(f"| {split} | {_number(metrics, f'{split}_ece_uncalibrated')} | "
                     f"{_number(metrics, f'{split}_ece_calibrated')} | "
                     f"{_number(metrics, f'{split}_nll_uncalibrated')} | "
                     f"{_number(metrics, f'{split}_nll_calibrated')} |")
    return lines


def _guard(metrics: dict, params: dict, tags: dict) -> list[str]:
    """The out-of-distribution guard: method, threshold, measured rates, what it was tested on."""
    if "guard_threshold" not in metrics:
        return [f"Out-of-distribution guard: {MISSING} (the run predates it; re-train to fit "
                "one). Every answer is given as if the image were a smear like the training ones."]
    method = tags.get("guard_method", params.get("train.guard_method", MISSING))
    rate = params.get("train.guard_accept_rate", "0.95")
    return [
        f"Method `{method}`, fit on the train split; threshold {metrics['guard_threshold']:.4g} "
        f"set on validation to accept {rate} of it (`train.guard_accept_rate`). Every answer "
        "carries `in_distribution` (`ood_score <= threshold`) and `ood_score`.",
        "",
        "| split | accepted | false-flag rate | accuracy, accepted | accuracy, all |",
        "|---|---|---|---|---|",
        *[f"| {split} | {_number(metrics, f'{split}_guard_coverage')} | "
          f"{_number(metrics, f'{split}_false_flag_rate')} | "
          f"{_number(metrics, f'{split}_accuracy_accepted')} | "
          f"{_number(metrics, f'{split}_accuracy')} |" for split in ("val", "test")],
        "",
        "Tested against (tests/modeling/test_guard.py, on built-in synthetic smears): "
        "scikit-image's sample photos, and smears re-stained, blurred and re-magnified; on "
        "real images: docs/results/guard.md. A shift the guard was not tested on may pass it.",
    ]


def _limits(params: dict, metrics: dict, tags: dict, classes: list[str]) -> list[str]:
    limits = []
    supports = {name: metrics.get(f"test_support_{name}", 0) + metrics.get(f"val_support_{name}", 0)
                for name in classes}
    total = sum(supports.values())
    if total:
        shares = ", ".join(f"{name} {count / total:.0%}" for name, count in supports.items())
        smallest = min(supports, key=supports.get)
        limits.append(f"Class balance (val + test): {shares}; {smallest} is the smallest class, "
                      "so its per-class numbers rest on the fewest images.")
    majority = metrics.get("val_majority_share")
    if majority is not None:
        limits.append(f"Always answering the majority class would score {majority:.3f} on val.")
    mode = params.get("preprocess.color_mode", "grayscale")
    size = params.get("preprocess.image_size", "?")
    if mode == "grayscale":
        limits.append(f"Grayscale {size}x{size} input (the paper's): the stain colour that tells "
                      "a hematologist blasts from other cells is discarded, and fine chromatin "
                      "detail is lost at this resolution.")
    else:
        limits.append(f"{mode} {size}x{size} input: colour depends on the stain and the slide.")
    limits.append("Inputs are whole smear fields with many cells, not single segmented cells; "
                  "the model has no notion of which cell it classifies (see its Grad-CAM maps: "
                  "`leukemia-cnn explain`).")
    source = tags.get("data_source", MISSING)
    if source == "synthetic":
        limits.append("Trained and scored on the built-in SYNTHETIC images: its numbers say "
                      "nothing about real smears.")
    n_val = metrics.get("val_n_images")
    accuracy = metrics.get("val_accuracy")
    if n_val and accuracy is not None:
        error = math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / n_val)
        limits.append(f"One training seed; the val split has {int(n_val)} images, so its accuracy "
                      f"has a binomial standard error of about {error:.3f}.")
    limits.append("Calibration and accuracy are measured on held-out images of the same "
                  "dataset; another lab, scanner or stain shifts both.")
    if tags.get("collapsed") == "true" or metrics.get("collapsed", 0) > 0:
        limits.append("COLLAPSED run: it predicts one class or does not beat the majority "
                      "share; it is never promoted.")
    limits.append("A research model, not a medical device: not validated for diagnosis.")
    return [f"- {item}" for item in limits]


def model_card(client, name: str, version: str | int) -> str:
    """Markdown card of version ``version`` of registered model ``name``.

    Parameters
    ----------
    client : mlflow.MlflowClient
        Client of the store that holds the registry and the runs.
    name : str
        Registered model name.
    version : str or int
        Version number.

    Returns
    -------
    str
        The card; values the run did not record read "not recorded" or "-".
    """
    from mlflow.exceptions import MlflowException

    try:
        model_version = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise LeukemiaCNNError(f"registered model '{name}' has no version {version}: "
                               f"{exc.message}. List versions with `leukemia-cnn promote "
                               "--dry-run`") from exc
    try:
        run = client.get_run(model_version.run_id)
    except MlflowException as exc:
        raise LeukemiaCNNError(f"'{name}' version {version}: its run {model_version.run_id} is "
                               f"not in this store ({exc.message})") from exc
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    classes = _classes(params, metrics)
    aliases = ", ".join(f"`{a}`" for a in (model_version.aliases or [])) or "none"
    train_seconds = metrics.get("train_seconds")
    epochs_run = int(metrics.get("epochs_run", 0)) or params.get("train.epochs", MISSING)
    fraction = params.get("train.train_fraction", "1.0")
    lines = [
        f"# Model card: {name} version {model_version.version}",
        "",
        f"Aliases: {aliases}. Registered {_time(model_version.creation_timestamp)} from MLflow "
        f"run `{run.info.run_name}` (`{run.info.run_id}`), model `{model_version.source}`.",
        "",
        "## Intended use",
        f"Research on classifying acute lymphoblastic leukemia peripheral-blood-smear images "
        f"into {len(classes)} classes ({', '.join(classes) or MISSING}), reproducing the CNN "
        "study of the leukemia-cnn project. Input: an image file (JPEG, PNG); output: the "
        "class and its probabilities (optionally a Grad-CAM heatmap).",
        "",
        "## Data",
        f"- Source: {tags.get('data_source', MISSING)}; data version (data.dvc md5): "
        f"`{tags.get('data_version', MISSING)}`.",
        f"- Split sizes: train {params.get('data.n_train', MISSING)} images (fraction {fraction} "
        f"of the train split), val {int(metrics['val_n_images']) if 'val_n_images' in metrics else MISSING}, "
        f"test {int(metrics['test_n_images']) if 'test_n_images' in metrics else MISSING}; "
        f"stratified split {params.get('split.train', '?')}/{params.get('split.val', '?')}/"
        f"{params.get('split.test', '?')}, seed {params.get('split.seed', '?')}.",
        "",
        "## Performance",
        "Accuracy is argmax accuracy. The champion is chosen by validation accuracy, never "
        "by test accuracy.",
        "",
        *_performance(metrics, classes),
        "",
        "## Calibration",
        *_calibration(metrics, params),
        "",
        "## Out-of-distribution guard",
        *_guard(metrics, params, tags),
        "",
        "## Training",
        f"- Training time: {f'{train_seconds:.0f} s' if train_seconds is not None else MISSING} "
        f"for {epochs_run} epochs ({int(metrics['n_params']) if 'n_params' in metrics else '?'} "
        f"parameters); started {_time(run.info.start_time)}.",
        f"- Seed {tags.get('seed', params.get('seed', MISSING))}; git commit "
        f"`{tags.get('git_commit', MISSING)}`; overrides `{tags.get('hydra_overrides', MISSING)}`; "
        f"configuration id `{tags.get('config_id', MISSING)}`; paper-faithful: "
        f"{tags.get('paper_faithful', MISSING)}.",
        "",
        "## Configuration",
        *[f"- `{key}`: {params[key]}" for key in CONFIG_KEYS if key in params],
        f"- Full resolved configuration: `runs:/{run.info.run_id}/config.yaml`.",
        "",
        "## Known limits",
        *_limits(params, metrics, tags, classes),
    ]
    promoted = model_version.tags.get("promoted_by") if model_version.tags else None
    if promoted:
        lines += ["", "## Promotion", promoted]
    return "\n".join(lines) + "\n"


def description_text(head: str, card: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``head`` (the registration sentence) and ``card`` for a version's description; a card
    too long for the registry's column loses its Configuration section, then is cut."""
    head = head.strip()
    text = f"{head}\n\n{card}" if head else card
    if len(text) <= limit:
        return text
    start, end = card.find("## Configuration"), card.find("## Known limits")
    if 0 <= start < end:
        card = card[:start] + f"(configuration: see the run's `{CARD_ARTIFACT}`)\n\n" + card[end:]
    text = f"{head}\n\n{card}" if head else card
    return text if len(text) <= limit else text[:limit - 40] + f"\n... (see `{CARD_ARTIFACT}`)\n"


def publish_card(client, name: str, version: str | int) -> str:
    """Log the card as the run's ``model_card.md`` and put it in the version's description
    after the description registration wrote. Returns the card."""
    card = model_card(client, name, version)
    model_version = client.get_model_version(name, str(version))
    client.log_text(model_version.run_id, card, CARD_ARTIFACT)
    head = (model_version.description or "").split(f"\n\n# Model card: {name}")[0]
    client.update_model_version(name, str(version), description=description_text(head, card))
    return card


def run(cfg, root, version: str | None = None) -> str:
    """``leukemia-cnn card [VERSION]``: print the card (default: the champion's)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from leukemia_cnn.tracking.store import setup_mlflow

    setup_mlflow(cfg, root)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    if version is None:
        try:
            version = client.get_model_version_by_alias(name, alias).version
        except MlflowException as exc:
            raise LeukemiaCNNError(f"registered model '{name}' has no '{alias}' alias in this "
                                   "store; run `dvc repro` (or `leukemia-cnn promote`), or name "
                                   "a version: `leukemia-cnn card 3`") from exc
    card = model_card(client, name, version)
    print(card, end="")
    return card
