"""Model cards: what a registered model version is, generated from what MLflow holds.

``model_card(client, name, version)`` writes the Markdown of the :data:`SECTIONS` from the
version (aliases, tags) and its training run (params, metrics, tags). The register stage logs
it as the run's ``model_card.md`` artifact and puts it in the version's description
(card_publish.py); ``leukemia-cnn card [VERSION]`` prints a fresh one (default: the champion).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.markdown import pipe_table
from leukemia_cnn.registry.candidates import as_count, current_alias_version, registry_client
from leukemia_cnn.registry.card_robustness import number, robustness_section, shift_limit
from leukemia_cnn.tracking.store import setup_mlflow

CARD_ARTIFACT = "model_card.md"
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


def _time(millis: int | None) -> str:
    if not millis:
        return MISSING
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _performance(facts: CardFacts) -> list[str]:
    metrics = facts.metrics

    def count(key: str) -> str:
        return "-" if metrics.get(key) is None else str(int(metrics[key]))

    def class_cells(split: str, name: str) -> list[str]:
        return [*(number(metrics, f"{split}_{kind}_{name}") for kind in ("precision", "recall",
                                                                           "f1")),
                count(f"{split}_support_{name}")]

    overall = [(split, count(f"{split}_n_images"), number(metrics, f"{split}_accuracy"),
                number(metrics, f"{split}_f1_macro")) for split in ("val", "test")]
    per_class = [(name, *class_cells("val", name), *class_cells("test", name))
                 for name in facts.classes]
    class_columns = [f"{split} {what}" for split in ("val", "test")
                     for what in ("precision", "recall", "F1", "n")]
    return ["Accuracy is argmax accuracy. The champion is chosen by validation accuracy, never "
            "by test accuracy.", "",
            pipe_table(overall, ("split", "images", "accuracy (argmax)", "macro F1")), "",
            pipe_table(per_class, ("class", *class_columns))]


def _calibration(facts: CardFacts) -> list[str]:
    metrics, params = facts.metrics, facts.params
    if "val_ece_uncalibrated" not in metrics:
        return [f"Calibration: {MISSING} (the run predates it; re-train to measure it)."]
    fitted = metrics.get("calibration_fitted_temperature", 1.0)
    served = metrics.get("calibration_temperature", 1.0)
    mode = params.get("train.calibration", "auto")
    lines = [f"Temperature scaling (`train.calibration={mode}`): T = {fitted:.3f} fitted on the "
             f"validation split (minimum val NLL); the served probabilities "
             f"{'use it' if served != 1.0 else 'do not use it (T = 1)'}. The predicted class "
             "never changes.", ""]
    rows = [(split, *[number(metrics, f"{split}_{kind}_{when}") for kind in ("ece", "nll")
                      for when in ("uncalibrated", "calibrated")]) for split in ("val", "test")]
    return [*lines, pipe_table(rows, ("split", "ECE before", "ECE after", "NLL before",
                                      "NLL after"))]


def _guard(facts: CardFacts) -> list[str]:
    """The out-of-distribution guard: method, threshold, measured rates, what it was tested on."""
    metrics, params, tags = facts.metrics, facts.params, facts.tags
    if "guard_threshold" not in metrics:
        return [f"Out-of-distribution guard: {MISSING} (the run predates it; re-train to fit "
                "one). Every answer is given as if the image were a smear like the training ones."]
    method = tags.get("guard_method", params.get("train.guard_method", MISSING))
    rate = params.get("train.guard_accept_rate", "0.95")
    degenerate = tags.get("guard_degenerate")
    warning = ([f"DEGENERATE guard: its `{degenerate}` part was fitted on training samples "
                "without spread (the constant or rank-deficient embedding of a collapsed "
                "network) through a regularised covariance; it answers, but tells little "
                "apart.", ""] if degenerate else [])
    # The guard's threshold, and the other precision's when the run set one (a model served in
    # that precision uses it).
    threshold = f"threshold {metrics['guard_threshold']:.4g}"
    other = next((p for p in ("bfloat16", "float32") if f"guard_threshold_{p}" in metrics), None)
    if other is not None:
        own = "float32" if other == "bfloat16" else "bfloat16"
        threshold += (f" (network in {own}; {metrics[f'guard_threshold_{other}']:.4g} in "
                      f"{other}, set on val in {other})")
    return [
        *warning,
        f"Method `{method}`, fit on train; {threshold} accepts {rate} of val. "
        "Answers carry `in_distribution` (`ood_score <= threshold`).",
        "",
        pipe_table([(split, *[number(metrics, f"{split}_{key}") for key in (
            "guard_coverage", "false_flag_rate", "accuracy_accepted", "accuracy")])
            for split in ("val", "test")],
            ("split", "accepted", "false-flag rate", "accuracy, accepted", "accuracy, all")),
        "",
        "Tested against scikit-image's sample photos and re-stained, blurred, re-magnified "
        "smears (docs/results/guard.md); an untested shift may pass it.",
    ]


def _limits(facts: CardFacts) -> list[str]:
    params, metrics, tags, classes = facts.params, facts.metrics, facts.tags, facts.classes
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
    if (shifted := shift_limit(metrics)) is not None:
        limits.append(shifted)
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


@dataclass(frozen=True)
class CardFacts:
    """What a card is written from: the version and its training run (and the run's data)."""

    version: object  # mlflow.entities.model_registry.ModelVersion
    run: object  # mlflow.entities.Run
    classes: list[str]
    params: dict
    metrics: dict
    tags: dict

    def count(self, key: str):
        """A count the run logged as a tag (newer runs) or a metric (older ones), or None."""
        return as_count(self.tags.get(key, self.metrics.get(key)))


def _header(facts: CardFacts) -> list[str]:
    version, run = facts.version, facts.run
    aliases = ", ".join(f"`{a}`" for a in (version.aliases or [])) or "none"
    return [f"Aliases: {aliases} (when this card was written, "
            f"{_time(dt.datetime.now(dt.UTC).timestamp() * 1000)}). Registered "
            f"{_time(version.creation_timestamp)} from MLflow run `{run.info.run_name}` "
            f"(`{run.info.run_id}`), model `{version.source}`."]


def _intended_use(facts: CardFacts) -> list[str]:
    return [f"Research on classifying acute lymphoblastic leukemia peripheral-blood-smear "
            f"images into {len(facts.classes)} classes ({', '.join(facts.classes) or MISSING}), "
            "reproducing the CNN study of the leukemia-cnn project. Input: an image file "
            "(JPEG, PNG); output: the class and its probabilities (optionally a Grad-CAM "
            "heatmap)."]


def _data(facts: CardFacts) -> list[str]:
    params, metrics, tags = facts.params, facts.metrics, facts.tags

    def size(key):
        return int(metrics[key]) if key in metrics else MISSING

    named = tags.get("data_name", "")
    return [
        f"- Source: {tags.get('data_source', MISSING)}"
        f"{f' ({named})' if named and named != tags.get('data_source') else ''}; data version "
        f"(data.dvc md5): `{tags.get('data_version', MISSING)}`.",
        f"- Split sizes: train {params.get('data.n_train', MISSING)} images (fraction "
        f"{params.get('train.train_fraction', '1.0')} of the train split), val "
        f"{size('val_n_images')}, test {size('test_n_images')}; stratified split "
        f"{params.get('split.train', '?')}/{params.get('split.val', '?')}/"
        f"{params.get('split.test', '?')}, seed {params.get('split.seed', '?')}."]


def _training(facts: CardFacts) -> list[str]:
    params, metrics, tags, run = facts.params, facts.metrics, facts.tags, facts.run
    seconds = metrics.get("train_seconds")
    epochs = facts.count("epochs_run") or params.get("train.epochs", MISSING)
    n_params = facts.count("n_params")
    return [
        f"- Training time: {f'{seconds:.0f} s' if seconds is not None else MISSING} for "
        f"{epochs} epochs ({n_params if n_params is not None else '?'} parameters); started "
        f"{_time(run.info.start_time)}.",
        f"- Seed {tags.get('seed', params.get('seed', MISSING))}; git commit "
        f"`{tags.get('git_commit', MISSING)}`; overrides `{tags.get('hydra_overrides', MISSING)}`;"
        f" configuration id `{tags.get('config_id', MISSING)}`; paper-faithful: "
        f"{tags.get('paper_faithful', MISSING)}."]


def _configuration(facts: CardFacts) -> list[str]:
    return [*[f"- `{key}`: {facts.params[key]}" for key in CONFIG_KEYS if key in facts.params],
            f"- Full resolved configuration: `runs:/{facts.run.info.run_id}/config.yaml`."]


def _promotion(facts: CardFacts) -> list[str]:
    reason = (facts.version.tags or {}).get("promoted_by")
    if not reason:
        return []
    if facts.version.aliases:
        return [f"Promoted: {reason}"]
    return [f"Formerly promoted ({reason}); the alias has moved to another version since."]


# The card's sections in order: (title, builder). A builder returns the section's lines (none:
# the section is left out). Add a section by adding a builder here.
SECTIONS: list[tuple[str, Callable[[CardFacts], list[str]]]] = [
    ("", _header),
    ("Intended use", _intended_use),
    ("Data", _data),
    ("Performance", _performance),
    ("Calibration", _calibration),
    ("Out-of-distribution guard", _guard),
    ("Robustness to acquisition shift", lambda facts: robustness_section(facts.metrics)),
    ("Training", _training),
    ("Configuration", _configuration),
    ("Known limits", _limits),
    ("Promotion", _promotion),
]
def card_facts(client, name: str, version: str | int) -> CardFacts:
    """The version ``version`` of ``name`` and its run; a project error when either is missing."""
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
    # The class names: the run's `classes` tag (or the `data.classes` param of older runs),
    # else the per-class metric names.
    logged = tags.get("classes") or params.get("data.classes") or ""
    classes = [n.strip().strip("'\"") for n in logged.strip("[]").split(",") if n.strip()] \
        or sorted({k.removeprefix("val_f1_") for k in metrics
                   if k.startswith("val_f1_") and k != "val_f1_macro"})
    return CardFacts(version=model_version, run=run, params=params, metrics=metrics, tags=tags,
                     classes=classes)


def card_sections(facts: CardFacts) -> list[tuple[str, list[str]]]:
    """``(title, lines)`` of every section with something to say, in card order."""
    built = [(title, builder(facts)) for title, builder in SECTIONS]
    return [(title, lines) for title, lines in built if lines]


def render(name: str, version: str, sections: list[tuple[str, list[str]]]) -> str:
    """The Markdown of a card made of ``sections``."""
    parts = [f"# Model card: {name} version {version}"]
    for title, lines in sections:
        parts += ["", *([f"## {title}"] if title else []), *lines]
    return "\n".join(parts) + "\n"


def model_card(client, name: str, version: str | int) -> str:
    """Markdown card of version ``version`` of registered model ``name``.

    Returns
    -------
    str
        The card; values the run did not record read "not recorded" or "-".
    """
    facts = card_facts(client, name, version)
    return render(name, str(facts.version.version), card_sections(facts))


def run(cfg, root, version: str | None = None) -> str:
    """``leukemia-cnn card [VERSION]``: print the card (default: the champion's)."""
    setup_mlflow(cfg, root, read_only=True)
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    if version is None and (version := current_alias_version(name, alias)) is None:
        raise LeukemiaCNNError(f"registered model '{name}' has no '{alias}' alias in this "
                               "store; run `dvc repro` (or `leukemia-cnn promote`), or name "
                               "a version: `leukemia-cnn card 3`")
    card = model_card(registry_client(), name, version)
    print(card, end="")
    return card
