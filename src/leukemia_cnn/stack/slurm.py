"""A one-node SLURM cluster on this machine: MUNGE, ``slurmctld`` and ``slurmd`` from Debian's
``munge`` and ``slurm-wlm``, every file of theirs in one folder.

Set up for a container: no cgroups (``ProctrackType=proctrack/linuxproc``,
``TaskPlugin=task/none``), no accounting daemon (so ``sacct`` answers "accounting storage is
disabled"; the sweep's launcher asks ``scontrol`` instead), and ``JobRequeue=0``: a job whose
node dies ends NODE_FAIL instead of waiting for a node that a one-node cluster does not have.
Client commands (``sbatch``, ``squeue``, ``scancel``) find the cluster through ``SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from leukemia_cnn.stack.procs import (
    Daemon,
    StackError,
    free_port,
    kill_pid,
    processes_where,
    spawn,
    stop,
    wait_until,
)

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol", "srun")
# How long the controller waits for a silent slurmd before it declares the node DOWN (and
# its jobs NODE_FAIL); SLURM's default is 300 s.
SLURMD_TIMEOUT = 10


@dataclass
class SlurmCluster:
    """A running cluster: its folder, ``slurm.conf``, node name and daemons."""

    folder: Path
    conf: Path
    node: str
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a client needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def processes(self) -> list[int]:
        """PIDs of the node's job steps and job processes (not the daemons): each
        ``slurmstepd`` holds a socket in the spool folder (its title and environment are
        rewritten); a job process has this ``SLURM_CONF`` and a ``SLURM_JOB_ID`` (clients of
        the cluster carry its ``SLURM_CONF`` too, but no job id)."""
        import psutil

        spool = f"{self.folder / 'spool'}{os.sep}"
        steps = {c.pid for c in psutil.net_connections(kind="unix")
                 if c.pid and isinstance(c.laddr, str) and c.laddr.startswith(spool)}
        jobs = processes_where(lambda env: env.get("SLURM_CONF") == str(self.conf)
                               and "SLURM_JOB_ID" in env)
        return sorted((steps | set(jobs)) - {d.pid for d in self.daemons} - {os.getpid()})

    def daemon(self, name: str) -> Daemon:
        return next(d for d in self.daemons if d.name == name)


def missing_binaries() -> list[str]:
    """The SLURM and MUNGE programs not found on PATH (or in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=path) is None]


def binary(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise StackError(f"`{name}` not found: install Debian's slurm-wlm and munge "
                         "(apt-get install slurm-wlm munge; .ci/run does)")
    return found


def write_conf(folder: Path, node: str, munge_socket: Path) -> Path:
    """``slurm.conf`` for one node named ``node`` on 127.0.0.1, all state under ``folder``."""
    import psutil

    # What the node offers to jobs: every CPU, nine tenths of the memory (MiB).
    cpus, memory = os.cpu_count() or 1, int(psutil.virtual_memory().total / 2**20 * 0.9)
    user = getpass.getuser()
    lines = {
        "ClusterName": "leukemia-cnn", "SlurmctldHost": f"{node}(127.0.0.1)",
        "SlurmctldPort": free_port(), "SlurmdPort": free_port(),
        "SlurmUser": user, "SlurmdUser": user,
        "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={munge_socket}",
        "StateSaveLocation": folder / "state", "SlurmdSpoolDir": folder / "spool",
        "SlurmctldPidFile": folder / "slurmctld.pid", "SlurmdPidFile": folder / "slurmd.pid",
        "SlurmctldLogFile": folder / "slurmctld.log", "SlurmdLogFile": folder / "slurmd.log",
        # A container has no cgroup hierarchy for SLURM: track processes by parent PID.
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none", "JobCompType": "jobcomp/none",
        "MpiDefault": "none", "SchedulerType": "sched/backfill",
        # Jobs share the node core by core (two one-core jobs at once on two cores).
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
        "ReturnToService": 2, "JobRequeue": 0, "SlurmdTimeout": SLURMD_TIMEOUT,
        "InactiveLimit": 0, "KillWait": 5, "MinJobAge": 600,
    }
    text = "".join(f"{key}={value}\n" for key, value in lines.items())
    text += (f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} "
             "State=UNKNOWN\nPartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE "
             "State=UP\n")
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(text)
    return conf


