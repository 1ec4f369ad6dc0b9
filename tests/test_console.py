"""What reaches the terminal: native library log lines are dropped, everything else passes."""

import os
import subprocess
import sys

import pytest

from leukemia_cnn.console import drop_native_log_lines, text_table

ABSL_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (b"I0000 00:00:1796185475.312000    8504 port.cc:153] oneDNN custom operations are on. "
          b"You may see slightly different numerical results\n")
NODEDEF = (b"E0000 00:00:1796185574.542433   10606 node_def_util.cc:682] NodeDef mentions attribute "
           b"use_unbounded_threadpool which is not in the op definition\n")


def test_native_lines_dropped_and_ours_kept():
    data = ABSL_BANNER + b"train: 226 train / 49 val images\n" + ONEDNN + NODEDEF + b"Epoch 1/2\n"
    kept, pending = drop_native_log_lines(data)
    assert kept == b"train: 226 train / 49 val images\nEpoch 1/2\n"
    assert pending == b""


def test_progress_bar_redraws_pass_at_once():
    # tqdm redraws with carriage returns and no newline: the user must see it now, not later.
    kept, pending = drop_native_log_lines(b"\rsynth:  10%|#         | 32/324")
    assert kept == b"\rsynth:  10%|#         | 32/324" and pending == b""


def test_a_native_line_split_across_writes_is_still_dropped():
    kept1, pending = drop_native_log_lines(ONEDNN[:3])
    assert kept1 == b"" and pending == ONEDNN[:3]
    kept2, pending = drop_native_log_lines(ONEDNN[3:] + b"Epoch 1/2\n", pending)
    assert kept2 == b"Epoch 1/2\n" and pending == b""


def test_python_tracebacks_and_warnings_pass():
    text = (b"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n"
            b"WARNING mlflow: something a user should see\n")
    assert drop_native_log_lines(text) == (text, b"")


SCRIPT = """
import os, sys
from leukemia_cnn.console import quiet_libraries
quiet_libraries()
os.write(2, {noise!r})
print("ours", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_command_filters_its_own_stderr(verbose):
    env = {k: v for k, v in os.environ.items() if k != "LEUKEMIA_CNN_VERBOSE"}
    if verbose:
        env["LEUKEMIA_CNN_VERBOSE"] = "1"
    script = SCRIPT.format(noise=ABSL_BANNER + ONEDNN + NODEDEF)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env,
                          timeout=60, check=True)
    assert b"ours\n" in done.stderr
    assert (b"oneDNN" in done.stderr) is verbose
    assert (b"NodeDef" in done.stderr) is verbose
    assert (b"absl::InitializeLog" in done.stderr) is verbose


def test_importing_tensorflow_under_the_command_is_quiet():
    env = {k: v for k, v in os.environ.items() if k != "LEUKEMIA_CNN_VERBOSE"}
    script = ("from leukemia_cnn.console import quiet_libraries\nquiet_libraries()\n"
              "import tensorflow as tf\nimport leukemia_cnn.serving.pyfunc\n"
              "print(tf.constant(2.0).numpy() * 2)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env,
                          timeout=120, check=True)
    assert done.stdout.strip() == b"4.0"
    assert done.stderr == b"", done.stderr.decode()[:500]


def test_a_text_table_aligns_columns_and_shows_cells_as_given():
    """The tables promote, summary and sweep print: one line per row, columns aligned, a cell
    that looks like rich markup (an error message, a run name) printed as it is."""
    text = text_table(("experiment", "seed", "run_id / error"),
                      [("improved", 1, "abc123"), ("table1_e15_b64_cce", "", "[bold]x[/] [Errno 28]")],
                      right=("seed",), indent="  ")
    lines = text.splitlines()
    assert lines == ["  experiment          seed  run_id / error",
                     "  improved               1  abc123",
                     "  table1_e15_b64_cce        [bold]x[/] [Errno 28]"]
    assert "\x1b" not in text  # no colour codes, whatever the terminal


HELD_STDERR = """
import os, subprocess, sys
from leukemia_cnn import console
pump = console.StderrPump()
# a worker that outlives the command and holds fd 2 (joblib's pool, a DVC helper)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
os.write(2, b"ours before exit\\n")
pump.stop()
print("pump alive after stop:", pump.thread.is_alive(), flush=True)
child.kill()
"""


def test_the_stderr_pump_stops_at_exit_while_a_child_holds_stderr():
    """issue 31: the pump joined its thread until the pipe's end of file, 2 s at every exit of
    `drift` (a Ctrl-C there printed `Exception ignored in atexit callback`)."""
    done = subprocess.run([sys.executable, "-c", HELD_STDERR], capture_output=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "LEUKEMIA_CNN_VERBOSE"})
    assert b"pump alive after stop: False" in done.stdout, done.stdout + done.stderr
    assert b"ours before exit\n" in done.stderr


AFTER_THE_COMMAND = """
import os, signal, sys, time
sys.argv = ["leukemia-cnn", "params", "--check"]
from leukemia_cnn.cli.main import main
code = main()
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C once the command is done, while it exits
time.sleep(0.5)
sys.exit(code)
"""


def test_ctrl_c_after_the_command_is_done_changes_nothing():
    """issue 31: Ctrl-C in the last seconds of `drift` raised KeyboardInterrupt in an exit
    handler (a traceback, and exit 0 whatever the verdict)."""
    from helpers import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", AFTER_THE_COMMAND], capture_output=True,
                          timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"Traceback" not in done.stderr and b"KeyboardInterrupt" not in done.stderr


def test_control_characters_are_shown_as_escapes():
    from leukemia_cnn.console import terminal_safe

    name = "cell\x1b]0;owned\x07\x1b[2J\nnext.jpg"
    assert terminal_safe(name) == "cell\\x1b]0;owned\\x07\\x1b[2J\\x0anext.jpg"
    assert terminal_safe(os.fsdecode(b"bad\xff.jpg")) == "bad\\xff.jpg"
    assert terminal_safe("Pro/été.jpg") == "Pro/été.jpg"
