"""A folder written beside its target and removed on any way out, SIGTERM included.

Python runs ``finally`` blocks on exceptions and Ctrl-C, but SIGTERM (``kill``, a CI timeout, a
closing terminal's SIGHUP) ends the process at once; while the folder exists those signals raise
KeyboardInterrupt instead, so the half-written tree is removed and the command exits
"interrupted" (status 130). ``<name>.tmp-<8 hex digits>`` and ``.old-`` ones are also git- and
DVC-ignored, for SIGKILL.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

CAUGHT = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[tuple[Path, str]]:
    """``(target.tmp-<token>, token)``, not yet created; removed on leaving, however that
    happens (after a successful swap it no longer exists). Inside the block SIGTERM and SIGHUP
    raise KeyboardInterrupt (main thread only: signal handlers can be set nowhere else)."""
    token = secrets.token_hex(4)
    staging = Path(target).with_name(f"{Path(target).name}.tmp-{token}")
    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, _interrupt) for signum in CAUGHT} if main else {}
    try:
        try:
            yield staging, token
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted_note(root: Path | None = None) -> str:
    """What an interrupted command left, in one clause: true for a plain command (its outputs
    are written atomically) and for a DVC stage whose outputs all persist (train); otherwise
    DVC deleted the stage's outputs before running it, and says how to get them back."""
    import os

    import yaml

    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return "earlier outputs are intact"
    dvc_yaml = Path(root or os.environ.get("DVC_ROOT", ".")) / "dvc.yaml"
    try:
        spec = yaml.safe_load(dvc_yaml.read_text())["stages"][stage]
        outs = [out for key in ("outs", "metrics", "plots") for out in spec.get(key, [])]
        persist = all(isinstance(out, dict) and next(iter(out.values()), {}).get("persist")
                      for out in outs)
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        persist = False
    if persist:
        return f"stage {stage} keeps its earlier outputs (persist), intact"
    return (f"DVC removed stage {stage}'s earlier outputs before running it: `dvc checkout "
            f"{stage}` restores its cached ones, `git checkout -- <file>` the reports git tracks")


@contextlib.contextmanager
def restore_refused_params(root: Path, params: str | Path) -> Iterator[None]:
    """Under ``dvc exp run``, put ``params`` back as the baseline commit has it when the block
    refuses it (LeukemiaCNNError), and say so.

    ``dvc exp run -S key=value`` writes the value into params.yaml before the check_config
    stage refuses it, and leaves it there; the next ``dvc repro`` would fail the same way.
    """
    import os
    import subprocess

    from leukemia_cnn.errors import LeukemiaCNNError

    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    try:
        yield
    except LeukemiaCNNError as exc:
        target = Path(root) / params
        if not baseline or not target.is_file():
            raise
        relative = target.resolve().relative_to(Path(root).resolve()).as_posix()
        shown = subprocess.run(["git", "show", "--end-of-options", f"{baseline}:{relative}"],
                               cwd=root, capture_output=True, text=True)
        if shown.returncode != 0:
            raise
        from leukemia_cnn.fileio import write_text

        write_text(target, shown.stdout)
        raise type(exc)(f"{exc}. {relative} is restored to the experiment's baseline commit "
                        f"{baseline[:7]} (dvc exp run had written the refused value)") from exc


def dropped_overrides(root: Path, params: str | Path) -> list[str]:
    """Under ``dvc exp run``, the overrides the experiment's baseline commit had in ``params``
    that DVC's Hydra integration dropped: it recomposes ``conf/`` with the ``-S`` values only,
    so a value written by ``leukemia-cnn params key=value`` and committed is back at conf/'s
    default. Each as ``key=committed (now default)``; empty outside ``dvc exp run``.

    DVC runs no hook before an experiment, so the first stage (``check_config``) asks.
    """
    import os
    import subprocess

    import yaml

    from leukemia_cnn.config import compose, flatten

    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    target = Path(root) / params
    if not baseline or not target.is_file():
        return []
    relative = target.resolve().relative_to(Path(root).resolve()).as_posix()
    shown = subprocess.run(["git", "show", "--end-of-options", f"{baseline}:{relative}"],
                           cwd=root, capture_output=True, text=True)
    try:
        committed = flatten(yaml.safe_load(shown.stdout) or {}) if shown.returncode == 0 else {}
        current = flatten(yaml.safe_load(target.read_text()) or {})
    except (yaml.YAMLError, AttributeError):
        return []
    composed = flatten(compose(root=root)) if committed else {}
    return [f"{key}={committed[key]} (now {current[key]})" for key in sorted(committed)
            if key in composed and key in current and committed[key] != composed[key]
            and current[key] == composed[key]]
