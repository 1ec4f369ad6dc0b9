"""What reaches the user's terminal: library start-up chatter is dropped by default.

TensorFlow's C++ runtime logs through absl before anything can set its threshold (it ignores
``TF_CPP_MIN_LOG_LEVEL`` for those lines), so its ``I0000 ... port.cc] oneDNN ...``,
``E0000 ... node_def_util.cc] NodeDef mentions attribute ...`` and "All log messages before
absl::InitializeLog()" lines can only be dropped where they are written: file descriptor 2.
:func:`quiet_libraries` routes fd 2 through a filter that drops exactly those native log
lines and passes everything else through unchanged (progress bars, Keras epoch lines, our
own messages, Python tracebacks). MLflow's advisory warnings and artifact-download bars go too.

``leukemia-cnn --verbose`` or ``LEUKEMIA_CNN_VERBOSE=1`` keeps everything.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import re
import selectors
import sys
import threading
import warnings
from collections.abc import Collection, Iterable, Sequence

VERBOSE_ENV = "LEUKEMIA_CNN_VERBOSE"
# glog/absl line prefix: severity letter, MMDD, time, thread id, file:line]
NATIVE_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-/]+:\d+\] )")
# A partial line that may still turn into a native log line is held until its newline.
_MAYBE_NATIVE = re.compile(rb"^(W(A(R(N(I(N(G(:.*)?)?)?)?)?)?)?|[IWE][\d :.]*)$", re.DOTALL)
_installed = False


def terminal_safe(text: object) -> str:
    """``text`` with control characters shown as ``\\xNN`` escapes and bytes that are not
    UTF-8 (a file name's surrogates) as ``\\xNN`` too: safe to print, one line."""
    text = str(text)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    # Control characters (C0, DEL, C1) in a file name could move the cursor, recolour or
    # retitle the terminal, or split a one-line error.
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda found: f"\\x{ord(found.group()):02x}", text)


def verbose_requested() -> bool:
    """True when the user asked to see every library message (``LEUKEMIA_CNN_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def drop_native_log_lines(data: bytes, pending: bytes = b"") -> tuple[bytes, bytes]:
    """Split ``pending + data`` into what to write now and what to hold back.

    Complete lines are dropped when they are native (absl/glog) log lines and kept otherwise.
    The unfinished tail is held back only while it could still become such a line; otherwise
    it is written at once, so that progress bars redrawn with carriage returns stay live.
    """
    *lines, tail = (pending + data).split(b"\n")
    out = [line + b"\n" for line in lines if not NATIVE_LOG_LINE.match(line)]
    if tail and not (_MAYBE_NATIVE.match(tail) or NATIVE_LOG_LINE.match(tail)):
        out.append(tail)
        tail = b""
    return b"".join(out), tail


class StderrPump:
    """Forwards what is written to fd 2 (this process and its children) to the real stderr,
    minus native log lines, from a daemon thread.

    At exit the pump does not wait for the pipe's end of file: a worker process that outlives
    the command (joblib's reusable pool, a DVC helper) still holds fd 2 and would keep it open.
    :meth:`stop` restores fd 2, wakes the thread through a second pipe, and the thread forwards
    only what is already in the pipe, without blocking; joining it takes milliseconds, so
    every command ends as soon as its work is done and Ctrl-C has no wait to interrupt.
    """

    def __init__(self) -> None:
        self.read_end, write_end = os.pipe()
        self.real_stderr = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        self.wake_read, self.wake_write = os.pipe()
        self.stopping = threading.Event()
        self.pending = b""
        self.thread = threading.Thread(target=self.run, name="stderr-filter", daemon=True)
        self.thread.start()

    def forward(self, chunk: bytes) -> None:
        keep, self.pending = drop_native_log_lines(chunk, self.pending)
        if keep:
            os.write(self.real_stderr, keep)

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.read_end, selectors.EVENT_READ)
            selector.register(self.wake_read, selectors.EVENT_READ)
            while not self.stopping.is_set():
                ready = {key.fd for key, _ in selector.select()}
                if self.read_end in ready:
                    chunk = os.read(self.read_end, 65536)
                    if not chunk:
                        break
                    self.forward(chunk)
        self.drain()

    def drain(self) -> None:
        """Forward what the pipe holds now (never wait for more; at most 1 MiB), then the
        held-back tail."""
        os.set_blocking(self.read_end, False)
        forwarded = 0
        with contextlib.suppress(BlockingIOError):
            while forwarded < 1 << 20 and (chunk := os.read(self.read_end, 65536)):
                self.forward(chunk)
                forwarded += len(chunk)
        if self.pending and not NATIVE_LOG_LINE.match(self.pending):
            os.write(self.real_stderr, self.pending)
        self.pending = b""

    def stop(self) -> None:
        """Put the real stderr back on fd 2 and let the thread forward what is left."""
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self.real_stderr, 2)
            self.stopping.set()
            os.write(self.wake_write, b"x")
            self.thread.join(timeout=1.0)


def quiet_libraries(verbose: bool = False, native: bool = True) -> None:
    """Silence the libraries' start-up chatter for this process and the processes it starts.

    Idempotent. With ``verbose`` (or ``LEUKEMIA_CNN_VERBOSE=1``) nothing is changed.
    ``native=False`` leaves file descriptor 2 alone (for code running inside a process whose
    fd 2 is already filtered by its parent, or captured by a test runner).
    """
    global _installed
    if verbose or verbose_requested():
        os.environ[VERBOSE_ENV] = "1"  # child processes (sweep workers, DVC stages) follow
        return
    if _installed:
        return
    _installed = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's advice to model authors (type hints, input examples, CloudPickle) is not
    # something a user of the pipeline can act on; MLflow reads the level when imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    # It logs a database error's traceback, then raises it: the command says it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # The warning's colour codes come first, hence ``.*``. (The advice to add type hints is
    # answered in pyfunc.py: MLflow forces that one to show.)
    warnings.filterwarnings("ignore", message=r".*An input example was not provided when "
                            "logging the model", category=UserWarning)
    if native:
        atexit.register(StderrPump().stop)


def text_table(columns: Sequence[str], rows: Iterable[Sequence[object]],
               right: Collection[str] = (), indent: str = "") -> str:
    """``rows`` under ``columns`` as aligned plain text: rich's Table without borders or colour
    (a cell is shown as its ``str``, never read as rich markup); ``right``: the columns aligned
    right; ``indent`` starts every line."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    out = io.StringIO()
    Console(file=out, width=100_000, color_system=None).print(table)
    return "\n".join(indent + line.rstrip() for line in out.getvalue().splitlines())
