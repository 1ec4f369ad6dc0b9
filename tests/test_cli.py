import os
import subprocess
import sys

from helpers import REPO_ROOT
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.cli.parser import STAGES, build_parser
from leukemia_cnn.errors import EXIT_BAD_INPUT, EXIT_INTERNAL


def test_help_lists_every_stage_and_command(capsys):
    parser = build_parser()
    text = parser.format_help()
    for name in (*STAGES, "data", "promote", "predict", "params", "summary"):
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
    assert cli_main(["params", "--output", str(out), "train.epochs=3"]) == 0
    assert cli_main(["params", "--check", "--output", str(out), "train.epochs=3"]) == 0
    assert cli_main(["params", "--check", "--output", str(out)]) == 1
    assert "differs" in capsys.readouterr().err


def test_sweep_and_report_are_wired(capfd):
    text = build_parser().format_help()
    assert "sweep" in text and "report" in text and "--by config" in text
    # `leukemia-cnn sweep` hands its whole command line to Hydra.
    assert cli_main(["sweep", "--help"]) == 0
    out = capfd.readouterr().out
    assert "sweep is powered by Hydra" in out
    assert "table1_e15_b64_cce" in out  # the experiment group, listed by Hydra


def test_a_sweep_the_file_system_refuses_is_one_line(tmp_path, monkeypatch, capsys):
    """`leukemia-cnn sweep` goes through the same error handling as every other command."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the user's shell is in a folder that no longer exists
    assert cli_main(["sweep", "--help"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("leukemia-cnn sweep: error: [Errno 2]") and err.count("\n") == 1


def test_promote_rejects_an_unknown_mode(capsys):
    import pytest

    with pytest.raises(SystemExit) as exited:
        cli_main(["promote", "--by", "test_accuracy"])
    assert exited.value.code == 2
    assert "invalid choice: 'test_accuracy'" in capsys.readouterr().err


# (command line, exit status, what the one error line says), run in the guard project; the
# in-process guard tests (tests/test_fileio.py) cover every command and path option
ERROR_PATHS = [
    (["report", "--sweep-id", "nope"], 1, "no finished, evaluated runs of sweeps ['nope']"),
    (["predict", "inbox/cell.jpg", "--output", "."], 1, "--output .: is the project root"),
    (["predict", "inbox/cell.jpg", "--output", "notes"], 1, "is a folder"),
    (["predict"], 2, "the following arguments are required: images"),
    (["data", "get", "--source", "inbox/tree", "--output", "data", "--no-dvc-add"], 1,
     "--output data: holds files git tracks (e.g. data/.gitignore)"),
    (["split", "--params", "conf"], 1, "--params conf is a folder"),
]


def test_error_paths_print_one_line_and_no_traceback(guard_project):
    """Each command's error path, as a user meets it in a shell: the exit status documented in
    `leukemia-cnn --help`, one error line (plus at most a hint), never a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    running = [(argv, code, says, subprocess.Popen(
        [sys.executable, "-m", "leukemia_cnn.cli", *argv], cwd=guard_project, env=env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for argv, code, says in ERROR_PATHS]
    for argv, code, says, process in running:
        _, err = process.communicate(timeout=300)
        lines = [line for line in err.splitlines()
                 if line.startswith(("leukemia-cnn", "hint:"))]
        assert process.returncode == code, (argv, err[-2000:])
        assert "Traceback" not in err, argv
        assert says in lines[0] and lines[0].startswith("leukemia-cnn"), (argv, err[-2000:])
        assert len(lines) <= 2, (argv, lines)
    assert "exit status:" in build_parser().format_help()


def test_a_bug_is_one_line_with_exit_3(monkeypatch, capsys, tmp_path):
    """The last line of defence: an unexpected exception (a bug) is not a traceback either."""
    from leukemia_cnn.cli import summary

    def broken(cfg, root):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(summary, "run", broken)
    monkeypatch.chdir(REPO_ROOT)
    assert cli_main(["summary"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("leukemia-cnn summary: internal error: TypeError: unsupported operand")
    assert "LEUKEMIA_CNN_TRACEBACK=1" in err and "Traceback" not in err
