"""The workflow run through Snakemake itself, as a user runs it, on tiny synthetic data."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    IDX_NAMES,
    REPO,
    idx_bytes,
    make_synthetic_config,
    snakemake,
    write_idx_folder,
)
from harness import assert_same_results

from bnn_sgmcmc import diagnostics, h5io, report

pytestmark = pytest.mark.workflow


@pytest.fixture
def synthetic_config(base_config, compilation_cache) -> dict:
    return make_synthetic_config(base_config, compilation_cache)


def test_dry_run_of_the_default_config_lists_the_data_jobs(tmp_path):
    out = snakemake(tmp_path, "-n")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    counts = {"download": 1, "preprocess": 1, "warmup": 4, "sample": 4, "gather": 4, "all": 1}
    for job, count in counts.items():
        assert re.search(rf"^{job}\s+{count}$", text, re.M), job
    for path in ("results/data/mnist.h5", "results/sampling/sgld/shard0/warmup.h5",
                 "results/sampling/sghmc/shard0/predictive.h5", "results/predictive/sghmc.h5"):
        assert path in text


def test_the_baselines_example_adds_a_map_network_and_laplace_ensembles(tmp_path):
    """examples/baselines.yaml on config.yaml: one MAP network and two Laplace approximations around 5 members
    (the model's prior, and each member's tuned by its marginal likelihood) beside the samplers and the deep
    ensemble, each a warmup (training) and a sampling job."""
    out = snakemake(tmp_path, "-n", "--config", "data={source: synthetic}",
                    configfiles=(REPO / "config.yaml", REPO / "examples/baselines.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert jobs["warmup"] == jobs["sample"] == "7"
    for name in ("map", "laplace", "laplace_marglik", "ensemble"):
        assert f"results/sampling/{name}/shard0/warmup.h5" in out.stdout


def test_the_quick_example_plans_every_report_on_a_small_problem(tmp_path):
    """examples/quick.yaml (the whole workflow in about a minute: 66 s on a 2-core CPU on real MNIST, 2026-12-06):
    every sampler of config.yaml and every report rule, on a subset and a small network."""
    out = snakemake(tmp_path, "-n", "--config", "data={source: synthetic}",
                    configfiles=(REPO / "config.yaml", REPO / "examples/quick.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert jobs["warmup"] == jobs["sample"] == "4" and jobs["summary"] == jobs["compare"] == "1"
    quick = yaml.safe_load((REPO / "examples/quick.yaml").read_text())
    assert quick["data"]["subset"]["train"] == 2000 and quick["model"]["hidden"] == [32]


def test_nested_config_on_the_command_line_keeps_its_numbers(tmp_path):
    """The README's `--config sampling='{chains: 64, shards: 8}'`: Snakemake passes '64' as a string."""
    out = snakemake(tmp_path, "-n", "--config", "data={source: synthetic}", "sampling={chains: 4, shards: 2}",
                    "reference={chains: 4, shards: 3}")
    assert out.returncode == 0, out.stderr
    # 3 samplers and the deep ensemble (its own 5 chains) x 2 shards, and the reference block (null by default,
    # an object here) in 3.
    assert re.search(r"^warmup\s+11$", out.stdout + out.stderr, re.M)


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


def message(stderr: str) -> str:
    """The line after Snakemake's 'WorkflowError in file ...' header: the first line of the workflow's message."""
    lines = stderr.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("WorkflowError")) + 1]


def test_a_schema_violation_stops_before_any_job(tmp_path, synthetic_config):
    synthetic_config["data"]["num_classes"] = 1
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert message(out.stderr) == "Invalid config: data.num_classes: 1 is less than the minimum of 2."
    assert "Failed validating" not in out.stderr  # no dump of the schema
    assert not (tmp_path / "results").exists()


def test_a_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path, synthetic_config):
    """An immutable results/checkpoints (chattr +i: refused even to root) stops warmup with one line, no output."""
    checkpoints = tmp_path / "results" / "checkpoints"
    checkpoints.mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(checkpoints)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    try:
        synthetic_config["data"]["synthetic"] |= {"n_train": 128, "n_test": 32}
        synthetic_config["sampling"]["checkpoint_every"] = 0  # a checkpoint at the first chunk
        out = snakemake(tmp_path, "results/sampling/sgld/shard0/warmup.h5", config=synthetic_config)
    finally:
        subprocess.run(["chattr", "-i", str(checkpoints)], check=True)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("ERROR:")]
    assert lines == [
        "ERROR: cannot write results/checkpoints/sgld: Operation not permitted; give your user write access to "
        f"{checkpoints} (ls -ld {checkpoints}) or run in a folder you own, then rerun."
    ], out.stderr[-3000:]
    assert "Traceback" not in (tmp_path / "results/logs/warmup/sgld/shard0.log").read_text()
    assert not (tmp_path / "results/sampling/sgld/shard0/warmup.h5").exists()


