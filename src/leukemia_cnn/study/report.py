"""``leukemia-cnn report``: the paper's Table 1 study from the MLflow runs of the sweeps.

Reads the finished sweep runs (tag ``sweep_id``) of the project's experiment, groups them by
configuration (tag ``config_id``: every knob but the seed) and writes
``<reports_dir>/<report.name>.md`` and ``.html``: per configuration, statistics over seeds
beside the paper's numbers; the paper's claims tested across seeds; the collapsed runs; the
paper's Figs. 3 and 2 of the best run. Nothing is recomputed from data: every number comes
from the store.

The pieces: :mod:`.sweep_runs` (the runs), :mod:`.configurations` (the table),
:mod:`.statistics` and :mod:`.claims` (the tests), :mod:`.figures`, :mod:`.report_page` (the
Markdown and HTML text); this module guards the outputs and writes them.
"""

from __future__ import annotations

from pathlib import Path

from leukemia_cnn.config import check_section
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.fileio import check_output, mark_output, shown, swap_folder, write_text
from leukemia_cnn.markdown import html_page
from leukemia_cnn.study.claims import claim_statements
from leukemia_cnn.study.configurations import configurations
from leukemia_cnn.study.figures import figures
from leukemia_cnn.study.paper import CLAIMS, PROJECT_CLAIMS
from leukemia_cnn.study.report_page import report_markdown
from leukemia_cnn.study.sweep_runs import fetch_runs

REPORT_OUTPUT = "report"  # the marker of a report's figures folder


def build(cfg: Config, root: Path) -> dict:
    """Read the runs, write the Markdown and HTML report and figures; return what was written.

    Returns
    -------
    dict
        ``markdown``, ``html`` (paths), ``table`` (the per-configuration frame), ``claims``
        (statements), ``n_runs``.
    """
    # The schema refuses a name that is not a file stem: it becomes <reports_dir>/<name>_files,
    # which is emptied first. `--name` and `--sweep-id` are set after loading: checked here.
    settings = check_section("report", cfg.report)
    confidence, name = settings.confidence, settings.name
    markdown_file, html_file, assets = check_report_outputs(root / cfg.paths.reports_dir, name,
                                                            root)
    runs = fetch_runs(cfg, root)
    table = configurations(runs, confidence)
    claims = claim_statements(runs, table, CLAIMS, 1 - confidence)
    # A project claim is left out when its configuration was not run, said when it is ambiguous.
    project_claims = [c for c in claim_statements(runs, table, PROJECT_CLAIMS, 1 - confidence)
                      if not c.get("missing")]
    # Figures go to a staging folder swapped in at the end: an earlier report stays whole
    # until the new one is complete.
    with staging_folder(assets) as (staging, token):
        staging.mkdir(parents=True)
        made = figures(runs, table, staging, cfg.report.sample_images)
        for fig in made:  # where they will be once swapped in
            fig["curves"] = assets / fig["curves"].name
            if fig["samples"] is not None:
                fig["samples"] = assets / fig["samples"].name
        markdown = report_markdown(cfg.mlflow.experiment_name, runs, table, confidence, claims,
                                   project_claims, made, markdown_file.parent)
        mark_output(staging, REPORT_OUTPUT)
        swap_folder(staging, assets, token, REPORT_OUTPUT)
        write_text(markdown_file, markdown, owner=REPORT_OUTPUT)
        write_text(html_file, html_page(markdown, "Table 1", "leukemia-cnn report"),
                   owner=REPORT_OUTPUT)
    return {"markdown": markdown_file, "html": html_file, "table": table,
            "claims": [c["text"] for c in claims + project_claims], "n_runs": len(runs),
            "figures": [str(f["curves"]) for f in made]}


def check_report_outputs(folder: Path, name: str, root: Path, owner: str = REPORT_OUTPUT,
                         instead: str | None = None, overwrite: bool = False
                         ) -> tuple[Path, Path, Path]:
    """The guard of a report's outputs ``NAME.md``, ``NAME.html`` and ``NAME_files/`` in
    ``folder``: each new or an earlier output of ``owner``, or with ``overwrite`` any (see
    :func:`leukemia_cnn.fileio.check_output`); ``instead`` is the way out a refusal names."""
    instead = instead or (f"Pass --name with another name (e.g. --name {name}2) to write a new "
                          "report beside it")
    return tuple(
        check_output(path, kind=kind, root=root, flag="--name", owner=owner,
                     declared=path if overwrite else None, instead=instead,
                     label=f"{name} ({shown(path, root)})")
        for path, kind in ((folder / f"{name}.md", "file"), (folder / f"{name}.html", "file"),
                           (folder / f"{name}_files", "folder")))


def run(cfg: Config, root: Path) -> dict:
    """``leukemia-cnn report``: write the report and print where it is and the claims."""
    result = build(cfg, root)
    print(f"report: {result['n_runs']} runs, {len(result['table'])} configurations -> "
          f"{result['markdown']} and {result['html']}")
    for text in result["claims"]:
        print(f"  - {text.replace('**', '')}")
    return result
