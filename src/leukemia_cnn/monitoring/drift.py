"""``leukemia-cnn drift --source DIR``: do new images look like the training images?

A batch check for a scheduled job or CI (docs/drift.md): the shift tests of
:mod:`leukemia_cnn.monitoring.kstests` on the input statistics of
:mod:`leukemia_cnn.features.imagestats` and the HOG + PCA components
(:mod:`leukemia_cnn.monitoring.reference`), and the share of the new images the model's guard
flags (``drift.max_flagged_share``). The report is :mod:`leukemia_cnn.monitoring.drift_report`;
exit 4 on drift, 0 without, 5 when too few images to judge.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from leukemia_cnn.config import flatten
from leukemia_cnn.config_schema import Config
from leukemia_cnn.console import terminal_safe
from leukemia_cnn.data.filekinds import skip_problem
from leukemia_cnn.data.imaging import OS_JUNK, skip_reason
from leukemia_cnn.data.lineage import safe_name
from leukemia_cnn.data.preprocess import n_workers
from leukemia_cnn.errors import DataError, LeukemiaCNNError, full_disk_cause
from leukemia_cnn.features.imagestats import describe_files, pca_columns
from leukemia_cnn.fileio import STDOUT, check_output, write_text
from leukemia_cnn.markdown import html_page
from leukemia_cnn.monitoring import drift_report
from leukemia_cnn.monitoring.kstests import ShiftTest, Verdict, shift_tests, verdict
from leukemia_cnn.monitoring.reference import Reference, load_reference, new_pca_features
from leukemia_cnn.serving.pyfunc import IN_DISTRIBUTION_COLUMN, OOD_SCORE_COLUMN

DRIFT_OUTPUT = "drift"  # the owner its reports are recorded under (fileio.record_output)


@dataclass
class BatchGuardShare:
    """What the model's guard said about the new images (``available`` False: no guard)."""

    available: bool
    note: str
    n_answered: int = 0
    n_flagged: int = 0
    median_score: float | None = None
    # Which model answered and the data it was trained on (registry.provenance), warnings too.
    provenance: list[str] = field(default_factory=list)

    @property
    def flagged_share(self) -> float | None:
        return self.n_flagged / self.n_answered if self.available and self.n_answered else None


@dataclass
class DriftResult:
    """Everything the check found, and where its report is."""

    source: Path
    n_images: int
    skipped: dict[str, str]
    reference: Reference
    tests: list[ShiftTest]
    guard: BatchGuardShare
    verdict: Verdict
    model_uri: str | None
    settings: dict
    markdown: Path | None = None
    html: Path | None = None
    run_id: str | None = None

    @property
    def drift(self) -> bool:
        return self.verdict.drift


def list_source(source: Path, max_files: int) -> tuple[list[Path], dict[str, str]]:
    """The image files under ``source`` and the skipped ones (relative path -> reason).

    Hidden and operating-system folders are not searched, links to folders not followed.
    More than ``max_files`` files (of any kind: each must be looked at) is refused as soon as
    the walk has seen them, so a source such as ``/`` costs seconds, not the whole disk.
    """
    if not source.exists():
        raise DataError(f"--source {source}: no such folder; pass a folder of images "
                        "(<Class>/<image> or flat)")
    if not source.is_dir():
        raise DataError(f"--source {source}: not a folder; pass the folder that holds the "
                        "images (<Class>/<image> or flat)")
    found: list[Path] = []
    skipped: dict[str, str] = {}
    seen = 0
    with tqdm(desc="listing", unit=" files", leave=False, disable=None) as bar:
        for folder, dirnames, filenames in os.walk(source):
            here = Path(folder)
            for name in list(dirnames):
                hidden = name.startswith(".") or name.lower() in OS_JUNK
                if hidden or (here / name).is_symlink():
                    dirnames.remove(name)
                    skipped[(here / name).relative_to(source).as_posix() + "/"] = (
                        "hidden or operating-system folder (not searched)" if hidden
                        else "a link to a folder (not followed)")
            dirnames.sort()
            seen += len(filenames)
            bar.update(len(filenames))
            if seen > max_files:
                raise DataError(f"--source {source}: holds more than {max_files:,} files "
                                "(drift.max_files); pass the folder of the new images only, "
                                "or raise the limit with --max-files N")
            for name in sorted(filenames):
                relative = (here / name).relative_to(source)
                reason = skip_reason(name) or skip_problem(here / name, relative)
                if reason is None:
                    found.append(here / name)
                else:
                    skipped[terminal_safe(relative.as_posix())] = reason
    return found, skipped