@pytest.mark.parametrize("destination", ["immutable/report.html", "missing/report.html", "immutable"])
def test_a_report_destination_that_cannot_be_written_stops_the_run_before_any_job(tmp_path, synthetic_config,
                                                                                     destination):
    """--report's file is written by Snakemake after the DAG, with --report-after-run after the whole run; a
    folder it cannot write (immutable: refused even to root), one that does not exist, or a folder given as the
    file is named in one line when the Snakefile is read, and nothing runs."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    try:
        out = snakemake(tmp_path, "--report", destination, "--report-after-run", config=synthetic_config)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert out.returncode != 0
    assert message(out.stderr) == {
        "immutable/report.html": "--report: cannot write immutable/report.html: Operation not permitted; give your "
                                 f"user write access to {folder} (ls -ld {folder}) or run in a folder you own, then "
                                 "rerun.",
        "missing/report.html": "--report: cannot write missing/report.html: the folder missing does not exist; "
                               "create it (mkdir -p missing) or name a file in a folder that exists.",
        "immutable": "--report: cannot write immutable: it is a folder; name a file, for example "
                     "immutable/report.html.",
    }[destination], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "missing").exists()
    assert list(folder.iterdir()) == []


def test_ctrl_c_stops_every_job_with_one_line_and_the_rerun_resumes_from_their_checkpoints(tmp_path, synthetic_config):
    """SIGINT to Snakemake's process group, as Ctrl-C in a terminal sends it, while two warmup jobs run; then the
    same once the rerun's jobs have resumed and checkpointed past where they stopped. The jobs have a million
    steps, so none can finish before the signal: each run waits only for checkpoints, written every chunk."""
    config = synthetic_config
    config["samplers"] = {"sgld": config["samplers"]["sgld"]}  # two shards
    config.pop("reference")
    config["sampling"] |= {"warmup_steps": 1_000_000, "checkpoint_every": 0}
    shards = (0, 1)
    targets = [f"results/sampling/sgld/shard{s}/warmup.h5" for s in shards]
    checkpoints = [tmp_path / f"results/checkpoints/sgld/shard{s}/warmup.h5" for s in shards]
    logs = [tmp_path / f"results/logs/warmup/sgld/shard{s}.log" for s in shards]

    def step(checkpoint) -> int:
        with h5py.File(checkpoint) as f:  # written whole and renamed into place: never read half-written
            return int(f.attrs["step"])

    def group_alive(pgid) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(pgid) -> None:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)

    def ctrl_c_once(ready) -> None:
        run = snakemake(tmp_path, *targets, "--cores", "2", "--set-threads", "warmup=1", config=config, popen=True)
        try:
            deadline = time.time() + 180
            while not ready() and run.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if run.poll() is not None or not ready():
                kill(run.pid)
                pytest.fail(f"not ready for Ctrl-C in 180 s, or Snakemake ended: {run.communicate()[1][-3000:]}")
            os.killpg(run.pid, signal.SIGINT)
            try:
                _, stderr = run.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                tree = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:20,args", "-g", str(run.pid)],
                                      capture_output=True, text=True).stdout
                kill(run.pid)
                pytest.fail(f"Snakemake still ran 60 s after Ctrl-C:\n{tree}\n{run.communicate()[1][-5000:]}")
            deadline = time.time() + 10
            while group_alive(run.pid) and time.time() < deadline:
                time.sleep(0.05)
            assert not group_alive(run.pid), "a process of the run outlived Snakemake"
        finally:  # nothing left running, whatever failed
            kill(run.pid)
        assert run.returncode != 0
        # Each job's one line; Snakemake's own lines around them, and no traceback from anyone.
        assert stderr.count("Interrupted: rerun the same command to resume from the last checkpoint.") == 2, stderr
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert all(c.exists() for c in checkpoints) and not any((tmp_path / t).exists() for t in targets)

    ctrl_c_once(lambda: all(c.exists() for c in checkpoints))
    stopped = [step(c) for c in checkpoints]
    assert all(0 < s < 1_000_000 for s in stopped)
    for log in logs:
        assert "Traceback" not in log.read_text()

    def resumed(s, log) -> bool:  # Snakemake removes the interrupted job's log before rerunning it
        text = log.read_text() if log.exists() else ""
        return re.search(rf"resuming from checkpoint \S+ at step {s}$", text, re.M) is not None

    # The rerun needs no --unlock, resumes each job where it stopped, and goes on from there.
    ctrl_c_once(lambda: all(resumed(s, log) and step(c) > s for s, log, c in zip(stopped, logs, checkpoints)))


def test_a_full_disk_stops_the_job_with_one_line_and_freed_space_resumes_it_to_the_same_arrays(tmp_path,
                                                                                               synthetic_config):
    """results/ on a small tmpfs with room for one checkpoint of sgld's warmup but not for the next beside it: the
    job stops with one line naming the file, the space it needed and what to do, leaving its first checkpoint and
    no partial file; with the space freed, the same command resumes from that checkpoint to the arrays of an
    uninterrupted run."""
    synthetic_config["data"]["synthetic"] |= {"n_train": 256, "n_test": 64}
    synthetic_config["sampling"] |= {"checkpoint_every": 0, "eval_every": 50}  # a checkpoint every chunk
    target = "results/sampling/sgld/shard0/warmup.h5"
    (tmp_path / "clean").mkdir()
    clean = snakemake(tmp_path / "clean", "--cores", "1", target, config=synthetic_config)
    assert clean.returncode == 0, clean.stderr[-3000:]
    size = (tmp_path / "clean" / target).stat().st_size
    results = tmp_path / "full" / "results"
    results.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(results)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        data = snakemake(tmp_path / "full", "--cores", "1", "results/data/mnist.h5", config=synthetic_config)
        assert data.returncode == 0, data.stderr[-3000:]
        free = shutil.disk_usage(results).free
        filler = results / "filler"
        filler.write_bytes(bytes(free - int(1.5 * size) - 64 * 1024))  # one checkpoint, and the logs, fit
        full = snakemake(tmp_path / "full", "--cores", "1", target, config=synthetic_config)
        assert full.returncode != 0
        lines = [line for line in full.stderr.splitlines() if line.startswith("ERROR:")]
        checkpoint = "results/checkpoints/sgld/shard0/warmup.h5"
        assert len(lines) == 1 and re.fullmatch(
            rf"ERROR: cannot write {checkpoint}: No space left on device \(the file needs up to [\d.]+ MB, "
            rf"[\d.]+ MB are free\); the disk is full: free space on it \(df -h {results}/checkpoints/sgld/shard0\), "
            "then rerun.", lines[0]), full.stderr[-3000:]
        assert (tmp_path / "full" / checkpoint).is_file() and not (tmp_path / "full" / target).exists()
        assert not [p for p in results.rglob(".*.tmp-*")]
        filler.unlink()
        resumed = snakemake(tmp_path / "full", "--cores", "1", target, config=synthetic_config)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming from checkpoint" in (results / "logs/warmup/sgld/shard0.log").read_text()
        assert_same_results(tmp_path / "clean" / target, tmp_path / "full" / target)
    finally:
        subprocess.run(["umount", str(results)], check=True)


def test_an_unknown_key_is_refused_with_the_keys_allowed_there(tmp_path, synthetic_config):
    synthetic_config["sampling"]["chians"] = 8
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert message(out.stderr).startswith("Invalid config: sampling.chians: unknown key (allowed: batch_size, batching, chains,")
    assert len(out.stderr.splitlines()) < 10
    assert not (tmp_path / "results").exists()


def test_a_missing_local_source_stops_before_any_job(tmp_path, synthetic_config):
    synthetic_config["data"]["source"] = str(tmp_path / "no-such-folder")
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert "data.source: the folder" in out.stderr and "does not exist" in out.stderr
    assert not (tmp_path / "results").exists()


def test_bad_idx_data_fails_with_one_message_and_no_output(tmp_path, synthetic_config, images):
    folder = write_idx_folder(tmp_path / "mnist", images, gz=False)
    synthetic_config["sampling"]["batch_size"] = 16  # of the 30 training images
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
    synthetic_config["sampling"]["batch_size"] = 16  # of the 30 training images
    synthetic_config["data"]["source"] = str(folder)
    out = snakemake(tmp_path, "results/data/mnist.h5", config=synthetic_config)
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "results/data/mnist.h5") as f:
        assert f.attrs["source_form"] == "idx"
        assert (f["train/images"][...] == images.train.images).all()


def test_every_sampler_runs_two_chains_in_its_shards(finished_run):
    """sgld's chains in two jobs (sampling.shards: 2), the other samplers' vmapped in one (their own shards: 1)."""
    workdir, _ = finished_run
    for sampler, grads_per_step, shards in (("sgld", 1, [[0], [1]]), ("sghmc", 3, [[0, 1]]), ("sgnht", 1, [[0, 1]])):
        arrays, attrs = h5io.read_predictive(workdir / f"results/predictive/{sampler}.h5")
        assert arrays["chain"].tolist() == [0, 1]
        assert [run["chains"] for run in attrs["shard_runs"]] == shards
        assert arrays["test"]["probs"].shape == (2, 256, 10)
        ensemble = arrays["trace"]["test"]["ensemble_accuracy"][-1]
        assert ensemble.min() > 0.6, (sampler, ensemble)  # chance is 0.1
        assert arrays["trace"]["grad_evals"][-1] == 100 * grads_per_step
        assert "error:" in (workdir / f"results/logs/sample/{sampler}/shard{len(shards) - 1}.log").read_text()
        assert not (workdir / f"results/sampling/{sampler}/shard{len(shards)}").exists()
    assert not (workdir / "results/checkpoints").exists()  # removed with the last checkpoint


def test_sampling_evaluates_shifted_ood_sets_and_records_function_space_draws(finished_run):
    """Every kept sample was evaluated on the shifted and OOD sets, and recorded its true-class
    log-probability of every test example."""
    workdir, config = finished_run
    arrays, _ = h5io.read_predictive(workdir / "results/predictive/sgld.h5", draws=True)
    assert sorted(arrays["shift"]) == ["noise_0.5", "rotation_0", "rotation_180", "rotation_90"]
    for data in arrays["shift"].values():
        assert data["log_probs"].shape == (2, 128, 10) and data["labels"].shape == (128,)
    # Level 0 is the unshifted start of the test set: the same predictions as there.
    np.testing.assert_allclose(arrays["shift"]["rotation_0"]["log_probs"], arrays["test"]["log_probs"][:, :128],
                               atol=1e-5)
    assert arrays["ood"]["log_probs"].shape == (2, 128, 10) and "labels" not in arrays["ood"]
    draws = arrays["draws"]["test"]["true_class_log_prob"]  # [D, C, n] float16
    assert draws.shape == (100, 2, 256) and draws.dtype == np.float16
    np.testing.assert_array_equal(arrays["draws"]["step"], arrays["trace"]["sample_step"])
    # The ensemble is the mean of the samples: the draws (every kept sample here) must average to it.
    labels = arrays["test"]["labels"].astype(int)
    ensemble = arrays["test"]["probs"][:, np.arange(256), labels]  # [C, n]
    np.testing.assert_allclose(np.exp(draws.astype(np.float64)).mean(axis=0), ensemble, atol=2e-3)
    # A sample's mean log-likelihood is the mean of its true-class log-probabilities.
    np.testing.assert_allclose(draws.astype(np.float64).mean(axis=2), arrays["trace"]["test"]["mean_log_likelihood"],
                               rtol=2e-3)


#: config.yaml's samplers and its deep ensemble.
DEFAULT_SAMPLERS = ("sgld", "sghmc", "sghmc_persistent", "ensemble")
#: The synthetic run's samplers (conftest.make_synthetic_config) whose chains are Markov chains, and its baselines.
MARKOV = ["sgld", "sghmc", "sghmc_persistent", "sgnht"]
BASELINES = ["ensemble"]
FIGURES = [
    "warmup.png", "comparison.png", "threshold.png", "rejection.png",
    *[f"uncertainty/{s}_{kind}.png" for s in DEFAULT_SAMPLERS for kind in ("images", "per_digit")],
    *[f"calibration/{s}.png" for s in DEFAULT_SAMPLERS],
    *[f"diagnostics/{s}{kind}.png" for s in DEFAULT_SAMPLERS for kind in ("", "_function_space", "_least_converged")],
    "shift.png", "ood.png", "decisions.png", "ranking.png", "agreement.png",
    *[f"diagnostics/reference{kind}.png" for kind in ("", "_function_space", "_least_converged")],
]


def test_every_figure_table_and_the_report_exist(finished_run):
    workdir, _ = finished_run
    for figure in FIGURES:
        assert (workdir / "results/figures" / figure).stat().st_size > 5000, figure
    summary = pd.read_csv(workdir / "results/tables/summary.tsv", sep="\t")
    assert summary["sampler"].tolist() == ["sgld", "sghmc", "sghmc_persistent", "ensemble", "sgnht"]
    assert summary["schedule"].tolist() == ["constant", "cyclical", "constant", "cosine", "polynomial"]
    assert list(summary.columns) == list(report.SUMMARY_COLUMNS)
    assert (summary["ensemble_accuracy"] > 0.6).all() and (summary["chains"] == 2).all()
    calibration = pd.read_csv(workdir / "results/tables/calibration/sgld.tsv", sep="\t")
    assert calibration["predictor"].tolist() == ["ensemble", "last sample", "chain 0 ensemble", "chain 1 ensemble"]
    assert len(pd.read_csv(workdir / "results/tables/uncertainty/sghmc.tsv", sep="\t")) == 10
    # The diagnostics, OOD and decision headline numbers reach the summary.
    markov = summary.set_index("sampler").loc[MARKOV]
    for column in ("rhat", "ess_bulk", "ess_tail", "ess_bulk_per_second", "ess_bulk_per_1k_grad_evals",
                   "fs_share_rhat_1.1"):
        values = pd.to_numeric(markov[column])
        assert values.notna().all() and (values > 0).all(), column
    for column in ("ood_auroc_entropy", "ood_auroc_mi", "decision_cost"):
        assert summary[column].notna().all() and (summary[column] > 0).all(), column
    # Unseen glyphs are told apart well above chance (by the mutual information between draws, which a MAP
    # member's one draw per member has too: its members disagree).
    assert (summary["ood_auroc_mi"] > 0.6).all()
    # 100 kept samples of 2 chains are far from an ESS of 200: the verdict says so, and how far.
    assert markov["verdict"].str.startswith("not converged: ").all()
    assert (pd.to_numeric(markov["more_samples_per_chain"]) > 0).all()
    assert (pd.to_numeric(markov["more_seconds"]) > 0).all()
    diag = pd.read_csv(workdir / "results/tables/diagnostics/sgld.tsv", sep="\t")
    assert diag[["set", "quantity"]].values.tolist()[:2] == [["test", "mean log-likelihood"], ["test", "accuracy"]]
    assert len(diag) == 2 * 5 + 1  # two quantities of test and 4 shifted sets, then the function space
    fs = diag.iloc[-1]
    assert fs["quantity"] == diagnostics.FUNCTION_SPACE and fs["values"] <= 256
    assert 0 <= fs["share_rhat_ok"] <= fs["share_rhat_1.1"] <= 1
    least = pd.read_csv(workdir / "results/tables/diagnostics/sgld_least_converged.tsv", sep="\t")
    assert len(least) == 6 and least["rhat"].is_monotonic_decreasing and least["rhat"].iloc[0] == fs["rhat"]
    # The pooled ensemble averages the chains' ensembles: it lies between the smallest and the largest.
    assert (least["chain_mean_min"] <= least["ensemble_true_class_prob"] + 1e-6).all()
    assert (least["ensemble_true_class_prob"] <= least["chain_mean_max"] + 1e-6).all()
    shift_table = pd.read_csv(workdir / "results/tables/shift.tsv", sep="\t")
    # The last sample's exact NLL is minus its traced mean log-likelihood, averaged over the chains.
    arrays, _ = h5io.read_predictive(workdir / "results/predictive/sgld.h5")
    traced = -arrays["trace"]["shift"]["noise_0.5"]["mean_log_likelihood"][-1].astype(np.float64).mean()
    last = shift_table.set_index(["sampler", "shift", "level", "predictor"]).loc[("sgld", "noise", 0.5, "last sample")]
    assert last["nll"] == pytest.approx(traced, rel=1e-5)
    assert len(shift_table) == 5 * 5 * 2  # samplers x levels (noise borrows rotation 0) x predictors
    rot = shift_table[(shift_table["shift"] == "rotation") & (shift_table["predictor"] == "ensemble")]
    assert (rot.groupby("sampler")["accuracy"].agg(lambda a: a.iloc[0] > a.iloc[-1])).all()  # 0 beats 180 degrees
    decisions = pd.read_csv(workdir / "results/tables/decisions.tsv", sep="\t")
    assert {"4->9", "7->1"} <= set(decisions.columns) and len(decisions) == 5 * 4  # samplers x rules
    for _, rows in decisions.groupby("sampler"):
        bayes, argmax = rows.set_index("rule").loc["bayes (posterior)"], rows.set_index("rule").loc["argmax"]
        assert bayes["expected_cost"] <= argmax["expected_cost"] + 1e-12  # the rule minimises it
        assert bayes["4->9"] <= argmax["4->9"] and bayes["7->1"] <= argmax["7->1"]
    assert (workdir / "results/report.html").stat().st_size > 100_000


def test_the_reference_posterior_runs_from_sgld_warmup_and_scores_every_sampler(finished_run):
    workdir, config = finished_run
    arrays, attrs = h5io.read_predictive(workdir / "results/predictive/reference.h5")
    assert attrs["sampler"]["kernel"] == "hmc" and arrays["chain"].tolist() == [0, 1]
    assert arrays["trace"]["sample_step"].tolist() == list(range(1, 41))
    # Every step's HMC statistics, in warmup (the step size adapting) and in sampling (fixed).
    kernel, warm = arrays["kernel_trace"], arrays["warmup"]["kernel_trace"]
    assert kernel["step"].tolist() == list(range(1, 41)) and warm["step"].tolist() == list(range(1, 21))
    assert kernel["acceptance_rate"].shape == (40, 2) and np.all(kernel["step_size"] == kernel["step_size"][0])
    assert not np.all(warm["step_size"] == warm["step_size"][0])
    # 6 full-data gradients a step, each 1,024 / 64 = 16 minibatch gradients' worth.
    assert arrays["trace"]["grad_evals"][-1] == 40 * 6 * 16
    # It started where sgld's warmup ended: its first warmup evaluation is close to sgld's last.
    sgld, _ = h5io.read_predictive(workdir / "results/predictive/sgld.h5")
    first = arrays["warmup"]["trace"]["test_accuracy"][0]
    assert np.all(np.abs(first - sgld["warmup"]["trace"]["test_accuracy"][-1]) < 0.1), first
    table = pd.read_csv(workdir / "results/tables/agreement.tsv", sep="\t")
    assert list(table.columns) == list(report.AGREEMENT_COLUMNS)
    assert table["sampler"].tolist() == ["reference", *config["samplers"]]
    assert table["agreement"].between(0.5, 1).all() and table["total_variation"].between(0, 0.5).all()
    ref = table.iloc[0]
    assert ref["accuracy_diff"] == 0 and 0 < ref["acceptance_rate"] <= 1 and ref["step_size"] > 0
    energy = np.asarray(kernel["energy"], np.float64).T  # [chains, steps]
    e_bfmi = min(np.square(np.diff(e)).mean() / np.var(e, ddof=1) for e in energy)
    assert ref["e_bfmi"] == pytest.approx(e_bfmi, rel=1e-5)  # the table keeps 6 significant digits
    sampler_rows = table.iloc[1:]
    assert sampler_rows["acceptance_rate"].isna().all() and (sampler_rows["device_seconds"] > 0).all()
    summary = pd.read_csv(workdir / "results/tables/summary.tsv", sep="\t").set_index("sampler")
    agreement = table.set_index("sampler")
    for name in config["samplers"]:
        assert summary.loc[name, "agreement"] == pytest.approx(agreement.loc[name, "agreement"])
    verdict = pd.read_csv(workdir / "results/tables/diagnostics/reference_verdict.tsv", sep="\t")
    # The column holds the baselines' "not a Markov chain" too: the reference's verdict reads back as text.
    assert str(bool(verdict["converged"].iloc[0])) == str(ref["converged"])
    if str(ref["converged"]) == "False":
        assert "reference posterior has not converged" in (workdir / "results/logs/report/agreement.log").read_text()


def test_the_baselines_run_through_every_report(finished_run):
    """config.yaml's deep ensemble, 2 members, through the same jobs and reports as the samplers: 5 epochs of
    1,024 // 64 = 16 steps of training, then one kept draw per member at no gradient; its tables say "not a
    Markov chain" where R-hat and ESS would be, and show how much the members disagree instead."""
    workdir, _ = finished_run
    ensemble, attrs = h5io.read_predictive(workdir / "results/predictive/ensemble.h5")
    assert attrs["schedule"]["warmup_steps"] == 80 and attrs["num_samples"] == 1 and attrs["warmup_grad_evals"] == 80
    assert ensemble["trace"]["grad_evals"].tolist() == [0] and attrs["sampler"]["schedule"]["kind"] == "cosine"
    assert ensemble["warmup"]["trace"]["test_accuracy"][-1].min() > 0.6  # trained: chance is 0.1
    verdict = pd.read_csv(workdir / "results/tables/diagnostics/ensemble_verdict.tsv", sep="\t").iloc[0]
    assert verdict["converged"] == verdict["rhat"] == diagnostics.NOT_A_MARKOV_CHAIN
    assert 0 < verdict["member_disagreement"] < 1 and 0 < verdict["member_total_variation"] < 1
    for kind in ("", "_function_space", "_least_converged"):
        assert (workdir / f"results/figures/diagnostics/ensemble{kind}.png").stat().st_size > 5000
    table = pd.read_csv(workdir / "results/tables/agreement.tsv", sep="\t").set_index("sampler")
    assert table.loc["ensemble", "total_grad_evals"] == 2 * 80 and table.loc["sgld", "total_grad_evals"] == 2 * 400
    assert table.loc["ensemble", "rhat"] == diagnostics.NOT_A_MARKOV_CHAIN
    comparison = pd.read_csv(workdir / "results/tables/comparison.tsv", sep="\t").set_index("sampler")
    assert comparison.loc[BASELINES, "rank_rhat"].isna().all() and comparison.loc[MARKOV, "rank_rhat"].notna().all()


