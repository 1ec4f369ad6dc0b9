"""The reports' tables and HTML pages (leukemia_cnn.markdown): what a reader of a report
sees is the text the report put in each cell, and nothing a cell holds becomes markup."""

from helpers import table_rows
from leukemia_cnn.markdown import html_page, pipe_table


def test_a_pipe_table_shows_each_cell_as_given_and_escapes_pipes():
    text = pipe_table([("Pre|B", "0.500", "1,000"), ("two\nlines", 7, "")],
                      ("class", "share", "n"), align=("left", "right", "right"))
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1] == "|:---|---:|---:|"
    assert table_rows(text) == [["class", "share", "n"], ["Pre\\|B", "0.500", "1,000"],
                                ["two lines", "7", ""]]


def test_an_html_page_renders_tables_and_never_raw_html():
    markdown = "# Report\n\n" + pipe_table([("<script>x</script>", "1")], ("a", "b"))
    page = html_page(markdown, "Drift <1>", "leukemia-cnn drift")
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</body></html>\n")
    assert '<meta name="generator" content="leukemia-cnn drift">' in page
    assert "<title>Drift &lt;1&gt;</title>" in page and "<h1>Report</h1>" in page
    assert "<table>" in page and "<script>" not in page and "&lt;script&gt;" in page


def test_an_unaligned_table_is_not_padded():
    """The model card's tables count against MLflow's description limit."""
    text = pipe_table([("Benign", "0.900"), ("Pre", "1.000")], ("class", "val precision"))
    assert text.splitlines() == ["| class | val precision |", "|---|---|", "| Benign | 0.900 |",
                                 "| Pre | 1.000 |"]
