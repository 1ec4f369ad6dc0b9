"""Serving benchmark: ``mlflow models serve`` on loopback under a bounded load.

Serves the model version the workspace's pipeline registered (``--env-manager local``,
MLflow's default of one uvicorn worker per CPU) and sends ``--requests`` POSTs to
/invocations from ``--concurrency`` client threads (``requests``, one session per thread).
Each request carries one real synthetic JPEG, base64 in ``dataframe_split`` as
tests/registry/test_servers.py sends it; the JPEGs cycle through the workspace's dataset. A few
warm-up requests are sent first and not counted. The client runs on the same 2 cores.

Baseline in the same run: the same model loaded in-process with ``mlflow.pyfunc.load_model``
predicting the same one-image DataFrames one after another.
Reported: p50/p90/p99/max latency, throughput, status codes. Target: zero 5xx.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchlib
import numpy as np

from leukemia_cnn import devtools


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def payload(jpeg: Path) -> bytes:
    encoded = base64.b64encode(jpeg.read_bytes()).decode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}).encode()


def load_test(url: str, bodies: list[bytes], n_requests: int, concurrency: int) -> dict:
    """Send ``n_requests`` POSTs from ``concurrency`` threads; latencies and outcomes."""
    import requests

    local = threading.local()

    def one(index: int) -> tuple[float, int, bool]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        try:
            response = session.post(url, data=bodies[index % len(bodies)], timeout=120,
                                    headers={"Content-Type": "application/json"})
            status = response.status_code
            valid = status == 200 and "predicted_class" in response.json()["predictions"][0]
        except requests.RequestException:
            status, valid = -1, False
        return time.perf_counter() - started, status, valid

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(n_requests)))
    wall = time.perf_counter() - started
    latencies = np.array([r[0] for r in results])
    statuses = [r[1] for r in results]
    return {"wall": wall, "latencies": latencies, "statuses": statuses,
            "valid": sum(r[2] for r in results)}


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__)
    cli.add_argument("--requests", type=int, default=2000, help="requests in the load test")
    cli.add_argument("--concurrency", type=int, default=16, help="client threads")
    cli.add_argument("--baseline-requests", type=int, default=200,
                     help="one-image predictions of the in-process baseline")
    cli.add_argument("--start-timeout", type=float, default=300, help="seconds to wait for /ping")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("serving", "`mlflow models serve` under a bounded load")
    with benchlib.workspace_from_args(args, bench) as ws:
        import pandas as pd

        cfg = ws.params()
        registered = json.loads((ws.project / cfg.paths.reports_dir / "registered.json")
                                .read_text())
        uri = f"models:/{registered['registered_model']}/{registered['version']}"
        jpegs = ws.jpegs()
        bodies = [payload(path) for path in jpegs]
        port = free_port()
        command = [str(benchlib.BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager",
                   "local", "--host", "127.0.0.1", "-p", str(port)]
        env = benchlib.clean_env(MLFLOW_TRACKING_URI=ws.tracking_uri)
        log_path = ws.workdir / f"serve-{port}.log"
        bench.say(f"server: {' '.join(command[1:])} (workers: MLflow's default, one per CPU)")
        bench.say(f"load: {args.requests} requests, {args.concurrency} concurrent, one JPEG "
                  f"each (cycling {len(jpegs):,} files, ~{np.mean([len(b) for b in bodies]) / 1024:.0f}"
                  f" KiB JSON bodies)")
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, cwd=ws.project, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            startup = devtools.wait_for_http(f"{base}/ping", process, log_path,
                                             args.start_timeout)
            bench.say(f"server answered /ping after {startup:.1f} s")
            warm = load_test(f"{base}/invocations", bodies, 4 * args.concurrency,
                             args.concurrency)
            bench.say(f"warm-up: {len(warm['statuses'])} requests (not counted), statuses "
                      f"{sorted(set(warm['statuses']))}")
            result = load_test(f"{base}/invocations", bodies, args.requests, args.concurrency)
        finally:
            devtools.stop_process(process)

        import mlflow

        mlflow.set_tracking_uri(ws.tracking_uri)
        mlflow.set_registry_uri(ws.tracking_uri)
        model = mlflow.pyfunc.load_model(uri)
        frames = [pd.DataFrame({"image": [path.read_bytes()]}) for path in jpegs[:50]]
        model.predict(frames[0])  # warm-up
        baseline_latency = []
        started = time.perf_counter()
        for index in range(args.baseline_requests):
            one = time.perf_counter()
            model.predict(frames[index % len(frames)])
            baseline_latency.append(time.perf_counter() - one)
        baseline_rate = args.baseline_requests / (time.perf_counter() - started)

        latencies = result["latencies"] * 1000
        statuses = result["statuses"]
        counts = {label: sum(1 for s in statuses if test(s)) for label, test in (
            ("2xx", lambda s: 200 <= s < 300), ("4xx", lambda s: 400 <= s < 500),
            ("5xx", lambda s: s >= 500), ("connection errors", lambda s: s < 0))}
        throughput = args.requests / result["wall"]
        p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
        bench.say(f"load test: {args.requests} requests in {result['wall']:.1f} s = "
                  f"{throughput:.1f} requests/s (one image each)")
        bench.say(f"latency ms: p50 {p50:.0f}, p90 {p90:.0f}, p99 {p99:.0f}, max "
                  f"{latencies.max():.0f}, mean {latencies.mean():.0f}")
        bench.say(f"responses: {counts}; 200s with a predicted_class: {result['valid']}")
        bench.say(f"baseline: in-process pyfunc.predict of one image, serially: "
                  f"{baseline_rate:.1f} images/s, p50 {np.median(baseline_latency) * 1000:.0f} ms "
                  f"({args.baseline_requests} calls); server throughput / baseline = "
                  f"{throughput / baseline_rate:.2f}")
        for key, value in (("throughput_rps", throughput), ("p50_ms", p50), ("p99_ms", p99),
                           ("baseline_rps", baseline_rate)):
            bench.figure(key, value)
        bench.check("5xx responses", counts["5xx"], "<=", 0, fmt="{:.0f}")
        bench.check("requests without a valid prediction (any non-200, connection error or bad "
                    "body)", args.requests - result["valid"], "<=", 0, fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
