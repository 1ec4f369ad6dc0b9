"""The reports' Markdown: pipe tables from data frames (pandas + tabulate), and a page as
standalone HTML (markdown-it-py: CommonMark plus tables, raw HTML off so that a label from a
run or a file name cannot inject markup)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pandas as pd

STYLE = ("<style>body{font-family:sans-serif;max-width:1400px;margin:auto}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
         "padding:4px 6px}img{max-width:900px}</style>")


def escape(text: object) -> str:
    """``text`` for a table cell or a heading: pipes escaped, on one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def pipe_table(rows: pd.DataFrame | Sequence[Sequence[object]], columns: Sequence[str] = (),
               align: Sequence[str] | None = None) -> str:
    """A Markdown pipe table of ``rows`` (a frame, or rows under ``columns``; no index).

    Every cell is shown as its text (``str``), escaped. Cells are not padded unless ``align``
    gives ``left``/``right`` per column: a model card must fit MLflow's 5,000-character
    description.
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=columns)
    cells = frame.map(escape).rename(columns=escape)
    header, rule, *body = cells.to_markdown(index=False, disable_numparse=True, stralign=None,
                                            colalign=align).split("\n")
    # tabulate draws the rule as wide as each column; "---" says the same in fewer characters
    return "\n".join([header, re.sub("-+", "---", rule), *body])


def html_page(markdown: str, title: str, generator: str) -> str:
    """``markdown`` as a standalone HTML page, named by ``generator`` (the command that wrote it,
    in a ``<meta name="generator">``)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f'<meta name="generator" content="{html.escape(generator)}">'
            f"<title>{html.escape(title)}</title>{STYLE}</head><body>\n{body}</body></html>\n")