def damage(path, name: str | None = None) -> str:
    """Overwrite with zeros up to 4 KB in the middle of the dataset ``name`` of an HDF5 file (None: its largest
    contiguous one), as a disk or copy error would; return the dataset's name."""
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda key, item: found.append((item.nbytes, key, item.id.get_offset()))
                     if isinstance(item, h5py.Dataset) and item.id.get_offset() is not None and item.nbytes
                     and name in (None, key) else None)
    nbytes, name, offset = max(found)
    size = min(4096, nbytes)
    with open(path, "r+b") as raw:
        raw.seek(offset + (nbytes - size) // 2)
        raw.write(bytes(size))
    return name


@pytest.mark.parametrize("damaged, dataset", [("results/predictive/sgld.h5", "test/log_probs"),
                                              ("results/data/mnist.h5", None),
                                              ("results/sampling/sghmc/shard0/warmup.h5", None)])
def test_a_damaged_file_stops_the_job_that_reads_it_and_nothing_downstream_is_written(finished_run, tmp_path, damaged,
                                                                                      dataset):
    """A finished run's predictive, data or warmup file, 4 KB of a dataset zeroed (one every reader of the file
    reads): Snakemake reruns what reads it (the file is newer), and the first job that does stops with one line
    naming the file, the dataset and how to remake it; no output is written after the damage."""
    workdir, config = finished_run
    copy_dir = tmp_path / "run"
    shutil.copytree(workdir, copy_dir, symlinks=True, ignore=shutil.ignore_patterns("import-audit"))
    name = damage(copy_dir / damaged, dataset)
    since = time.time()
    out = snakemake(copy_dir, "--cores", "2", config=config)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("ERROR:")]
    assert lines and set(lines) == {
        f"ERROR: {damaged} is damaged: the contents of its dataset '{name}' no longer match the SHA-256 digest "
        "written with them, so the file changed after it was written (a disk or copy error, or an edit). Remove it "
        f"and run snakemake again, which remakes it and what depends on it: rm {damaged}"}, out.stderr[-3000:]
    written = [p for p in (copy_dir / "results").rglob("*") if p.is_file() and p.stat().st_mtime > since
               and "logs" not in p.relative_to(copy_dir).parts]
    assert written == [], written


