"""The memory estimate (bnn_sgmcmc.memory): within a factor of two of a real job's measured peak, and a config too
large for the machine refused before any job, naming the keys to lower."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, snakemake
from harness import SAMPLING

from bnn_sgmcmc import memory, schema
from bnn_sgmcmc.plan import sampler_sampling

#: The job of the test below, in a fresh process: its peak resident memory comes back, as the kernel's VmHWM of the
#: process's own memory map (ru_maxrss would carry over the peak of the pytest worker that forked it, which exec
#: keeps: 1 GB and more late in the suite).
JOB = """
import json, re, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import harness
harness.job({kind!r}, {data!r}, {tmp!r}, "sgld", chains=range({chains}), model_config={model!r},
            sampling={sampling!r}, evaluation={{"draws_per_chain": 15}})
print(json.dumps(int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024))
"""


#: Ten steps of each phase: the peak comes in the first.
STEPS = SAMPLING | {"warmup_steps": 10, "sampling_steps": 10, "eval_every": 10}


@pytest.mark.parametrize("hidden, chains", [([16], 2), ([2048], 16)], ids=["runtime-bound", "weights-bound"])
def test_the_estimate_is_within_a_factor_of_two_of_a_real_jobs_peak(data_h5, tmp_path, hidden, chains):
    """A warmup and a sampling job of sgld on the tests' synthetic data (512 training and 128 test images), measured
    in a process of their own: one whose memory is mostly JAX's runtime, and one of 16 chains of a 784-2048-10
    network (1.6 M weights), whose weights and their work are about as large as the runtime."""
    config = schema.with_defaults({
        "data": {"source": "synthetic", "synthetic": {"n_train": 512, "n_test": 128}}, "model": {"hidden": hidden},
        "sampling": STEPS | {"chains": chains}, "diagnostics": {"draws_per_chain": 15},
        "shift": {"rotations": [], "noise": []}, "samplers": {"sgld": {"kernel": "sgld", "step_size": 5e-4}},
    })
    entry, sampling = config["samplers"]["sgld"], sampler_sampling(config["sampling"], config["samplers"]["sgld"])
    model = {"hidden": hidden, "prior_scale": 1.0, "init": "flax"}
    # The larger job's warmup alone: its sampling job holds the same weights (measured: 1.21 GB against 1.08).
    for kind, phase in (("warmup", "warmup"), ("sample", "sampling"))[: 1 if chains > 2 else 2]:
        warm = {"warmup": str(tmp_path / "a" / "warmup.h5")} if kind == "sample" else {}
        code = JOB.format(tests=str(REPO / "tests"), kind=kind, data=data_h5, tmp=str(tmp_path), chains=chains,
                          model=model, sampling=STEPS).replace(
            "evaluation=", "".join(f"{k}={v!r}, " for k, v in warm.items()) + "evaluation=")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        peak = json.loads(out.stdout.strip().splitlines()[-1])
        estimated = memory.estimate(config, "sgld", entry, sampling, phase, {"train": 512, "test": 128}).total
        assert 0.5 < estimated / peak < 2, (phase, memory.gigabytes(estimated), memory.gigabytes(peak))
        print(f"{hidden} x {chains} chains, {phase}: estimated {memory.gigabytes(estimated)}, peak "
              f"{memory.gigabytes(peak)}")


def test_a_model_too_large_for_the_machine_is_refused_in_the_dry_run(tmp_path):
    """model.hidden [100000000] (7.8 x 10^10 weights) is refused before any job, not after a traceback minutes in."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data"]["source"] = "synthetic"
    config["model"]["hidden"] = [100_000_000]
    out = snakemake(tmp_path, "-n", config=config)
    assert out.returncode != 0
    # (Snakemake's log goes to stdout or stderr by how the test process set up logging.)
    line = next(line for line in (out.stderr + out.stdout).splitlines() if "Invalid config" in line)
    assert line.startswith("Invalid config: model.hidden, ") and "would need about" in line, out.stderr[-2000:]
    assert f"more than this machine's {memory.gigabytes(memory.machine_memory())}" in line
    assert not (tmp_path / "results").exists()


def test_the_default_config_fits_a_laptop():
    """config.yaml's largest job (a sampling job) needs well under 2 GB: the estimate refuses no laptop run."""
    config = schema.with_defaults(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert memory.largest_job(config, *memory.plan_runs(config)).total < 2 * 2**30
