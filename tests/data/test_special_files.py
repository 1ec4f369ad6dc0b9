"""Special files (FIFOs) and file names that are not UTF-8 in a `data get` source or in
data/raw are skipped with a reason, never opened (a FIFO blocks its reader) and never a crash;
a SIGTERM during `data get` leaves no half-written tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO_ROOT
from helpers.datasets import class_tree, earlier_data_output, tree_digest
from leukemia_cnn.config import load_config
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import OUTPUT_RECORD

BAD_NAME = os.fsdecode(b"Pro/cell-\xff\xfe.jpg")  # Latin-1 bytes: not UTF-8


def isolated(code: str, timeout: float = 120) -> dict:
    """Run ``code`` (which prints one JSON line) in a child process: a FIFO opened by mistake
    blocks it (even from a worker thread), and the test fails instead of hanging."""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, cwd=REPO_ROOT)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_data_get_skips_a_fifo_and_a_non_utf8_name_with_reasons(tmp_path):
    source = class_tree(tmp_path / "inbox")
    os.mkfifo(source / "Pro" / "p.jpg")
    (source / BAD_NAME).write_bytes((source / "Pro" / "WBC-Pro-000.jpg").read_bytes())
    out = tmp_path / "data" / "raw"
    result = isolated(
        "import json; from pathlib import Path; from leukemia_cnn.config import load_config; "
        "from leukemia_cnn.data.ingest import get as ingest; "
        f"r = ingest.ingest(load_config(['data=kaggle']), Path({str(source)!r}), Path({str(out)!r}), "
        "progress=False); "
        "print(json.dumps({'skipped': {s.path: s.reason for s in r.skipped}, "
        "'counts': r.counts_per_class}))")
    reasons = result["skipped"]
    assert "FIFO" in reasons["Pro/p.jpg"] and "not a regular file" in reasons["Pro/p.jpg"]
    assert "not valid UTF-8" in reasons["Pro/cell-\\xff\\xfe.jpg"]
    assert result["counts"]["Pro"] == 6
    assert sorted(p.name for p in (out / "Pro").iterdir()) == \
        [f"WBC-Pro-{n:03d}.jpg" for n in range(6)]


def test_validate_raw_skips_a_fifo_and_a_non_utf8_name_and_writes_its_reports(tmp_path):
    raw = class_tree(tmp_path / "data" / "raw", per_class=5)
    os.mkfifo(raw / "Pro" / "p.jpg")
    (raw / BAD_NAME).write_bytes(b"not read")
    summary = isolated(
        "import json; from pathlib import Path; from leukemia_cnn.config import load_config; "
        "from leukemia_cnn.quality import validate_raw; "
        f"print(json.dumps(validate_raw.run(load_config(), Path({str(tmp_path)!r})), default=str))")
    assert summary["success"] and summary["n_images"] == 20 and summary["n_skipped"] == 2
    report = (tmp_path / "reports" / "validate_raw.md").read_text()
    assert "Pro/p.jpg" in report and "FIFO" in report and "xff" in report
    assert "p.jpg" not in (tmp_path / "data" / "manifest.csv").read_text()


def test_explain_says_a_fifo_is_a_fifo(tmp_path):
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    from leukemia_cnn.data.filekinds import describe_missing

    assert describe_missing(fifo) == f"{fifo}: a FIFO (named pipe), not an image file"
    assert describe_missing(tmp_path) == f"{tmp_path}: a folder, not an image file"
    assert describe_missing(tmp_path / "gone.jpg").endswith("gone.jpg: no such file")
    from leukemia_cnn.serving import explain

    with pytest.raises(DataError, match="FIFO"):
        explain.run(load_config(root=REPO_ROOT), tmp_path, [str(fifo)], output=str(tmp_path / "o"))


def test_sigterm_during_data_get_leaves_no_half_written_tree(tmp_path):
    source = class_tree(tmp_path / "inbox", per_class=150)  # the suite runs for seconds
    out = earlier_data_output(class_tree(tmp_path / "data" / "raw", prefix="OLD", seed=7))
    before = tree_digest(out)
    # The raw-data suite as `data get` runs it on the staged tree (it takes seconds: long
    # enough to be signalled while the staging folder exists).
    script = ("from pathlib import Path; from leukemia_cnn.config import load_config; "
              "from leukemia_cnn.data.ingest import get as ingest; "
              "from leukemia_cnn.quality.validate_raw import check_staged; "
              f"ingest.ingest(load_config(['data=kaggle'], root=Path({str(REPO_ROOT)!r})), "
              f"Path({str(source)!r}), Path({str(out)!r}), validate=check_staged, "
              "progress=False)")
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while not list(out.parent.glob("raw.tmp-*")):
        assert child.poll() is None and time.monotonic() - started < 120, "no staging folder"
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert "KeyboardInterrupt" in err  # raised by the handler, so the cleanup ran
    assert sorted(p.name for p in out.parent.iterdir()) == [OUTPUT_RECORD, "raw"]
    assert tree_digest(out) == before