def start_munge(folder: Path, detach: bool = False) -> tuple[Daemon, Path]:
    """``munged`` with a fresh key of its own and its socket in ``folder/munge``."""
    munge = folder / "munge"
    munge.mkdir(parents=True, exist_ok=True)
    munge.chmod(0o755)  # clients of other users may reach the socket; the key stays 0400
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = munge / "munge.socket"
    daemon = spawn("munged", [binary("munged"), "--foreground", "--force",
                              f"--key-file={key}", f"--socket={sock}",
                              f"--pid-file={munge / 'munged.pid'}",
                              f"--seed-file={munge / 'munged.seed'}",
                              f"--log-file={munge / 'munged.log'}"],
                   folder / "munged.out", detach=detach)
    wait_until(sock.exists, 30, "munged created its socket", daemon)
    return daemon, sock


def start_slurm(folder: Path, detach: bool = False, timeout: float = 90) -> SlurmCluster:
    """Start MUNGE, ``slurmctld`` and ``slurmd`` and wait until ``sinfo`` shows the node idle.

    Raises
    ------
    StackError
        A binary is missing, a daemon exits or the node is not idle within ``timeout`` s
        (whatever had started is stopped again).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(folder, folder / "slurm.conf", node)
    try:
        munged, sock = start_munge(folder, detach)
        cluster.daemons.append(munged)
        write_conf(folder, node, sock)
        env = {**os.environ, **cluster.env}
        cluster.daemons.append(spawn("slurmctld", [binary("slurmctld"), "-D", "-f",
                                                   str(cluster.conf)],
                                     folder / "slurmctld.out", env=env, detach=detach))
        cluster.daemons.append(start_slurmd(cluster, detach))
        wait_until(lambda: node_state(cluster) == "idle", timeout,
                   f"sinfo shows node {node} idle", cluster.daemon("slurmd"))
    except BaseException:
        stop_slurm(cluster)
        raise
    return cluster


def start_slurmd(cluster: SlurmCluster, detach: bool = False) -> Daemon:
    """(Re)start the node's ``slurmd``."""
    env = {**os.environ, **cluster.env}
    return spawn("slurmd", [binary("slurmd"), "-D", "-f", str(cluster.conf), "-N", cluster.node],
                 cluster.folder / "slurmd.out", env=env, detach=detach)


def slurm_command(cluster: SlurmCluster, *args: str, timeout: float = 30,
                  check: bool = False) -> subprocess.CompletedProcess:
    """Run a SLURM client command against ``cluster`` (bounded by ``timeout``)."""
    return subprocess.run([binary(args[0]), *args[1:]], env={**os.environ, **cluster.env},
                          capture_output=True, text=True, timeout=timeout, check=check)


def node_state(cluster: SlurmCluster) -> str:
    """The node's state as ``sinfo`` prints it (``idle``, ``mixed``, ``down*``...), or ``""``."""
    try:
        result = slurm_command(cluster, "sinfo", "-h", "-N", "-n", cluster.node, "-o", "%T",
                               timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def kill_node(cluster: SlurmCluster) -> list[int]:
    """The node dies: ``slurmd`` and every job step and job process on it are frozen
    (SIGSTOP, so none of them reports anything), then SIGKILLed; their PIDs. The controller
    learns of it only when the node stops answering (``SLURMD_TIMEOUT``)."""
    slurmd = cluster.daemon("slurmd")
    victims = [slurmd.pid, *cluster.processes()]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in victims:
        kill_pid(pid)
    cluster.daemons.remove(slurmd)
    return victims


def stop_slurm(cluster: SlurmCluster, timeout: float = 30) -> None:
    """Cancel every job, stop ``slurmd``, ``slurmctld`` and ``munged`` by their PIDs, then
    SIGKILL any process still carrying this cluster's ``SLURM_CONF`` (a job step that
    outlived its node)."""
    names = {d.name for d in cluster.daemons}
    if {"slurmctld", "munged"} <= names:  # a failure here: the PIDs below are stopped anyway
        with contextlib.suppress(StackError, subprocess.TimeoutExpired):
            slurm_command(cluster, "scancel", "--full", "--user", getpass.getuser(),
                          timeout=15)
            wait_until(lambda: not slurm_command(cluster, "squeue", "-h", timeout=10)
                       .stdout.strip(), timeout, "every job left the queue")
    for name in ("slurmd", "slurmctld", "munged"):
        for daemon in [d for d in cluster.daemons if d.name == name]:
            stop(daemon, timeout, signal.SIGTERM)
            cluster.daemons.remove(daemon)
    for pid in cluster.processes():
        kill_pid(pid)
