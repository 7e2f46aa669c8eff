"""A single-node Slurm cluster on this machine, for testing the workflow's Slurm profile.

Made for Debian's slurm-wlm 22.05 and munge on a root machine without systemd.
Everything the cluster owns lives in its own folder, so that two clusters (two
test runs) can share a host: its munged (own key and socket, named to Slurm
through ``AuthInfo``), slurmctld and slurmd on free ports, their config, state,
spool, logs and process ids. Nothing under /run, /etc or /var is written or
removed. Clients find the config through ``SLURM_CONF``; inside a job, where
the Slurm executor's job step removes every ``SLURM_*`` variable before calling
``srun``, a ``srun`` wrapper first on ``PATH`` puts it back. Daemons run in the
foreground as child processes, so a daemon that dies while starting is seen at
once, and the error is its own log's.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import stat
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


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """Start with :meth:`start`, use :attr:`env` for clients, stop with :meth:`stop`."""

    def __init__(self, root: Path, ctld_port: int | None = None, slurmd_port: int | None = None) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.name = f"bnntest{secrets.token_hex(4)}"
        self.ctld_port = ctld_port or free_port()
        self.slurmd_port = slurmd_port or free_port()
        self.munge_socket = root / "munge" / "munge.socket"
        self.daemons: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return os.environ | {"SLURM_CONF": str(self.conf), "PATH": path}

    def _node_line(self) -> str:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        return f"{node} NodeAddr=127.0.0.1 Port={self.slurmd_port} State=UNKNOWN"

    def write_conf(self) -> None:
        r = self.root
        for sub in ("state", "spool", "bin", "munge"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join([
                f"ClusterName={self.name}",
                "SlurmctldHost=localhost(127.0.0.1)",
                f"SlurmctldPort={self.ctld_port}",
                f"SlurmdPort={self.slurmd_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.munge_socket}",
                "MpiDefault=none",
                "ProctrackType=proctrack/pgid",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                "SchedulerType=sched/backfill",
                "ReturnToService=2",
                # Finished jobs stay visible to squeue, which the executor polls.
                "MinJobAge=600",
                f"StateSaveLocation={r / 'state'}",
                f"SlurmdSpoolDir={r / 'spool'}",
                f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                f"SlurmdPidFile={r / 'slurmd.pid'}",
                f"SlurmctldLogFile={r / 'slurmctld.log'}",
                f"SlurmdLogFile={r / 'slurmd.log'}",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                self._node_line(),
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ])
        )
        # The executor's job step calls srun without SLURM_CONF; this one puts it back.
        srun = r / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(srun.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def _spawn(self, name: str, *command: str) -> None:
        with open(self.root / f"{name}.out", "w") as out:  # the daemon keeps its own copy
            self.daemons[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                  env=self.env, start_new_session=True)

    def _dead(self) -> str:
        """Why a daemon that exited did, in its own words; empty while all run."""
        for name, process in self.daemons.items():
            if process.poll() is None:
                continue
            logs = [self.root / f"{name}.log", self.root / "munge" / f"{name}.log", self.root / f"{name}.out"]
            text = next((p.read_text(errors="replace") for p in logs if p.exists() and p.stat().st_size), "")
            lines = [re.sub(r"^(\[[^]]*\]\s*|\w+:\s+)", "", line).strip() for line in text.splitlines()]
            fatal = [line for line in lines if re.search(r"fatal|Address already in use|bind", line, re.I)]
            port = {"slurmctld": self.ctld_port, "slurmd": self.slurmd_port}.get(name)
            bound = port and any("Address already in use" in line for line in fatal)
            cause = f"{name} could not bind port {port}" if bound else f"{name} exited with code {process.returncode}"
            return f"{cause}: {'; '.join(dict.fromkeys(fatal or lines[-3:]))}"
        return ""

    def _answers(self) -> bool:
        """True once our controller answers through our config and our node is up in it."""
        shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, env=self.env)
        fields = dict(re.findall(r"^(\w+)\s+=\s+(.*?)\s*$", shown.stdout, re.M))
        if shown.returncode or fields.get("ClusterName") != self.name:
            return False  # not up yet, or another cluster's controller on our port
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
        return state.returncode == 0 and state.stdout.strip() in ("idle", "mix", "alloc")

    def start(self, timeout: float = 60) -> None:
        self.write_conf()
        m = self.root / "munge"
        key = m / "munge.key"
        key.write_bytes(secrets.token_bytes(128))
        key.chmod(0o600)
        self._spawn("munged", "munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                    f"--key-file={key}", f"--log-file={m / 'munged.log'}", f"--pid-file={m / 'munged.pid'}",
                    f"--seed-file={m / 'munged.seed'}")
        deadline = time.time() + timeout
        while not self.munge_socket.exists():
            if self._dead() or time.time() > deadline:
                reason = self._dead() or "no socket"
                self.stop()
                raise RuntimeError(f"munged did not start: {reason}")
            time.sleep(0.1)
        self._spawn("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf))
        while time.time() < deadline:
            dead = self._dead()
            if dead:
                self.stop()
                raise RuntimeError(dead)
            if self._answers():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Slurm did not come up in {timeout} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.root.glob("*.log")) if p.is_file()
        )

    def stop(self) -> None:
        """Stop our daemons, newest first; files outside :attr:`root` are never touched."""
        for process in reversed(list(self.daemons.values())):
            if process.poll() is None:
                process.terminate()
        for process in self.daemons.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.daemons.clear()
