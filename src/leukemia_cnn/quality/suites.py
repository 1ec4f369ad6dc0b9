"""Great Expectations plumbing shared by the raw-data, split and feature suites: every suite's
results become :class:`ExpectationOutcome` records (:func:`run_suite`), so the JSON and Markdown
reports and the failure messages of all three stages read the same way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leukemia_cnn.markdown import escape as md_escape
from leukemia_cnn.markdown import pipe_table

# Offending files listed per failed check in the error message (the reports list them all).
MAX_LISTED = 20


@dataclass
class ExpectationOutcome:
    """One Great Expectations check and what it found.

    ``offending`` holds manifest paths for per-file checks and class names for per-class
    checks; ``offending_values`` holds the unexpected column value of each offending file.
    ``kind`` says what is checked (``file``, ``class_set``, ``class_present``, ``class_count``,
    ``class_share``, ``duplicate``, ``label_conflict``; the split suite adds ``leak`` and
    ``split_size``, the feature suite ``rows``); a failed check of ``severity``
    ``warning`` is reported but does not fail the stage.
    """

    name: str
    description: str
    column: str | None
    success: bool
    offending: list[str] = field(default_factory=list)
    offending_values: list[Any] = field(default_factory=list)
    observed: Any = None
    error: str = ""
    kind: str = "file"
    severity: str = "critical"


@dataclass
class ValidationResult:
    """The outcome of :func:`validate`: overall success and every check."""

    success: bool
    expectations: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        """Failed checks that fail the stage."""
        return [outcome for outcome in self.expectations
                if not outcome.success and outcome.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed checks that are only reported (e.g. exact duplicates)."""
        return [outcome for outcome in self.expectations
                if not outcome.success and outcome.severity != "critical"]


def plain(value: Any) -> Any:
    """numpy/pandas scalars as JSON-friendly Python values."""
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _outcome(gx_result, index_column: str) -> ExpectationOutcome:
    config = gx_result.expectation_config
    column = config.kwargs.get("column") or config.kwargs.get("column_A")
    result = gx_result.result or {}
    severity = getattr(config, "severity", None)
    outcome = ExpectationOutcome(name=config.type, description=config.meta.get("description", ""),
                                 column=column, success=bool(gx_result.success),
                                 kind=config.meta.get("kind", "file"),
                                 severity=str(getattr(severity, "value", severity or "critical")))
    exception = gx_result.exception_info or {}
    if exception.get("raised_exception"):
        outcome.error = str(exception.get("exception_message") or "the check raised an exception")
        outcome.success = False
        return outcome
    if "unexpected_index_list" in result:  # a per-row check: name the offending files
        offenders = result["unexpected_index_list"] or []
        outcome.offending = [str(item[index_column]) for item in offenders]
        outcome.offending_values = [plain(item.get(column)) for item in offenders]
        outcome.observed = int(result.get("unexpected_count", len(offenders)))
    else:  # a table-level check about one subject (a split, a split/class pair)
        outcome.observed = plain(result.get("observed_value"))
        subject = config.meta.get("subject", "")
        outcome.offending = [] if outcome.success or not subject else [str(subject)]
    return outcome


def run_suite(frame: pd.DataFrame, build_suite: Callable[[Callable[..., None]], None], name: str,
              index_column: str = "path") -> ValidationResult:
    """Validate ``frame`` with the checks ``build_suite(add)`` adds (GX, COMPLETE results).

    ``add(expectation, description, kind="file", subject="", where=None, **kwargs)`` adds the
    GX expectation class named ``expectation`` (e.g. ``"ExpectColumnValuesToBeInSet"``) with
    ``kwargs``, and its description, kind and subject in ``meta``; ``where=(column, value)``
    checks only the rows where ``column == value``. The suite is built once the ephemeral GX
    context exists (GX requires one). Offending rows are named by their ``index_column``
    value. Every failed check of severity ``critical`` (GX's default) fails.
    """
    # GX logs its own bookkeeping at INFO (hundreds of lines when a caller logs INFO).
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = gx.ExpectationSuite(name=name)

    def add(expectation: str, description: str, kind: str = "file", subject: str = "",
            where: tuple[str, str] | None = None, **kwargs: Any) -> None:
        if where is not None:
            kwargs["row_condition"] = Column(where[0]) == where[1]
        suite.add_expectation(getattr(gxe, expectation)(
            meta={"description": description, "kind": kind, "subject": subject}, **kwargs))

    build_suite(add)
    batch_definition = (context.data_sources.add_pandas(name).add_dataframe_asset(f"{name}_table")
                        .add_batch_definition_whole_dataframe(f"{name}_whole"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=context.suites.add(suite)))
    gx_result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]})
    outcomes = [_outcome(item, index_column) for item in gx_result.results]
    return ValidationResult(success=all(o.success or o.severity != "critical" for o in outcomes),
                            expectations=outcomes)


def merge(*results: ValidationResult) -> ValidationResult:
    """One result holding the checks of several suites (e.g. a per-row and a one-row table)."""
    outcomes = [outcome for result in results for outcome in result.expectations]
    return ValidationResult(success=all(r.success for r in results), expectations=outcomes)


def failure_message(subject: str, result: ValidationResult,
                    offender_lines: Callable[[ExpectationOutcome], list[str]], advice: str,
                    report: str | None = None) -> str:
    """A stage's DataError message: ``<subject> failed N of M checks (full report: <report>):``,
    each failed check (description and GX expectation) with up to :data:`MAX_LISTED` of its
    offenders, then ``advice``."""
    where = f" (full report: {report})" if report else ""
    lines = [f"{subject} failed {len(result.failed)} of {len(result.expectations)} checks{where}:"]
    for outcome in result.failed:
        lines.append(f"  - {outcome.description} ({outcome.name}):")
        if outcome.error:
            lines.append(f"      the check itself failed: {outcome.error}")
        offenders = offender_lines(outcome)
        lines += [f"      {line}" for line in offenders[:MAX_LISTED]]
        if len(offenders) > MAX_LISTED:
            lines.append(f"      ... and {len(offenders) - MAX_LISTED} more")
    return "\n".join([*lines, advice])


def report_page(title: str, result: ValidationResult, summary: str,
                found: Callable[[ExpectationOutcome], str],
                offender_lines: Callable[[ExpectationOutcome], list[str]],
                sections: list[str]) -> str:
    """A stage's Markdown report: ``# <title>: PASSED|FAILED``, the ``summary`` paragraph, the
    checks table, each failed check's offending files, then the stage's own ``sections`` lines."""
    rows = [(index, "pass" if outcome.success else "**FAIL**" if outcome.severity == "critical"
             else "warn", outcome.description, outcome.column or "",
             "error" if outcome.error else found(outcome), f"`{outcome.name}`")
            for index, outcome in enumerate(result.expectations, 1)]
    lines = [f"# {title}: {'PASSED' if result.success else 'FAILED'}", "", summary, "",
             "## Checks (Great Expectations)", "",
             pipe_table(rows, ("#", "result", "check", "column", "found", "expectation"))]
    if result.failed:
        lines += ["", "## Offending files", ""]
        for outcome in result.failed:
            lines += [f"### {md_escape(outcome.description)} (`{outcome.name}`)", ""]
            if outcome.error:
                lines.append(f"- the check itself failed: {md_escape(outcome.error)}")
            lines += [f"- `{md_escape(line)}`" for line in offender_lines(outcome)]
            lines.append("")
    return "\n".join([*lines, *sections]).rstrip() + "\n"
