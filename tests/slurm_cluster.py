"""A single-node Slurm cluster on this machine, for testing the workflow's Slurm profile.

Made for Debian's slurm-wlm 22.05 and munge on a root machine without systemd:
munged runs as the munge user, slurmctld as root from a slurm.conf in a
temporary folder, slurmd in configless mode (it fetches the file from slurmctld
and caches it under /run/slurm, where commands inside jobs find it; clients
outside find it through SLURM_CONF), with proctrack/pgid, no accounting and no
GPUs. Daemons are stopped by the process ids they wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")


def unavailable_reason() -> str:
    """Empty if the cluster can run here (installing the packages if needed), else why not."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")):
        return ""
    if os.geteuid() != 0:
        return "not root, so slurm-wlm and munge cannot be installed"
    if not shutil.which("apt-get"):
        return "apt-get is not available to install slurm-wlm and munge"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:  # the package lists may be missing on a new machine
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    return "" if done.returncode == 0 else f"installing {' '.join(PACKAGES)} failed: {done.stderr[-300:]}"


class SlurmCluster:
    """Start with :meth:`start`, use :attr:`env` for clients, stop with :meth:`stop`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.pids: dict[str, Path] = {
            "slurmctld": root / "slurmctld.pid",
            "slurmd": root / "slurmd.pid",
            "munged": Path("/run/munge/munged.pid"),
        }
        self.started: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {"SLURM_CONF": str(self.conf)}

    def _node_line(self) -> str:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        return f"{node} NodeAddr=127.0.0.1 State=UNKNOWN"

    def write_conf(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(
            "\n".join([
                "ClusterName=bnn-test",
                "SlurmctldHost=localhost(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "MpiDefault=none",
                "ProctrackType=proctrack/pgid",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                "SchedulerType=sched/backfill",
                # slurmd fetches this file from slurmctld and caches it in /run/slurm/conf,
                # where clients inside jobs find it: the executor's job step drops SLURM_CONF.
                "SlurmctldParameters=enable_configless",
                "ReturnToService=2",
                # Finished jobs stay visible to squeue, which the executor polls.
                "MinJobAge=600",
                f"StateSaveLocation={r / 'state'}",
                f"SlurmdSpoolDir={r / 'spool'}",
                f"SlurmctldPidFile={self.pids['slurmctld']}",
                f"SlurmdPidFile={self.pids['slurmd']}",
                f"SlurmctldLogFile={r / 'slurmctld.log'}",
                f"SlurmdLogFile={r / 'slurmd.log'}",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                self._node_line(),
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ])
        )

    def start(self, timeout: float = 60) -> None:
        self.write_conf()
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
            self.started.append("munged")
        Path("/run/slurm").mkdir(parents=True, exist_ok=True)
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        self.started.append("slurmctld")
        subprocess.run(["slurmd", "--conf-server", "127.0.0.1"], check=True)
        self.started.append("slurmd")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
            if state.returncode == 0 and state.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Slurm did not come up in {timeout} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.root.glob("*.log") if p.is_file()
        )

    def stop(self) -> None:
        for daemon in reversed(self.started):
            pid_file = self.pids[daemon]
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                continue
        self.started.clear()
        shutil.rmtree("/run/slurm/conf", ignore_errors=True)  # slurmd's copy of our config
