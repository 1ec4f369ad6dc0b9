"""The ``leukemia-cnn`` command: a thin layer over the modules that do the work.

Each command's handler (``cli.commands``) calls the ``run(cfg, root, ...)`` of one module: a
pipeline stage's of the module of the same name (``dvc.yaml`` calls these subcommands).
``sweep`` alone hands its command line to Hydra. Every failure is one line and an exit status.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from leukemia_cnn.cli.parser import build_parser
from leukemia_cnn.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    LeukemiaCNNError,
    full_disk_cause,
    full_disk_error,
)


def _run(args: argparse.Namespace) -> int:
    return args.func(args, _project_root(args))


def _project_root(args: argparse.Namespace) -> Path:
    """The project a command works on: the one around the current folder; for a command
    that reads the MLflow store run outside any project, the one holding its ``--params``
    (so that ``predict --params ../project/params.yaml`` reads that project's store rather
    than create an empty one here)."""
    from leukemia_cnn.config import find_repo_root

    here = find_repo_root()
    params = Path(getattr(args, "params", None) or "params.yaml")
    in_project = (here / "dvc.yaml").is_file() or (here / "conf" / "config.yaml").is_file()
    if not in_project and args.command in ("predict", "explain", "card", "summary") and params.is_file():
        found = find_repo_root(params.resolve().parent)
        if (found / "dvc.yaml").is_file() or (found / "conf" / "config.yaml").is_file():
            return found
    return here


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``leukemia-cnn``: a failure prints one line (no traceback) and exits
    with the status documented in ``leukemia-cnn --help``."""
    from leukemia_cnn.console import quiet_libraries

    # Filtering file descriptor 2 is for the real command only: a caller in the same process
    # (a test, a notebook) owns its stderr.
    as_command = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv[:1]
    if verbose:
        argv = argv[1:]
    quiet_libraries(verbose=verbose, native=as_command)
    try:
        return _dispatch(argv)
    finally:
        if as_command:
            finish()


def finish() -> None:
    """The command is done (its outputs written, its status decided): exit at once.

    Python's last garbage collection would walk every object the libraries made, seconds in
    which a Ctrl-C raised KeyboardInterrupt inside an exit handler (docs/data-quality.md):
    frozen objects are left to the operating system, and Ctrl-C no longer interrupts an exit.
    """
    import gc
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()


def _dispatch(argv: list[str]) -> int:
    """Parse ``argv`` and run the command; every failure becomes one line and a status."""
    from leukemia_cnn.console import terminal_safe

    if argv[:1] == ["sweep"]:
        # Hydra owns the sweep's command line (overrides, -m, hydra/launcher=..., --help).
        from leukemia_cnn.study import sweep

        command, run = "sweep", functools.partial(sweep.main, argv[1:])
    else:
        args = build_parser().parse_args(argv)
        command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
        run = functools.partial(_run, args)
    try:
        return run()
    except LeukemiaCNNError as exc:
        print(f"leukemia-cnn {command}: error: {terminal_safe(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        from leukemia_cnn.data.staging import interrupted_note

        print(f"leukemia-cnn {command}: interrupted; {interrupted_note()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        full = full_disk_cause(exc)
        if full is not None or isinstance(exc, OSError):  # a path, a permission, a full disk
            print(f"leukemia-cnn {command}: error: "
                  f"{terminal_safe(_disk_full_line(full) if full else exc)}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        if os.environ.get("LEUKEMIA_CNN_TRACEBACK"):
            raise
        from leukemia_cnn.tracking.storeerrors import artifact_store_error

        if (store_error := artifact_store_error(exc)) is not None:  # S3 down, wrong keys
            print(f"leukemia-cnn {command}: error: {terminal_safe(store_error)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"leukemia-cnn {command}: internal error: {type(exc).__name__}: "
              f"{terminal_safe(exc)}\nhint: this is a bug; rerun with LEUKEMIA_CNN_TRACEBACK=1 "
              "and report the traceback", file=sys.stderr)
        return EXIT_INTERNAL


def _disk_full_line(cause: BaseException) -> str:
    """A full disk met where no stage named the path: the one a library gave, if any."""
    from leukemia_cnn.data.staging import interrupted_note

    if isinstance(cause, LeukemiaCNNError):
        return str(cause)
    return str(full_disk_error(cause, None, interrupted_note()))
