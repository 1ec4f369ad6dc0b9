"""``python -m leukemia_cnn.stack up|down --dir .team-stack`` (``make team-stack``): the team
setup of docs/scaling.md on one machine, started as the slow team tests start it.

``up`` starts PostgreSQL, SeaweedFS (S3, buckets ``mlflow`` and ``dvc``), the MLflow server on
both and a one-node SLURM cluster, records their PIDs in ``<dir>/stack.json``, writes
``<dir>/env.sh`` and prints the variables to export. ``down`` stops them by those PIDs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.stack import s3, servers, slurm
from leukemia_cnn.stack.procs import Daemon, StackError, alive, kill_pid, stop

MLFLOW_BUCKET, DVC_BUCKET = "mlflow", "dvc"


def up(folder: Path) -> dict:
    """Start every service (stopping those already started if one fails); return the record."""
    record: dict = {"daemons": [], "tmp": []}
    try:
        pg_dir = Path(tempfile.mkdtemp(prefix="leukemia-stack-pg-"))  # the postgres user's
        record["tmp"].append(str(pg_dir))
        postgres = servers.start_postgres(pg_dir, detach=True)
        record["daemons"].append(asdict(postgres.daemon))
        store = s3.start_s3(folder / "s3", (MLFLOW_BUCKET, DVC_BUCKET), detach=True)
        record["daemons"].append(asdict(store.daemon))
        record["s3"] = {"endpoint": store.endpoint, "ports": store.ports, **store.env}
        daemon, url = servers.mlflow_server(folder / "mlflow", postgres.uri,
                                            f"s3://{MLFLOW_BUCKET}/artifacts", store.env,
                                            detach=True)
        record["daemons"].append(asdict(daemon))
        record["mlflow"] = url
        cluster = slurm.start_slurm(folder / "slurm", detach=True)
        record["daemons"] += [asdict(d) for d in cluster.daemons]
        record["slurm_conf"] = str(cluster.conf)
    except BaseException:
        down_record(record)
        raise
    return record


def exports(record: dict) -> dict[str, str]:
    """The variables a shell needs to use the stack."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {"MLFLOW_TRACKING_URI": record["mlflow"], "SLURM_CONF": record["slurm_conf"],
            **{k: record["s3"][k] for k in keys}, "AWS_ENDPOINT_URL": record["s3"]["endpoint"]}


def down_record(record: dict) -> list[str]:
    """Stop the record's daemons by PID (last started first); return what was stopped."""
    stopped = []
    for entry in reversed(record.get("daemons", [])):
        daemon = Daemon(**entry)
        if alive(daemon):
            stop(daemon, timeout=30)
            stopped.append(f"{daemon.name} (pid {daemon.pid})")
    if "s3" in record:  # its daemon is stopped above: this removes its sockets
        s3.stop_s3(s3.S3Server(Path(), record["s3"]["endpoint"], "", "", record["s3"]["ports"]))
    if "slurm_conf" in record:
        conf = Path(record["slurm_conf"])
        for pid in slurm.SlurmCluster(conf.parent, conf, "").processes():
            kill_pid(pid)  # a job step still running on the stopped node
    for path in record.get("tmp", []):
        shutil.rmtree(path, ignore_errors=True)
    return stopped


def command_up(folder: Path) -> int:
    state = folder / "stack.json"
    if state.is_file():
        raise StackError(f"a team stack is recorded in {state}: stop it first with "
                         f"`make team-stack-down` (python -m leukemia_cnn.stack down --dir {folder})")
    record = up(folder)
    state.write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"export {key}={value}" for key, value in exports(record).items()]
    (folder / "env.sh").write_text("\n".join(lines) + "\n")
    endpoint = record["s3"]["endpoint"]
    print("team stack up: PostgreSQL, SeaweedFS (S3), the MLflow server on both, one-node SLURM")
    print(f"  MLflow UI and API   {record['mlflow']}  (artifacts in s3://{MLFLOW_BUCKET}/artifacts)")
    print(f"  S3 endpoint         {endpoint}  (buckets {MLFLOW_BUCKET}, {DVC_BUCKET})")
    print(f"  SLURM               sinfo, squeue with SLURM_CONF={record['slurm_conf']}")
    print(f"\nexport these (or `source {folder / 'env.sh'}`):")
    print("\n".join(lines))
    print(f"\na DVC remote on the bucket:\n  dvc remote add -d team s3://{DVC_BUCKET}/leukemia-cnn"
          f"\n  dvc remote modify team endpointurl {endpoint}")
    print("\nthen: dvc repro; dvc push; leukemia-cnn sweep -m hydra/launcher=slurm "
          "hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2 ...")
    print("stop it: make team-stack-down")
    return 0


def command_down(folder: Path) -> int:
    state = folder / "stack.json"
    if not state.is_file():
        print(f"no team stack recorded in {state}: nothing to stop")
        return 0
    stopped = down_record(json.loads(state.read_text()))
    state.unlink()
    (folder / "env.sh").unlink(missing_ok=True)
    print(f"team stack down: stopped {', '.join(stopped) or 'nothing (already gone)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leukemia_cnn.stack",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", default=".team-stack", type=Path,
                        help="where the stack keeps its data, logs and PIDs")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return command_up(folder) if args.action == "up" else command_down(folder)
    except LeukemiaCNNError as exc:
        print(f"team stack {args.action}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