def guard_share(cfg: Config, root: Path, model_uri: str, paths: list[Path]
                ) -> BatchGuardShare:
    """Ask ``model_uri`` (through its pyfunc, as ``predict`` does) about every image and count
    the answers its guard flags (``in_distribution`` false); say which data it was trained on
    (a warning when that is not the workspace's, whose train images are the reference)."""
    from leukemia_cnn.registry.provenance import model_provenance
    from leukemia_cnn.serving.predict import ERROR_COLUMN, predict_files

    try:
        answers = predict_files(model_uri, [str(path) for path in paths])
    except DataError:
        raise
    except LeukemiaCNNError as exc:  # no such model, or not this project's image model
        raise LeukemiaCNNError(f"{exc}; or pass --no-guard to run the shift tests without a "
                               "model") from exc
    provenance = model_provenance(cfg, root, model_uri)
    # A model logged without a guard answers every row in distribution with no score.
    if OOD_SCORE_COLUMN not in answers.columns or answers[OOD_SCORE_COLUMN].isna().all():
        return BatchGuardShare(available=False, provenance=provenance, note=(
            f"guard not available in this model ({model_uri}): its answers have no "
            f"`{OOD_SCORE_COLUMN}`; the verdict rests on the shift tests alone"))
    answered = answers[answers[ERROR_COLUMN].isna()]
    flagged = int((~answered[IN_DISTRIBUTION_COLUMN].astype(bool)).sum())
    scores = answered[OOD_SCORE_COLUMN].astype(float)
    version = (f" version {answered['model_version'].iloc[0]}"
               if "model_version" in answered.columns and len(answered) else "")
    return BatchGuardShare(available=True, n_answered=len(answered), n_flagged=flagged,
                           median_score=float(scores.median()), provenance=provenance,
                           note=f"the guard of {model_uri}{version} flagged {flagged} of "
                                f"{len(answered)} images")


def output_paths(cfg: Config, root: Path, source: Path, output: str | None
                 ) -> tuple[Path, Path]:
    """Where the Markdown and HTML reports go, after the output guard (``--output -``: a
    scratch folder, for the MLflow run; the Markdown goes to stdout)."""
    name = safe_name(source.resolve().name, limit=64)
    if output == STDOUT:
        scratch = Path(tempfile.mkdtemp(prefix="leukemia-cnn-drift-"))
        return scratch / f"{name}.md", scratch / f"{name}.html"
    markdown = Path(output) if output else root / cfg.paths.reports_dir / "drift" / f"{name}.md"
    html = markdown.with_suffix(".html") if markdown.suffix == ".md" else Path(f"{markdown}.html")
    instead = (f"Pass --output with a new file name (e.g. drift.md), {STDOUT} to print the "
               f"report, or leave it out to write {cfg.paths.reports_dir}/drift/{name}.md")
    return tuple(check_output(path, kind="file", root=root, flag="--output", owner=DRIFT_OUTPUT,
                              inputs=[source], instead=instead, label=str(path))
                 for path in (markdown, html))


def log_drift_run(cfg: Config, root: Path, result: DriftResult) -> str:
    """Log the check as an MLflow run ``drift-<name>``: its settings, counts, verdict and
    the two reports as artifacts; return the run id."""
    from leukemia_cnn.tracking.failures import cleaned_on_failure
    from leukemia_cnn.tracking.runs import (
        log_artifact,
        log_metrics,
        log_params,
        start_run,
        store_errors,
    )
    from leukemia_cnn.tracking.store import run_tags, setup_mlflow

    name = safe_name(result.source.resolve().name, limit=64)
    metrics = {"n_images": result.n_images, "n_skipped": len(result.skipped),
               "n_tests": len(result.tests), "n_shifted": sum(t.shifted for t in result.tests),
               "drift": int(result.drift)}
    if result.guard.flagged_share is not None:
        metrics["flagged_share"] = result.guard.flagged_share
    with store_errors(cfg, root, "log the drift check"):
        setup_mlflow(cfg, root)
        word = ("too few images" if result.verdict.too_few
                else "drift" if result.drift else "no drift")
        tags = run_tags(cfg, root, stage="drift", drift_source=str(result.source.resolve()),
                        drift_verdict=word)
        with (start_run(run_name=f"drift-{name}", tags=tags) as run,
              cleaned_on_failure(run.info.run_id, kept="the report is written")):
            log_params({**flatten(cfg.drift, prefix="drift."),
                        "model_uri": result.model_uri or "none"})
            log_metrics(metrics)
            for path in (result.markdown, result.html):
                log_artifact(path, "drift")
            return run.info.run_id