#: A sitecustomize for a job's Python: SIGKILL itself just before it renames its finished temporary file to the
#: output named in $BNN_KILL_BEFORE_RENAMING, as a kill between writing and renaming would.
KILL_BEFORE_RENAMING = """
import os, signal
_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(os.environ["BNN_KILL_BEFORE_RENAMING"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
"""


@pytest.mark.parametrize("output", ["results/tables/summary.tsv", "results/figures/comparison.png"])
def test_a_report_job_killed_while_writing_leaves_nothing_and_its_rerun_redoes_it(finished_run, tmp_path, output):
    """SIGKILL in a report job once its table or figure is written but not yet in place: the run fails, nothing is
    left under the output's name, and the rerun writes it (the same table as before) and removes the killed job's
    temporary file."""
    workdir, config = finished_run
    copy_dir = tmp_path / "run"
    shutil.copytree(workdir, copy_dir, symlinks=True, ignore=shutil.ignore_patterns("import-audit"))
    before = (copy_dir / output).read_bytes()
    (copy_dir / output).unlink()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_BEFORE_RENAMING)
    killed = snakemake(copy_dir, "--cores", "1", output, config=config,
                       extra_env={"PYTHONPATH": str(hook), "BNN_KILL_BEFORE_RENAMING": output})
    assert killed.returncode != 0
    assert not (copy_dir / output).exists()
    assert list((copy_dir / output).parent.glob(f".{(copy_dir / output).name}.tmp-*"))  # what the kill left
    again = snakemake(copy_dir, "--cores", "1", output, config=config)
    assert again.returncode == 0, again.stderr[-3000:]
    if output.endswith(".tsv"):
        assert (copy_dir / output).read_bytes() == before
    assert (copy_dir / output).stat().st_size > 5000 or output.endswith(".tsv")
    assert not list((copy_dir / output).parent.glob(f".{(copy_dir / output).name}.tmp-*"))


