import subprocess
import sys

from conftest import REPO_ROOT
from leukemia_cnn import cli


def test_help_lists_every_stage_and_command(capsys):
    parser = cli.build_parser()
    text = parser.format_help()
    for name in (*cli.STAGES, "data", "promote", "predict", "params", "summary"):
        assert name in text


def test_user_error_exits_1_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "leukemia_cnn.cli", "split", "--params",
                             str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "nope.yaml not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_params_check_detects_drift(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    out = tmp_path / "params.yaml"
    assert cli.main(["params", "--output", str(out), "train.epochs=3"]) == 0
    assert cli.main(["params", "--check", "--output", str(out), "train.epochs=3"]) == 0
    assert cli.main(["params", "--check", "--output", str(out)]) == 1
    assert "differs" in capsys.readouterr().err
