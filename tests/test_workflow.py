"""The workflow run through Snakemake itself, as a user runs it, on tiny synthetic data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import IDX_NAMES, REPO, idx_bytes, write_idx_folder

from bnn_sgmcmc import h5io

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1"]
    path = REPO / "config.yaml"
    if config is not None:
        path = workdir / "test-config.yaml"
        path.write_text(yaml.safe_dump(config))
    # --configfile takes several values: it goes last, after any targets.
    cmd += [*args, "--configfile", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def synthetic_config(base_config, tmp_path) -> dict:
    base_config["data"]["source"] = "synthetic"
    base_config["data"]["synthetic"] |= {"n_train": 1024, "n_test": 256}
    base_config["model"]["hidden"] = [64]
    base_config["sampling"] |= {
        "batch_size": 64, "warmup_steps": 300, "sampling_steps": 100, "eval_every": 50,
        "chains": 2, "shards": 2, "checkpoint_every": 0, "compilation_cache": str(tmp_path / "jax-cache"),
    }
    base_config["samplers"]["sgld"]["step_size"] = 5e-4
    base_config["samplers"]["sghmc"] |= {"step_size": 1e-2, "alpha": 2.0, "num_integration_steps": 3}
    return base_config


def test_dry_run_of_the_default_config_lists_the_data_jobs(tmp_path):
    out = snakemake(tmp_path, "-n")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    counts = {"download": 1, "preprocess": 1, "warmup": 2, "sample": 2, "gather": 2, "all": 1}
    for job, count in counts.items():
        assert re.search(rf"^{job}\s+{count}$", text, re.M), job
    for path in ("results/data/mnist.h5", "results/sampling/sgld/shard0/warmup.h5",
                 "results/sampling/sghmc/shard0/predictive.h5", "results/predictive/sghmc.h5"):
        assert path in text


def test_data_half_of_the_dag_runs_on_synthetic_data(tmp_path, synthetic_config):
    synthetic_config["data"]["synthetic"] |= {"n_train": 120, "n_test": 40}
    out = snakemake(tmp_path, "results/data/mnist.h5", config=synthetic_config)
    assert out.returncode == 0, out.stderr
    h5 = tmp_path / "results/data/mnist.h5"
    with h5py.File(h5) as f:
        assert f["train/images"].shape == (120, 28, 28)
        assert f["test/labels"].shape == (40,)
        assert f.attrs["num_classes"] == 10 and list(f.attrs["image_shape"]) == [28, 28]
        assert f.attrs["source_form"] == "synthetic"
        assert "jax" in f.attrs["versions"]
    for log in ("download", "preprocess"):
        assert "INFO" in (tmp_path / f"results/logs/{log}/mnist.log").read_text()
    assert (tmp_path / "results/data/mnist/provenance.json").is_file()
    again = snakemake(tmp_path, "results/data/mnist.h5", config=synthetic_config)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_schema_violation_stops_before_any_job(tmp_path, synthetic_config):
    synthetic_config["data"]["num_classes"] = 1
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert "1 is less than the minimum of 2" in out.stderr
    assert "['data']['properties']['num_classes']" in out.stderr
    assert not (tmp_path / "results").exists()


def test_an_unknown_key_is_refused(tmp_path, synthetic_config):
    synthetic_config["data"]["sourse"] = "mnist"
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert "'sourse' was unexpected" in out.stderr


def test_a_missing_local_source_stops_before_any_job(tmp_path, synthetic_config):
    synthetic_config["data"]["source"] = str(tmp_path / "no-such-folder")
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert "data.source: the folder" in out.stderr and "does not exist" in out.stderr
    assert not (tmp_path / "results").exists()


def test_bad_idx_data_fails_with_one_message_and_no_output(tmp_path, synthetic_config, images):
    folder = write_idx_folder(tmp_path / "mnist", images, gz=False)
    (folder / IDX_NAMES[("test", "images")]).write_bytes(idx_bytes(images.test.labels))
    synthetic_config["data"]["source"] = str(folder)
    out = snakemake(tmp_path, "results/data/mnist.h5", config=synthetic_config)
    assert out.returncode != 0
    assert "ERROR:" in out.stderr and "t10k-images-idx3-ubyte has IDX magic number 0x00000801" in out.stderr
    assert not (tmp_path / "results/data/mnist/raw.npz").exists()
    assert not (tmp_path / "results/data/mnist/provenance.json").exists()
    log = (tmp_path / "results/logs/download/mnist.log").read_text()
    assert "magic number" in log and "Traceback" not in log


def test_idx_source_through_the_workflow(tmp_path, synthetic_config, images):
    folder = write_idx_folder(tmp_path / "mnist", images, gz=True)
    synthetic_config["data"]["source"] = str(folder)
    out = snakemake(tmp_path, "results/data/mnist.h5", config=synthetic_config)
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "results/data/mnist.h5") as f:
        assert f.attrs["source_form"] == "idx"
        assert (f["train/images"][...] == images.train.images).all()


def test_both_samplers_run_with_two_chains_in_two_shards(tmp_path, synthetic_config):
    out = snakemake(tmp_path, "--cores", "2", config=synthetic_config)
    assert out.returncode == 0, out.stderr
    for sampler, grads_per_step in (("sgld", 1), ("sghmc", 3)):
        arrays, attrs = h5io.read_predictive(tmp_path / f"results/predictive/{sampler}.h5")
        assert arrays["chain"].tolist() == [0, 1]
        assert [run["chains"] for run in attrs["shard_runs"]] == [[0], [1]]
        assert arrays["test"]["probs"].shape == (2, 256, 10)
        ensemble = arrays["trace"]["test"]["ensemble_accuracy"][-1]
        assert ensemble.min() > 0.6, (sampler, ensemble)  # chance is 0.1
        assert arrays["trace"]["grad_evals"][-1] == 100 * grads_per_step
        assert "error:" in (tmp_path / f"results/logs/sample/{sampler}/shard1.log").read_text()
    assert not any((tmp_path / "results/checkpoints").rglob("*.h5"))

    # Operational settings rerun nothing; a sampling setting reruns sampling, not warmup.
    synthetic_config["sampling"]["checkpoint_every"] = 30
    out = snakemake(tmp_path, "-n", config=synthetic_config)
    assert "Nothing to be done" in out.stdout + out.stderr
    synthetic_config["sampling"]["sampling_steps"] = 150
    out = snakemake(tmp_path, "-n", config=synthetic_config)
    text = out.stdout + out.stderr
    assert re.search(r"^sample\s+4$", text, re.M) and not re.search(r"^warmup\s", text, re.M)