def test_what_reruns_after_a_config_change(finished_run):
    workdir, config = finished_run

    def jobs(changed: dict) -> str:
        out = snakemake(workdir, "-n", config=changed)
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr

    # Operational settings rerun nothing.
    changed = copy.deepcopy(config)
    changed["sampling"] |= {"checkpoint_every": 30, "gpu_autotuning": "cublas"}
    changed["diagnostics"]["threads"] = 2
    assert "Nothing to be done" in jobs(changed)
    # A plotting or analysis setting reruns report rules only.
    changed = copy.deepcopy(config)
    changed["analysis"]["threshold"] = 0.8
    changed["plots"]["dpi"] = 80
    changed["decision"]["reject"] = 0.2
    changed["diagnostics"] |= {"rhat_threshold": 1.05, "ess_per_chain": 50, "least_converged": 3}
    text = jobs(changed)
    assert re.search(r"^summary\s+1$", text, re.M) and re.search(r"^uncertainty\s+5$", text, re.M)
    # The reference's diagnostics too, and the agreement table.
    assert re.search(r"^decisions\s+1$", text, re.M) and re.search(r"^diagnostics\s+6$", text, re.M)
    assert re.search(r"^agreement\s+1$", text, re.M)
    assert not re.search(r"^(warmup|sample|gather)\s", text, re.M)
    # A data subset reruns preprocess and all that follows it, not the download.
    changed = copy.deepcopy(config)
    changed["data"]["subset"] = {"train": 1000, "test": None, "seed": None}
    text = jobs(changed)
    assert re.search(r"^preprocess\s+1$", text, re.M) and re.search(r"^warmup\s+7$", text, re.M)
    assert not re.search(r"^download\s", text, re.M)
    # A sampling setting reruns sampling, not warmup.
    changed = copy.deepcopy(config)
    changed["sampling"]["sampling_steps"] = 150
    text = jobs(changed)
    # sgld's 2 shards and one each of the others. sgnht's schedule spans warmup and sampling: its warmup
    # depends on the sampling steps too. A baseline's draws are its own (the ensemble's one): no rerun.
    assert re.search(r"^sample\s+5$", text, re.M) and re.search(r"^warmup\s+1$", text, re.M)
    # A schedule of the sampling phase alone reruns that sampler's sampling, not its warmup.
    changed = copy.deepcopy(config)
    changed["samplers"]["sghmc"]["schedule"]["cycles"] = 3
    text = jobs(changed)
    assert re.search(r"^sample\s+1$", text, re.M) and not re.search(r"^warmup\s", text, re.M)
    # So does the number of function-space draws, which sampling records.
    changed = copy.deepcopy(config)
    changed["diagnostics"]["draws_per_chain"] = 50
    text = jobs(changed)
    assert re.search(r"^sample\s+7$", text, re.M) and not re.search(r"^warmup\s", text, re.M)  # and the reference
    # The reference's own settings rerun the reference alone.
    changed = copy.deepcopy(config)
    changed["reference"]["target_acceptance"] = 0.7
    text = jobs(changed)
    assert re.search(r"^warmup\s+1$", text, re.M) and re.search(r"^sample\s+1$", text, re.M)


