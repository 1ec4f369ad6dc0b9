"""The Great Expectations plumbing all three validation stages share, on a table the test
makes: what a failed check names, and how the reports and error messages list it."""

import pandas as pd
import pytest

from helpers import table_rows
from leukemia_cnn.quality import suites
from leukemia_cnn.quality.suites import ExpectationOutcome, ValidationResult


def build_suite(add):
    add("ExpectColumnValuesToBeBetween", "sizes are 1 to 100 bytes",
        column="size_bytes", min_value=1, max_value=100)
    add("ExpectColumnValuesToNotBeNull", "every file has a class", column="class")
    add("ExpectTableRowCountToEqual", "the train split has 4 files",
        kind="split_size", subject="train", value=4)


@pytest.fixture(scope="module")
def result():
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "size_bytes": [10, 500, 0],
                          "class": ["Benign", "Early", "Pre"]})
    return suites.run_suite(frame, build_suite, "tiny")


def test_a_per_row_check_names_the_offending_files_and_their_values(result):
    sizes, classes, _ = result.expectations
    assert not result.success and [o.success for o in result.expectations] == [False, True, False]
    assert sizes.description == "sizes are 1 to 100 bytes" and sizes.column == "size_bytes"
    assert sizes.name == "expect_column_values_to_be_between" and sizes.kind == "file"
    assert sizes.offending == ["b.jpg", "c.jpg"] and sizes.offending_values == [500, 0]
    assert sizes.observed == 2
    assert classes.offending == [] and classes.observed == 0


def test_a_table_check_names_its_subject_and_what_it_observed(result):
    count = result.expectations[2]
    assert count.kind == "split_size" and count.offending == ["train"] and count.observed == 3


def test_warnings_are_reported_but_do_not_fail(result):
    warning = ExpectationOutcome("expect_x", "exact duplicates", "sha256", False,
                                 offending=["d.jpg"], kind="duplicate", severity="warning")
    merged = suites.merge(result, ValidationResult(True, [warning]))
    assert len(merged.expectations) == 4 and not merged.success
    assert [o.description for o in merged.failed] == ["sizes are 1 to 100 bytes",
                                                      "the train split has 4 files"]
    assert [o.description for o in merged.warnings] == ["exact duplicates"]


def test_markdown_lists_every_check_and_the_offenders_of_each_failure(result):
    lines = suites.report_page("Tiny", result, "", found=lambda o: str(o.observed),
                               offender_lines=lambda o: o.offending, sections=[]).splitlines()
    table = table_rows("\n".join(lines))
    assert table[0] == ["#", "result", "check", "column", "found", "expectation"]
    assert [row[1] for row in table[1:]] == ["**FAIL**", "pass", "**FAIL**"]
    assert "## Offending files" in lines and "- `b.jpg`" in lines and "- `train`" in lines
    assert "### sizes are 1 to 100 bytes (`expect_column_values_to_be_between`)" in lines
    assert suites.md_escape("a|b\nc") == "a\\|b c"


def test_the_failure_message_caps_the_listed_offenders():
    many = ExpectationOutcome("expect_y", "decodable", "decodable", False,
                              offending=[f"{i}.jpg" for i in range(suites.MAX_LISTED + 5)])
    broken = ExpectationOutcome("expect_z", "a check", None, False, error="boom")
    message = suites.failure_message("raw data", ValidationResult(False, [many, broken]),
                                     offender_lines=lambda o: o.offending, advice="Fix them.")
    header, *lines, advice = message.splitlines()
    assert header == "raw data failed 2 of 2 checks:" and advice == "Fix them."
    assert lines[0] == "  - decodable (expect_y):"
    assert lines[1:suites.MAX_LISTED + 1] == [f"      {i}.jpg" for i in range(suites.MAX_LISTED)]
    assert "      ... and 5 more" in lines
    assert lines[-2:] == ["  - a check (expect_z):", "      the check itself failed: boom"]


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (float("nan"), None), (pd.NA, None), ("text", "text"), ([1, 2], [1, 2]),
])
def test_plain_gives_json_friendly_values(value, expected):
    import numpy as np

    assert suites.plain(value) == expected
    assert type(suites.plain(np.int64(3))) is int and type(suites.plain(np.float32(0.5))) is float
