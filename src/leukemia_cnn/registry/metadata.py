"""What the registered model itself says in the registry: a description and tags.

Versions carry their own card (registry/card.py); the registered model says what every version
is, how the champion is chosen and where to look.
"""

from __future__ import annotations

from leukemia_cnn.config_schema import Config

MODEL_DESCRIPTION = (
    "Keras CNN classifying acute lymphoblastic leukemia peripheral-blood-smear images into "
    "{classes} (the leukemia-cnn project). Each version is one training run; its description "
    "is its model card (data, val/test accuracy per class, calibration, configuration, known "
    "limits). The alias `{alias}` marks the best validation accuracy among the versions scored "
    "on the workspace's current validation set, never chosen on test accuracy; `leukemia-cnn "
    "promote` moves it. Serve it with `mlflow models serve -m models:/{name}@{alias}`: it takes "
    "a DataFrame with an `image` column of encoded image bytes (JPEG, PNG) and answers the "
    "class and one probability per class. A research model, not a medical device.")


def describe_registered_model(client, cfg: Config, run) -> None:
    """Give the registered model its description (unless one was written by hand) and tags:
    task, classes, framework, input, champion alias."""
    name, alias = cfg.mlflow.registered_model_name, cfg.mlflow.champion_alias
    classes = ", ".join(map(str, cfg.data.classes))
    text = MODEL_DESCRIPTION.format(classes=classes, name=name, alias=alias)
    current = client.get_registered_model(name).description or ""
    if not current or current.startswith(MODEL_DESCRIPTION[:40]):
        client.update_registered_model(name, description=text)
    tags = {"task": "image-classification", "classes": classes, "framework": "keras",
            "flavor": "pyfunc (with its preprocessing)",
            "input": "encoded image bytes (column `image`)", "champion_alias": alias,
            "experiment_id": run.info.experiment_id}
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)