def test_the_report_renders_in_a_real_browser(finished_run, chromium):
    """Headless Chromium opens the report: every category and a figure's labels, no console errors."""
    from playwright.sync_api import sync_playwright

    workdir, _ = finished_run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((workdir / "results/report.html").as_uri())
            page.wait_for_load_state("networkidle")
            nav = page.inner_text("body")
            for category in ("01. Summary", "02. Warmup", "03. Sampler comparison", "04. Uncertainty",
                             "05. Threshold analysis", "06. Calibration", "07. Chain diagnostics",
                             "08. Distribution shift", "09. Out-of-distribution detection",
                             "10. Decisions under a cost matrix"):
                assert category in nav, category
            page.screenshot(path=str(ARTIFACTS / "report.png"))
            page.get_by_text("04. Uncertainty", exact=True).click()
            page.get_by_text("sghmc", exact=True).first.click()
            page.wait_for_timeout(300)
            listing = page.inner_text("body")
            for label in ("least confident test images", "uncertain predictions per digit"):
                assert label in listing, label
            page.screenshot(path=str(ARTIFACTS / "report-uncertainty.png"))
            page.get_by_text("Results", exact=True).click()  # back to the categories
            page.get_by_text("07. Chain diagnostics", exact=True).click()
            page.get_by_text("sgld", exact=True).first.click()
            page.wait_for_timeout(300)
            listing = page.inner_text("body")
            for label in ("function-space R-hat", "least converged test examples", "convergence verdict (table)"):
                assert label in listing, label
            page.screenshot(path=str(ARTIFACTS / "report-diagnostics.png"))
        finally:
            browser.close()
    assert errors == []


