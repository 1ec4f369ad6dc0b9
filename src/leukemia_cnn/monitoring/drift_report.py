"""The report of ``leukemia-cnn drift``: Markdown, and the same as a standalone HTML page
(:func:`leukemia_cnn.markdown.html_page`), both recognisable as this command's output by their
first bytes (the only existing files ``--output`` may replace)."""

from __future__ import annotations

from leukemia_cnn.config_schema import Config
from leukemia_cnn.errors import EXIT_OK, EXIT_TOO_FEW, EXIT_UNFAMILIAR
from leukemia_cnn.features.imagestats import PCA_PREFIX
from leukemia_cnn.markdown import escape, pipe_table
from leukemia_cnn.monitoring.kstests import CORRECTIONS, ShiftTest

TITLE = "# Drift check"
COMMAND = "leukemia-cnn drift"
MAX_ROWS = 20  # of the HOG + PCA table and of the skipped files


def exit_status(verdict) -> int:
    """The exit status of a :class:`leukemia_cnn.monitoring.kstests.Verdict` (drift is the
    status of unfamiliar images)."""
    if verdict.too_few:
        return EXIT_TOO_FEW
    return EXIT_UNFAMILIAR if verdict.drift else EXIT_OK


def number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


def test_rows(tests: list[ShiftTest]) -> list[str]:
    rows = [(t.feature, number(t.reference_median), number(t.new_median), f"{t.statistic:.3f}",
             f"{t.p_value:.2g}", f"{t.p_adjusted:.2g}", "**yes**" if t.shifted else "no")
            for t in tests]
    align = ("left", *["right"] * 5, "left")
    return pipe_table(rows, ("feature", "train median", "new median", "KS statistic", "p",
                             "adjusted p", "shifted"), align).splitlines()


def markdown(result, cfg: Config) -> str:
    """The report of a :class:`leukemia_cnn.monitoring.drift.DriftResult`."""
    reference = result.reference
    correction = CORRECTIONS[cfg.drift.correction]
    inputs = [t for t in result.tests if not t.feature.startswith(PCA_PREFIX)]
    components = [t for t in result.tests if t.feature.startswith(PCA_PREFIX)]
    word = ("too few images to judge" if result.verdict.too_few
            else "drift" if result.drift else "no drift")
    lines = [f"{TITLE}: {escape(result.source.name)}", "",
             f"**Verdict: {word}** (exit status {exit_status(result.verdict)})", ""]
    lines += [f"- {reason}" for reason in result.verdict.reasons]
    lines += ["", "## What was compared", "",
              f"- New images: {result.n_images} read from `{result.source}`"
              f"{f', {len(result.skipped)} skipped (listed below)' if result.skipped else ''}.",
              f"- Training images: input features of {reference.n_measured} train images in "
              f"`{cfg.paths.raw_dir}`; HOG + PCA features of the {len(reference.pca_features)} "
              f"val images (`{cfg.paths.features_dir}/val.npz`: reduced by the features "
              "stage's PCA without being fitted on, like the new images).",
              f"- Preprocessing as in training: {cfg.preprocess.color_mode}, "
              f"{cfg.preprocess.image_size}x{cfg.preprocess.image_size}.",
              "- Settings: " + ", ".join(f"`{k}` = {'null' if v is None else v}"
                                         for k, v in result.settings.items())
              + "."]
    lines += [f"- Note: {note}." for note in reference.notes]
    lines += ["", "## The model's guard", "", f"- {result.guard.note}."]
    lines += [f"- {line}." for line in result.guard.provenance]
    if result.guard.median_score is not None:
        lines.append(f"- Median `ood_score` (higher = more unusual): "
                     f"{result.guard.median_score:.3g}.")
    lines += ["", "## Shift tests", "",
              f"One two-sample Kolmogorov-Smirnov test per feature (scipy.stats.ks_2samp), "
              f"{len(result.tests)} tests in all. The p-values are adjusted for the number of "
              f"tests by {correction}; a feature is shifted when its adjusted p < "
              f"{cfg.drift.alpha:g}. The KS statistic is the largest gap between the two "
              "cumulative distributions (0: identical, 1: disjoint).", "",
              "### Input features", "",
              "Size as stored; colour, stain (H&E colour deconvolution), intensity and focus "
              "(variance of the Laplacian) at the model's input size.", ""]
    lines += test_rows(inputs)
    shifted = [t for t in components if t.shifted]
    lines += ["", "### HOG + PCA components", "",
              f"{len(shifted)} of {len(components)} components shifted. The "
              f"{min(MAX_ROWS, len(components))} with the smallest adjusted p:", ""]
    lines += test_rows(sorted(components, key=lambda t: t.p_adjusted)[:MAX_ROWS])
    if result.skipped:
        lines += ["", f"## Skipped files ({len(result.skipped)})", ""]
        lines += [f"- `{path}`: {reason}" for path, reason in
                  list(result.skipped.items())[:MAX_ROWS]]
        if len(result.skipped) > MAX_ROWS:
            lines.append(f"- ... and {len(result.skipped) - MAX_ROWS} more")
    return "\n".join(lines) + "\n"
