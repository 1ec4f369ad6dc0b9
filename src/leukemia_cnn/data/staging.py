"""A folder written beside its target and removed on any way out, SIGTERM included.

``data get`` and ``data synth`` write the new tree in ``<target>.tmp-<token>`` and swap it in
only once complete (:func:`leukemia_cnn.fileio.swap_folder`). Python runs ``finally`` blocks on
exceptions and Ctrl-C, but SIGTERM (``kill``, a CI timeout, a closing terminal's SIGHUP) ends
the process at once; while the folder exists those signals raise KeyboardInterrupt instead, so
the half-written tree is removed and the command exits "interrupted" (status 130).
``<name>.tmp-<8 hex digits>`` and ``.old-`` ones are also git- and DVC-ignored, for SIGKILL.
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
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in CAUGHT}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[tuple[Path, str]]:
    """``(target.tmp-<token>, token)``, not yet created; removed on leaving, however that
    happens (after a successful swap it no longer exists)."""
    token = secrets.token_hex(4)
    staging = Path(target).with_name(f"{Path(target).name}.tmp-{token}")
    with signals_interrupt():
        try:
            yield staging, token
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
