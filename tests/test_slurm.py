"""The shipped Slurm profile, run on a real single-node Slurm cluster started by the test."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import numpy as np
import pytest
import yaml
from conftest import REPO, snakemake
from slurm_cluster import SlurmCluster, unavailable_reason

from bnn_sgmcmc import h5io

pytestmark = pytest.mark.workflow

#: Rules that must run as Slurm jobs (the others are localrules).
CLUSTER_RULES = ("preprocess", "warmup", "sample")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the Slurm test must run on CI: {reason}")
        pytest.skip(reason)
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    slurm.start()
    yield slurm
    slurm.stop()


def slurm_profile(tmp_path):
    """profiles/slurm with only what this one-node cluster lacks changed: account, partitions, GPUs."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"].pop("slurm_account")
    profile["default-resources"] |= {"slurm_partition": "debug", "cpus_per_task": 1}
    for rule in profile["set-resources"].values():
        rule |= {"slurm_partition": "debug", "gpu": 0, "cpus_per_task": 1}
    profile |= {
        "jobs": 4,
        "slurm-no-account": True,
        "slurm-status-command": "squeue",  # no accounting database here
        "slurm-keep-successful-logs": True,
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 2,
    }
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def test_the_workflow_runs_through_sbatch_and_matches_a_local_run(cluster, finished_run, tmp_path):
    local_dir, config = finished_run  # made first: the cluster jobs find every program in its compilation cache
    workdir = tmp_path / "slurm-run"
    workdir.mkdir()
    profile = slurm_profile(tmp_path)
    # The cluster jobs and what they make: the report rules are localrules, run by the local test. Every
    # kind of cluster job runs through Slurm: both data sets' preprocessing; sgld's two shards of weights
    # alone; sgnht's one (its own shards), whose state carries a momentum and a thermostat and whose step-size
    # schedule spans warmup and sampling; and the reference posterior, whose chains start from sgld's warmup
    # files. The other kernels' jobs are of these kinds and run locally only (each cluster job costs about 10 s).
    samplers = ["sgld", "sgnht"]
    targets = [f"results/predictive/{sampler}.h5" for sampler in [*samplers, "reference"]]
    out = snakemake(workdir, *targets, "--profile", str(profile), config=config, env=cluster.env, timeout=900,
                    runner=(str(REPO / "tests/slurm_snakemake.py"),))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + cluster.logs()

    # Every cluster job went through sbatch: Slurm started it (the main scheduler logs "Allocate", the
    # backfill scheduler, which starts jobs that wait, "Started") and the plugin kept its log.
    allocations = re.findall(r"(?:sched: Allocate|sched/backfill: _start_job: Started) JobId=(\d+)",
                             (cluster.root / "slurmctld.log").read_text())
    # MNIST and the OOD set; sgld's 2 shards, sgnht's one and the reference posterior's one.
    jobs = {"preprocess": 2, "warmup": 4, "sample": 4}
    assert len(set(allocations)) >= sum(jobs.values())
    logs = workdir / ".snakemake" / "slurm_logs"
    for rule, count in jobs.items():
        assert len(list((logs / f"rule_{rule}").rglob("*.log"))) == count, rule
    for rule in ("download", "gather"):
        assert not (logs / f"rule_{rule}").exists(), f"{rule} is a localrule"

    # Same arrays as the local run of the same config.
    for sampler in [*samplers, "reference"]:
        here = h5io.read_predictive(workdir / f"results/predictive/{sampler}.h5", draws=True)[0]
        there = h5io.read_predictive(local_dir / f"results/predictive/{sampler}.h5", draws=True)[0]
        for key in ("log_probs", "mean_entropy", "last_log_probs", "labels"):
            np.testing.assert_array_equal(here["test"][key], there["test"][key], err_msg=f"{sampler} {key}")
        np.testing.assert_array_equal(here["draws"]["test"]["true_class_log_prob"],
                                      there["draws"]["test"]["true_class_log_prob"], err_msg=sampler)


def test_a_missing_partition_surfaces_slurms_own_error_and_leaves_no_output(cluster, tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data"] |= {"source": "synthetic", "synthetic": {"n_train": 64, "n_test": 16, "seed": None}}
    config["sampling"]["batch_size"] = 32
    profile = slurm_profile(tmp_path)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings["default-resources"]["slurm_partition"] = "no-such-partition"
    (profile / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    workdir = tmp_path / "run"
    workdir.mkdir()
    out = snakemake(workdir, "results/data/mnist.h5", "--profile", str(profile), config=config, env=cluster.env)
    assert out.returncode != 0
    assert "invalid partition specified: no-such-partition" in out.stdout + out.stderr
    assert (workdir / "results/data/mnist/raw.npz").exists()  # the local download ran
    assert not (workdir / "results/data/mnist.h5").exists()


def run_on(slurm: SlurmCluster) -> str:
    """The cluster name a one-task job sees, from a step started the way the executor's job step starts it."""
    inner = "env -u SLURM_CONF srun --overlap printenv SLURM_CLUSTER_NAME"  # the job step drops SLURM_CONF
    done = subprocess.run(["srun", "sh", "-c", inner], env=slurm.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + slurm.logs()
    return done.stdout.strip()


def test_a_second_cluster_on_the_host_is_its_own_and_a_taken_port_is_named(cluster, tmp_path):
    # Two test runs on one host: each has its own controller, and stopping one leaves the other running.
    other = SlurmCluster(tmp_path / "other")
    other.start()
    try:
        assert other.name != cluster.name and other.ctld_port != cluster.ctld_port
        assert run_on(other) == other.name
        assert run_on(cluster) == cluster.name
    finally:
        other.stop()
    assert run_on(cluster) == cluster.name

    # A port another program holds: the error is the daemon's own, with the port.
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"slurmctld could not bind port {port}: .*Address already in use"):
            SlurmCluster(tmp_path / "taken", ctld_port=port).start()
