"""The workflow run through Snakemake itself, as a user runs it, on tiny synthetic data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import REPO, IDX_NAMES, idx_bytes, write_idx_folder

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1"]
    path = REPO / "config.yaml"
    if config is not None:
        path = workdir / "test-config.yaml"
        path.write_text(yaml.safe_dump(config))
    cmd += ["--configfile", str(path)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)


@pytest.fixture
def synthetic_config(base_config) -> dict:
    base_config["data"]["source"] = "synthetic"
    base_config["data"]["synthetic"] |= {"n_train": 120, "n_test": 40}
    return base_config


def test_dry_run_of_the_default_config_lists_the_data_jobs(tmp_path):
    out = snakemake(tmp_path, "-n")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for job in ("download", "preprocess", "all"):
        assert f"\n{job} " in text
    assert "results/data/mnist.h5" in text


def test_data_half_of_the_dag_runs_on_synthetic_data(tmp_path, synthetic_config):
    out = snakemake(tmp_path, config=synthetic_config)
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
    again = snakemake(tmp_path, config=synthetic_config)
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
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert "ERROR:" in out.stderr and "t10k-images-idx3-ubyte has IDX magic number 0x00000801" in out.stderr
    assert not (tmp_path / "results/data/mnist/raw.npz").exists()
    assert not (tmp_path / "results/data/mnist/provenance.json").exists()
    log = (tmp_path / "results/logs/download/mnist.log").read_text()
    assert "magic number" in log and "Traceback" not in log


def test_idx_source_through_the_workflow(tmp_path, synthetic_config, images):
    folder = write_idx_folder(tmp_path / "mnist", images, gz=True)
    synthetic_config["data"]["source"] = str(folder)
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "results/data/mnist.h5") as f:
        assert f.attrs["source_form"] == "idx"
        assert (f["train/images"][...] == images.train.images).all()