def test_the_workflow_runs_as_a_module_of_another_workflow(tmp_path, synthetic_config):
    """A host workflow in another folder uses this one as a Snakemake module (`module`, `use rule * from`)
    with its own config: every rule runs, on tiny synthetic data, and the HTML report renders."""
    import yaml
    from conftest import REPO

    # sgld alone, one chain: the programs of the shared run's sgld shards, which the session's cache holds.
    config = synthetic_config
    config["samplers"] = {"sgld": config["samplers"]["sgld"]}
    config.pop("reference")
    config["sampling"] |= {"chains": 1, "shards": 1}
    host = tmp_path / "host"
    host.mkdir()
    (host / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (host / "Snakefile").write_text(
        'configfile: "config.yaml"\n\n\n'
        f'module bnn_sgmcmc:\n    snakefile:\n        "{REPO / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from bnn_sgmcmc\n"
    )
    for args in (["--cores", "2"], ["--report", "results/report.html"]):
        out = snakemake(host, *args, config=config, snakefile=host / "Snakefile")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = pd.read_csv(host / "results/tables/summary.tsv", sep="\t")
    assert list(summary["sampler"]) == ["sgld"] and summary["ensemble_accuracy"].between(0, 1).all()
    assert (host / "results/figures/diagnostics/sgld_least_converged.png").stat().st_size > 0
    assert (host / "results/report.html").stat().st_size > 100_000
    assert not (host / "workflow").exists()  # nothing of this checkout was copied into the host


@pytest.mark.parametrize("change, first_line", [
    ({"seed": 2**63}, "seed: 9223372036854775808 is greater than the maximum of 9223372036854775806."),
    ({"decision": {"costs": None, "reject": float("nan")}}, "decision.reject: nan is not a finite number; give a finite value."),
    ({"model": {"prior_scale": float("inf")}}, "model.prior_scale: inf is not a finite number; give a finite value."),
    ({"samplers": {"sgld": {"kernel": "sgld", "step_size": float("nan")}}},
     "samplers.sgld.step_size: nan is not a finite number; give a finite value."),
    ({"samplers": {"s" * 65: {"kernel": "sgld", "step_size": 1e-4}}},
     f"samplers: the sampler name '{'s' * 65}' is 65 characters long, more than the 64 allowed (it becomes part of "
     "file names); shorten it."),
    ({"sampling": {"warmup_steps": 2**31}},
     "sampling.warmup_steps: 2147483648 is beyond 2147483647, the largest count the programs' 32-bit integers "
     "hold; lower it."),
    # The training set's size is known from the config here (from the file header for a local IDX folder).
    ({"sampling": {"batch_size": 2048}},
     "sampling.batch_size = 2048 exceeds the 1024 training images (data.synthetic.n_train); lower it."),
    # So is a subset's.
    ({"data": {"subset": {"train": 2000}}},
     "data.subset.train = 2000 exceeds the 1024 training images (data.synthetic.n_train); lower it, or set it to "
     "null to keep them all."),
    # A sampler's own shards take the sampling block's chains.
    ({"samplers": {"sgld": {"kernel": "sgld", "step_size": 1e-4, "shards": 3}}},
     "samplers.sgld.shards = 3 exceeds sampling.chains = 2: each shard needs at least one chain. Lower shards or "
     "raise chains."),
    # ... and its own chains where it has them (a deep ensemble's members).
    ({"samplers": {"ens": {"kernel": "map", "chains": 3, "shards": 4}}},
     "samplers.ens.shards = 4 exceeds samplers.ens.chains = 3: each shard needs at least one chain. Lower shards or "
     "raise chains."),
], ids=["seed-beyond-int64", "nan-reject", "inf-prior", "nan-step-size", "long-sampler-name", "steps-beyond-int32",
       "batch-beyond-data", "subset-beyond-data", "sampler-shards-beyond-chains", "ensemble-shards-beyond-members"])
def test_values_the_code_cannot_take_stop_before_any_job(tmp_path, synthetic_config, change, first_line):
    """Non-finite floats (which JSON Schema's bounds let through), seeds beyond what JAX and HDF5 take and
    sampler names too long for file names stop at parse time, the key named in the first line (#16)."""
    for key, value in change.items():
        # A block's keys are merged into it; the samplers block and scalars are replaced.
        merge = isinstance(value, dict) and key != "samplers"
        synthetic_config[key] = synthetic_config[key] | value if merge else value
    out = snakemake(tmp_path, config=synthetic_config)
    assert out.returncode != 0
    assert message(out.stderr) == f"Invalid config: {first_line}"
    assert not (tmp_path / "results").exists()


def test_every_file_the_workflow_writes_is_named_in_docs_output_md(finished_run):
    """docs/output.md names, by path pattern in backticks, every file a finished run leaves under results/ (#38)."""
    workdir, config = finished_run
    documented = set(re.findall(r"`([^`]+)`", (REPO / "docs/output.md").read_text()))
    # Longest names first, so that sghmc_persistent is not read as sghmc followed by "_persistent".
    names = sorted([*config["samplers"], "reference"], key=len, reverse=True)
    sampler = re.compile(r"(?<=/)(" + "|".join(map(re.escape, names)) + r")(?=[/._])")
    fmt = re.escape(config["plots"]["format"])
    patterns = {}
    for path in sorted((workdir / "results").rglob("*")):
        relative = path.relative_to(workdir).as_posix()
        # Logs are one per job, named by rule and wildcards: output.md gives their folder's pattern instead.
        if path.is_dir() or relative.startswith("results/logs/") or any(
                part.startswith(".") for part in path.relative_to(workdir).parts):
            continue
        pattern = re.sub(r"^results/data/(mnist|ood)(?=[/.])", "results/data/{dataset}", relative)
        pattern = sampler.sub("{sampler}", pattern)
        pattern = re.sub(r"/shard\d+/", "/shard{n}/", pattern)
        pattern = re.sub(rf"(?<=^results/figures/)(.*)\.{fmt}$", r"\1.{format}", pattern)
        patterns.setdefault(pattern, relative)
    assert patterns, "the finished run wrote nothing under results/"
    missing = {pattern: example for pattern, example in patterns.items() if pattern not in documented}
    assert not missing, f"not named in docs/output.md (pattern: an example): {missing}"
