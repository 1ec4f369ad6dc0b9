"""Heatmap memory benchmark: `mlflow models serve` answering concurrent heatmap requests of
large images, and the peak resident memory of its worker.

The model is the project's pyfunc model at the configured size (``conf/``: the paper's CNN on
grayscale 100x100, untrained: memory does not depend on the weights), logged into a temporary
store and served with ``--env-manager local --workers 1`` on loopback. Each request carries
``--rows`` JPEGs of ``--size`` x ``--size`` pixels (smooth pictures, about 1-2 MB each, as a
photographed slide is) with ``"params": {"heatmap": true}``, base64 in ``dataframe_split``;
``--clients`` threads send one request each, all at once (issue 31: 4 rows of 7000x7000 took
one worker to 11.7 GB; two such requests would take a 23 GB machine down).

Baseline in the same run: the same server (a fresh one, so that its peak is its own) answering
one request of one 224x224 image (the dataset's size) with a heatmap.
Peak RSS is the kernel's high-water mark (``VmHWM``) of the largest process of the server's
tree, read when the requests are done. Target: the loaded worker's peak under ``--limit-gib``.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
import numpy as np
from PIL import Image

from leukemia_cnn import devtools


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smooth_jpeg(size: int, seed: int) -> bytes:
    """A ``size`` x ``size`` RGB JPEG of a smooth random picture (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(60, 230, (24, 24, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.resize((size, size), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def log_project_model(folder: Path) -> str:
    """The project's pyfunc model at the configured architecture, untrained; its URI."""
    import keras
    import mlflow

    from leukemia_cnn.config import compose
    from leukemia_cnn.modeling.model import build_from_config
    from leukemia_cnn.serving.pyfunc import log_model

    cfg = compose([], root=benchlib.REPO)
    size = cfg.preprocess.image_size
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # artifacts in the temporary folder too (by default: ./mlruns of the current folder)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "bench-heatmap", artifact_location=(folder / "artifacts").as_uri()))
    model = build_from_config(cfg, (size, size, 1))
    keras.saving.save_model(model, folder / "model.keras")
    with mlflow.start_run():
        info = log_model(folder / "model.keras", list(cfg.data.classes), size, "grayscale")
    return info.model_uri


def peak_rss(root_pid: int) -> int:
    """The largest ``VmHWM`` (bytes) among ``root_pid`` and its descendants."""
    import psutil

    peaks = []
    root = psutil.Process(root_pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        line = next((row for row in status.splitlines() if row.startswith("VmHWM:")), None)
        if line:
            peaks.append(int(line.split()[1]) * 1024)
    return max(peaks, default=0)


def serve_and_send(uri: str, store: Path, bodies: list[bytes], timeout: float) -> dict:
    """Start a fresh server, send ``bodies`` all at once, read its peak RSS, stop it."""
    import requests

    port = free_port()
    command = [str(benchlib.BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager",
               "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"]
    # MLflow answers 504 after 60 s by default; the requests here are meant to finish
    env = benchlib.clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}",
                             MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT=str(int(timeout)))
    log_path = store / f"serve-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=store, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        devtools.wait_for_http(f"http://127.0.0.1:{port}/ping", process, log_path, timeout)
        idle = peak_rss(process.pid)

        def one(body: bytes) -> tuple[int, int, int, float]:
            started = time.perf_counter()
            response = requests.post(f"http://127.0.0.1:{port}/invocations", data=body,
                                     timeout=timeout,
                                     headers={"Content-Type": "application/json"})
            maps = marked = 0
            if response.status_code == 200:
                rows = response.json()["predictions"]
                maps = sum(bool(row.get("heatmap")) for row in rows)
                marked = sum(bool(row.get("error")) for row in rows)
            return response.status_code, maps, marked, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            answers = list(pool.map(one, bodies))
        wall = time.perf_counter() - started
        peak = peak_rss(process.pid)
    finally:
        devtools.stop_process(process)
    return {"idle": idle, "peak": peak, "wall": wall, "statuses": [a[0] for a in answers],
            "heatmaps": sum(a[1] for a in answers), "marked": sum(a[2] for a in answers),
            "slowest": max(a[3] for a in answers)}


def body(images: list[bytes]) -> bytes:
    rows = [[base64.b64encode(image).decode()] for image in images]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows},
                       "params": {"heatmap": True}}).encode()


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--size", type=int, default=7000, help="width and height of each image")
    cli.add_argument("--rows", type=int, default=4, help="images per request")
    cli.add_argument("--clients", type=int, default=4, help="requests sent at once")
    cli.add_argument("--limit-gib", type=float, default=2.0, help="target for the peak RSS")
    cli.add_argument("--timeout", type=float, default=900, help="seconds per request")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("heatmap-memory", "peak RSS of `mlflow models serve` under "
                                             "concurrent heatmap requests of large images")
    with tempfile.TemporaryDirectory(prefix="bench-heatmap-") as work:
        store = Path(work)
        uri = log_project_model(store)
        large = [smooth_jpeg(args.size, seed) for seed in range(args.rows)]
        loaded = [body(large) for _ in range(args.clients)]
        bench.say(f"load: {args.clients} requests at once, each {args.rows} JPEGs of "
                  f"{args.size}x{args.size} ({args.size ** 2 / 1e6:.0f} M pixels, "
                  f"{np.mean([len(x) for x in large]) / 1e6:.1f} MB each; "
                  f"{len(loaded[0]) / 1e6:.1f} MB JSON per request) with heatmaps")
        baseline = serve_and_send(uri, store, [body([smooth_jpeg(224, 99)])], args.timeout)
        result = serve_and_send(uri, store, loaded, args.timeout)
    gib = 1024 ** 3
    for name, run in (("baseline (one 224x224 image, heatmap)", baseline),
                      ("load", result)):
        bench.say(f"{name}: statuses {sorted(set(run['statuses']))}, {run['heatmaps']} "
                  f"heatmaps, {run['marked']} rows past the pixel cap, {run['wall']:.1f} s "
                  f"(slowest request {run['slowest']:.1f} s); worker RSS idle "
                  f"{run['idle'] / gib:.2f} GiB, peak {run['peak'] / gib:.2f} GiB")
    ratio = result["peak"] / baseline["peak"]
    pixels = args.clients * args.rows * args.size ** 2 / 1e6
    bench.say(f"peak RSS under load / baseline = {ratio:.2f} ({args.clients * args.rows} large "
              f"images, {pixels:.0f} M pixels in all)")
    for key, value in (("baseline_peak_gib", baseline["peak"] / gib),
                       ("load_peak_gib", result["peak"] / gib), ("ratio", ratio)):
        bench.figure(key, value)
    from leukemia_cnn.serving.payload import MAX_REQUEST_PIXELS

    fits = min(args.rows, MAX_REQUEST_PIXELS // args.size ** 2)  # rows under the request cap
    bench.say(f"per request, {fits} of {args.rows} rows fit the cap of {MAX_REQUEST_PIXELS:,} "
              "pixels; the others are marked in `error`")
    bench.check("rows not answered as the caps say (a heatmap under the cap, marked past it)",
                sum(s != 200 for s in result["statuses"])
                + abs(args.clients * fits - result["heatmaps"])
                + abs(args.clients * (args.rows - fits) - result["marked"]), "<=", 0,
                fmt="{:.0f}")
    bench.check("peak RSS of the worker under load", result["peak"] / gib, "<=", args.limit_gib,
                unit="GiB")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
