"""Publishing a model card: the run's ``model_card.md`` artifact and the version's
description, cut to fit the registry's description column (cards are built in card.py)."""

from __future__ import annotations

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.registry.card import CARD_ARTIFACT, card_facts, card_sections, render

# MLflow stores a version's description in a VARCHAR(5000) column (its sqlalchemy model,
# mlflow/store/model_registry/dbmodels/models.py; PostgreSQL and MySQL enforce it, sqlite not).
DESCRIPTION_LIMIT = 5000
# What a description too long for the registry's column leaves out first (the full card is the
# run's model_card.md artifact).
DESCRIPTION_DROP_ORDER = ("Calibration", "Robustness to acquisition shift", "Training",
                          "Intended use", "Known limits")


def description_text(head: str, name: str, version: str, run_id: str,
                     sections: list[tuple[str, list[str]]], limit: int = DESCRIPTION_LIMIT) -> str:
    """``head`` and the card for a version's description, at most ``limit`` characters.

    A card too long for the registry's column leaves out whole sections (in
    ``DESCRIPTION_DROP_ORDER``) and says which, with a link to the full card artifact: never
    a cut mid-word.
    """
    head = f"{head.strip()}\n\n" if head.strip() else ""
    dropped: list[str] = []
    for title in ("", *DESCRIPTION_DROP_ORDER):
        if title:
            dropped.append(title)
            sections = [(t, lines) for t, lines in sections if t != title]
        note = (["", f"Left out here for MLflow's {limit}-character description limit: "
                 f"{', '.join(dropped)}. Full card: `runs:/{run_id}/{CARD_ARTIFACT}` (the run's "
                 f"artifact) or `leukemia-cnn card {version}`."] if dropped else [])
        text = head + render(name, version, sections) + "\n".join(note) + ("\n" if note else "")
        if len(text) <= limit:
            return text
    raise LeukemiaCNNError(f"the model card of '{name}' version {version} does not fit MLflow's "
                           f"{limit}-character description even without "
                           f"{', '.join(dropped)}; shorten config key `data.classes` names")


def publish_card(client, name: str, version: str | int) -> str:
    """Log the card as the run's ``model_card.md`` and put it in the version's description,
    after the description's first paragraph (registration's summary). Returns the card.

    Call it whenever what the card says changes: registration, and every alias move (both
    the version that gets the alias and the one that loses it)."""
    facts = card_facts(client, name, version)
    number = str(facts.version.version)
    sections = card_sections(facts)
    card = render(name, number, sections)
    client.log_text(facts.run.info.run_id, card, CARD_ARTIFACT)
    head = (facts.version.description or "").split(f"# Model card: {name}")[0]
    client.update_model_version(name, number, description=description_text(
        head, name, number, facts.run.info.run_id, sections))
    return card
