"""The benchmark command on tiny synthetic data: its record has every field (timings are not asserted)."""

from __future__ import annotations

import json

import pytest

from bnn_sgmcmc import bench

pytestmark = pytest.mark.workflow


def test_benchmark_record_has_every_field(tmp_path, capsys):
    result = bench.main(["--scale", "0.01", "--samplers", "sgld", "--repeats", "2", "--chains", "1,2",
                         "--matmul-size", "256", "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("bench-*.json")).read_text())
    assert record["phases"] == json.loads(json.dumps(result["phases"]))
    assert {"backend", "device_kind"} <= set(record["device"]) and "jax" in record["versions"]
    assert record["schedule"] == {"batch_size": 512, "warmup_steps": 23, "sampling_steps": 10, "eval_every": 10}
    assert {(r["impl"], r["phase"]) for r in record["phases"]} == {
        (impl, phase) for impl in ("baseline", "ours") for phase in ("warmup", "sampling")
    }
    for row in record["phases"]:
        for field in ("seconds", "seconds_with_compile", "compile_seconds", "steps_per_second",
                      "grad_evals_per_second", "peak_host_mib", "floor_seconds", "times_floor", "final_accuracy"):
            assert row[field] > 0, (row["impl"], row["phase"], field)
        assert row["seconds_with_compile"] == pytest.approx(row["seconds"] + row["compile_seconds"])
        assert row["repeats"] == len(row["all_seconds"]) == 2
        if row["impl"] == "ours":  # the second run in the process reads its programs from the fresh cache
            assert 0 < row["compile_seconds_cached"] < row["compile_seconds"], row
    assert {(r["sampler"], r["phase"]) for r in record["speedup"]} == {("sgld", "warmup"), ("sgld", "sampling")}
    assert [(r["chains"], r["phase"]) for r in record["chain_scaling"]] == [
        (1, "warmup"), (1, "sampling"), (2, "warmup"), (2, "sampling")
    ]
    assert record["matmul"]["flops_per_second"] > 0 and record["flops"]["test_pass"] > record["flops"]["gradient"] / 3
    assert (tmp_path / next(tmp_path.glob("bench-*.tsv")).name).read_text().startswith("impl\tsampler")
    assert "speedup sgld warmup" in capsys.readouterr().out


def test_function_space_benchmark_record(tmp_path):
    from bnn_sgmcmc import bench_function_space

    result = bench_function_space.main(["--draws", "20", "--chains", "2", "--examples", "50", "--sampling-chains", "2",
                                        "--sampling-steps", "30", "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("function_space-*.json")).read_text())
    assert record["report"] == json.loads(json.dumps(result["report"]))
    assert record["report"]["examples"] == 50 and record["report"]["flagged"] >= 1  # a tenth disagree
    assert 0 < record["report"]["seconds"] and record["report"]["peak_host_mib"] > 0
    sampling = record["sampling"]
    assert sampling["with"]["draws"] == 15 and sampling["without"]["draws"] == 0  # every 2nd of 30 kept samples
    assert sampling["overhead"] == pytest.approx(sampling["with"]["seconds"] / sampling["without"]["seconds"] - 1)


def test_precision_benchmark_times_every_value_and_on_a_cpu_finds_no_error():
    """Every matmul_precision value gets a timing and its log-density errors against float32; a CPU computes
    them all in float32, so every error is 0 (on a GPU, docs/benchmarks.md has them). The arithmetic count is
    the forward pass's 2 n (784 x 16 + 16 x 10) and the backward pass's twice that, per chain."""
    import numpy as np

    from bnn_sgmcmc import bench_precision

    assert bench_precision.gradient_flops(100, [784, 16, 10]) == 6 * 100 * (784 * 16 + 16 * 10)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64).astype(np.uint8)
    labels[0] = 9  # ten classes whatever the draw
    rows = bench_precision.measure(images, labels, [16], chains=2, repeats=2, seeds=2)
    assert [r["matmul_precision"] for r in rows] == list(bench_precision.PRECISIONS)
    for row in rows:
        assert "error" not in row and row["seconds_per_gradient"] > 0 and row["flops_per_second"] > 0
        assert row["jax_precision"] == ("default" if row["matmul_precision"] == "default" else "float32")
        assert all(row[f"rms_error_of_change_t{t:g}"] == 0.0 for t in bench_precision.MOVES), row


def test_reference_kernel_benchmark_counts_the_slowest_chains_gradients():
    """Every kernel gets a row; the workflow's hmc kernel spends L + 1 gradients a step; NUTS's vmapped cost is the
    largest trajectory of the chains, so it uses at most all of it. (The diagnostics: the next test.)"""
    import numpy as np

    from bnn_sgmcmc import bench_reference

    rng = np.random.default_rng(0)
    labels = np.arange(96) % 10
    images = rng.integers(0, 256, (96, 6, 6), dtype=np.uint8)
    rows = bench_reference.measure((images[:64], labels[:64]), (images[64:], labels[64:]), [4], chains=2, warmup=16,
                                   budget=240, kernels=("hmc5", "chees", "nuts"), max_doublings=4, diagnose=False)
    assert [r["kernel"] for r in rows] == ["hmc5", "chees", "nuts"]
    hmc, chees, nuts = rows
    assert hmc["sampling_steps"] == 240 // 6 and hmc["sampling_gradients"] == 240 and hmc["warmup_gradients"] == 96
    assert hmc["trajectory_length"] == pytest.approx(5 * np.mean(hmc["step_size"]))
    assert 1 <= nuts["leapfrog_steps"] <= 2**4 - 1 and 0 < nuts["share_of_vmapped_gradients_used"] <= 1
    assert nuts["sampling_gradients"] >= nuts["sampling_steps"] * nuts["leapfrog_steps"]
    for row in rows:
        assert 0 <= row["acceptance"] <= 1 and row["seconds"] > 0 and row["sampling_gradients"] > 0, row
    with pytest.raises(ValueError, match="unknown kernel 'hmc'"):
        bench_reference.measure((images, labels), (images, labels), [4], kernels=("hmc",))


def test_reference_kernel_benchmark_ess_matches_autocorrelation_theory():
    """On AR(1) draws x_t = rho x_(t-1) + e_t the effective sample size is n (1 - rho) / (1 + rho); independent
    draws give about n. The summary's ESS per 1,000 gradients divides by the gradients spent on the draws, and a
    test example whose draws never change is left out of its R-hat and ESS."""
    import numpy as np

    from bnn_sgmcmc import bench_reference

    rng = np.random.default_rng(1)
    steps, chains, rho = 5000, 4, 0.8
    noise = rng.normal(size=(steps, chains, 3))
    ar = np.empty_like(noise)
    ar[0] = noise[0] / np.sqrt(1 - rho**2)
    for t in range(1, steps):
        ar[t] = rho * ar[t - 1] + noise[t]
    ar[:, :, 2] = 0.0  # a test example every draw gives log-probability 0
    draws = {"log_posterior": noise[:, :, 0], "mean_test_loglik": ar[:, :, 0], "test_logprob": ar}
    out = bench_reference.summarise(draws, gradients=2 * steps)
    n = steps * chains
    assert out["log_posterior"]["ess_bulk"] == pytest.approx(n, rel=0.05)
    assert out["mean_test_loglik"]["ess_bulk"] == pytest.approx(n * (1 - rho) / (1 + rho), rel=0.1)
    assert out["mean_test_loglik"]["ess_bulk_per_1000_gradients"] == pytest.approx(
        out["mean_test_loglik"]["ess_bulk"] * 1000 / (2 * steps))
    assert out["test_logprob"]["ess_bulk_median_per_1000_gradients"] == pytest.approx(
        n * (1 - rho) / (1 + rho) * 1000 / (2 * steps), rel=0.1)
    assert out["test_logprob"]["rhat_max"] < 1.01 and out["test_logprob"]["share_rhat_over_1.01"] == 0
    assert out["test_logprob"]["examples"] == 3 and out["test_logprob"]["diagnosed"] == 2