def check(cfg: Config, root: Path, source: Path, model_uri: str | None,
          max_files: int | None = None) -> DriftResult:
    """Compare the images under ``source`` with the training data (no output written);
    ``max_files`` overrides ``drift.max_files``."""
    paths, skipped = list_source(source, max_files or cfg.drift.max_files)
    described = describe_files(paths, cfg.preprocess.image_size, cfg.preprocess.color_mode,
                               n_workers(), "new images")
    skipped.update({terminal_safe(path.relative_to(source).as_posix()):
                    terminal_safe(reason.removeprefix(f"{path}: "))
                    for path, reason in described.skipped.items()})
    if not described.paths:
        listed = "; ".join(f"{path}: {reason}" for path, reason in list(skipped.items())[:5])
        raise DataError(f"--source {source}: no readable image to compare"
                        + (f" (skipped {len(skipped)}: {listed})" if skipped else
                           " (the folder is empty)"))
    reference = load_reference(cfg, root)
    new_pca = new_pca_features(cfg, described.model_inputs, reference.pca)
    tests = shift_tests({**reference.stats, **pca_columns(reference.pca_features)},
                        {**described.stats, **pca_columns(new_pca)}, cfg.drift.alpha,
                        cfg.drift.correction)
    guard = (guard_share(cfg, root, model_uri, described.paths) if model_uri else
             BatchGuardShare(available=False, note="the model was not asked (--no-guard); the "
                                                   "verdict rests on the shift tests alone"))
    decided = verdict(tests, guard.flagged_share, cfg.drift.max_flagged_share, cfg.drift.alpha,
                      cfg.drift.correction, min_new=cfg.drift.min_images)
    return DriftResult(source=source, n_images=len(described.paths), skipped=skipped,
                       reference=reference, tests=tests, guard=guard, verdict=decided,
                       model_uri=model_uri, settings=flatten(cfg.drift, prefix="drift."))


def model_to_ask(cfg: Config, root: Path, model_uri: str | None, guard: bool) -> str | None:
    """The model whose guard answers (None with ``--no-guard``), checked before anything is
    loaded or copied: a local folder without ``MLmodel`` (``/``), a store that does not exist,
    a model that is not the project's image model (read from its ``MLmodel`` alone)."""
    from leukemia_cnn.serving.predict import (
        check_model_kind,
        check_model_uri,
        check_store,
        default_model_uri,
    )
    from leukemia_cnn.tracking.store import setup_mlflow

    if not guard:
        return None
    uri = default_model_uri(cfg) if model_uri is None else check_model_uri(model_uri)
    check_store(cfg, root)
    setup_mlflow(cfg, root, read_only=True)
    try:
        check_model_kind(uri)  # again when predict_files loads it; here before the work
    except LeukemiaCNNError as exc:
        raise LeukemiaCNNError(f"{exc}; or pass --no-guard to run the shift tests without a "
                               "model") from exc
    return uri


def run(cfg: Config, root: Path, source: str, model_uri: str | None = None,
        guard: bool = True, output: str | None = None,
        max_files: int | None = None) -> DriftResult:
    """``leukemia-cnn drift``: check, write the report, log it to MLflow, print the verdict.

    Parameters
    ----------
    source : str
        The folder of new images.
    model_uri : str, optional
        The model whose guard is asked (default: the champion).
    guard : bool
        False: do not ask any model (the shift tests alone).
    output : str, optional
        The Markdown report (default ``<reports_dir>/drift/<folder name>.md``); the HTML
        report goes beside it. ``-``: the Markdown to stdout (and the verdict to stderr).
    max_files : int, optional
        The most files ``source`` may hold (default ``drift.max_files``).
    """
    root, folder = Path(root), Path(source).expanduser()
    markdown, html = output_paths(cfg, root, folder, output)
    try:
        uri = model_to_ask(cfg, root, model_uri, guard)
        result = check(cfg, root, folder, uri, max_files)
        text = drift_report.markdown(result, cfg)
        result.markdown = write_text(markdown, text, owner=DRIFT_OUTPUT)
        result.html = write_text(html, html_page(text, f"Drift check: {folder.name}",
                                                 drift_report.COMMAND), owner=DRIFT_OUTPUT)
        try:  # the report is written; logging it is a record, never a reason to fail
            result.run_id = log_drift_run(cfg, root, result)
        except Exception as exc:  # noqa: BLE001 - a store that cannot be written (a full disk)
            if not isinstance(exc, LeukemiaCNNError) and full_disk_cause(exc) is None:
                raise
            line = str(full_disk_cause(exc) or exc).splitlines()[0]
            print(f"drift: not logged to MLflow: {terminal_safe(line)}", file=sys.stderr)
    finally:
        if output == STDOUT:  # the scratch folder of the reports MLflow logged
            shutil.rmtree(markdown.parent, ignore_errors=True)
    say = sys.stderr if output == STDOUT else sys.stdout
    if output == STDOUT:
        sys.stdout.write(text)
    headline = ("no verdict: too few images" if result.verdict.too_few
                else "DRIFT" if result.drift else "no drift")
    print(f"drift: {headline} in {result.n_images} images of {terminal_safe(folder)} against "
          "the training data", file=say)
    for reason in result.verdict.reasons:
        print(f"  - {reason}", file=say)
    for line in [*result.guard.provenance, *result.reference.notes]:
        print(f"drift: {terminal_safe(line)}", file=sys.stderr)
    if not result.guard.available:
        print(f"drift: {result.guard.note}", file=sys.stderr)
    for path, reason in list(result.skipped.items())[:20]:
        print(f"drift: skipped {path}: {reason}", file=sys.stderr)
    where = "printed above" if output == STDOUT else f"{terminal_safe(markdown)} (and .html)"
    print(f"drift: report {where}; MLflow run {result.run_id}", file=sys.stderr)
    return result
