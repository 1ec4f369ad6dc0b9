import subprocess
import sys

from helpers import REPO_ROOT
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


def test_sweep_and_report_are_wired(capfd):
    text = cli.build_parser().format_help()
    assert "sweep" in text and "report" in text and "--by config" in text
    # `leukemia-cnn sweep` hands its whole command line to Hydra.
    assert cli.main(["sweep", "--help"]) == 0
    out = capfd.readouterr().out
    assert "sweep is powered by Hydra" in out
    assert "table1_e15_b64_cce" in out  # the experiment group, listed by Hydra


def test_promote_rejects_an_unknown_mode(capsys):
    import pytest

    with pytest.raises(SystemExit) as exited:
        cli.main(["promote", "--by", "test_accuracy"])
    assert exited.value.code == 2
    assert "invalid choice: 'test_accuracy'" in capsys.readouterr().err
