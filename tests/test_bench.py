"""The benchmark commands on tiny synthetic data: their records have every field (timings are not asserted). The
three that run a whole benchmark (marked bench, about 50 s on 2 cores) run in make test-bench, not make test."""

from __future__ import annotations

import json

import pytest

from bnn_sgmcmc.bench import speed

pytestmark = pytest.mark.workflow


@pytest.mark.bench
def test_benchmark_record_has_every_field(tmp_path, capsys):
    result = speed.main(["--scale", "0.01", "--samplers", "sgld", "--repeats", "2", "--chains", "1,2",
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


@pytest.mark.bench
def test_function_space_benchmark_record(tmp_path):
    from bnn_sgmcmc.bench import function_space

    result = function_space.main(["--draws", "20", "--chains", "2", "--examples", "50", "--sampling-chains", "2",
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
    them all in float32, so every error is 0 (on a GPU, docs/benchmarks-history.md has them). The arithmetic
    count is the forward pass's 2 n (784 x 16 + 16 x 10) and the backward pass's twice that, per chain."""
    import numpy as np

    from bnn_sgmcmc.bench import precision

    assert precision.gradient_flops(100, [784, 16, 10]) == 6 * 100 * (784 * 16 + 16 * 10)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64).astype(np.uint8)
    labels[0] = 9  # ten classes whatever the draw
    rows = precision.measure(images, labels, [16], chains=2, repeats=2, seeds=2)
    assert [r["matmul_precision"] for r in rows] == list(precision.PRECISIONS)
    for row in rows:
        assert "error" not in row and row["seconds_per_gradient"] > 0 and row["flops_per_second"] > 0
        assert row["jax_precision"] == ("default" if row["matmul_precision"] == "default" else "float32")
        assert all(row[f"rms_error_of_change_t{t:g}"] == 0.0 for t in precision.MOVES), row


@pytest.mark.bench
def test_reference_kernel_benchmark_counts_the_slowest_chains_gradients():
    """Every kernel gets a row; the workflow's hmc kernel spends L + 1 gradients a step; NUTS's vmapped cost is the
    largest trajectory of the chains, so it uses at most all of it. (The diagnostics: the next test.)"""
    import numpy as np

    from bnn_sgmcmc.bench import reference

    rng = np.random.default_rng(0)
    labels = np.arange(96) % 10
    images = rng.integers(0, 256, (96, 6, 6), dtype=np.uint8)
    rows = reference.measure((images[:64], labels[:64]), (images[64:], labels[64:]), [4], chains=2, warmup=16,
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
        reference.measure((images, labels), (images, labels), [4], kernels=("hmc",))


def test_reference_kernel_benchmark_ess_matches_autocorrelation_theory():
    """On AR(1) draws x_t = rho x_(t-1) + e_t the effective sample size is n (1 - rho) / (1 + rho); independent
    draws give about n. The summary's ESS per 1,000 gradients divides by the gradients spent on the draws, and a
    test example whose draws never change is left out of its R-hat and ESS."""
    import numpy as np

    from bnn_sgmcmc.bench import reference

    rng = np.random.default_rng(1)
    steps, chains, rho = 5000, 4, 0.8
    noise = rng.normal(size=(steps, chains, 3))
    ar = np.empty_like(noise)
    ar[0] = noise[0] / np.sqrt(1 - rho**2)
    for t in range(1, steps):
        ar[t] = rho * ar[t - 1] + noise[t]
    ar[:, :, 2] = 0.0  # a test example every draw gives log-probability 0
    draws = {"log_posterior": noise[:, :, 0], "mean_test_loglik": ar[:, :, 0], "test_logprob": ar}
    out = reference.summarise(draws, gradients=2 * steps)
    n = steps * chains
    assert out["log_posterior"]["ess_bulk"] == pytest.approx(n, rel=0.05)
    assert out["mean_test_loglik"]["ess_bulk"] == pytest.approx(n * (1 - rho) / (1 + rho), rel=0.1)
    assert out["mean_test_loglik"]["ess_bulk_per_1000_gradients"] == pytest.approx(
        out["mean_test_loglik"]["ess_bulk"] * 1000 / (2 * steps))
    assert out["test_logprob"]["ess_bulk_median_per_1000_gradients"] == pytest.approx(
        n * (1 - rho) / (1 + rho) * 1000 / (2 * steps), rel=0.1)
    assert out["test_logprob"]["rhat_max"] < 1.01 and out["test_logprob"]["share_rhat_over_1.01"] == 0
    assert out["test_logprob"]["examples"] == 3 and out["test_logprob"]["diagnosed"] == 2


def test_evaluation_benchmark_one_shape_variants_give_every_sets_predictions_with_fewer_matrix_shapes(tmp_path):
    """Issue #14's first lever: the sets concatenated, or zero-padded to whole chunks, give each set's
    log-probabilities as NumPy's forward pass does (padding and splitting right), from 2 matrix-product shapes
    instead of 2 per distinct set size; per_set is the workflow's own evaluation. The record has every row."""
    import jax
    import numpy as np

    from bnn_sgmcmc import model
    from bnn_sgmcmc.bench import evaluation

    assert evaluation.parse_sets("30,20x2,10") == [30, 20, 20, 10]
    with pytest.raises(ValueError, match="positive set sizes"):
        evaluation.parse_sets("0x2")
    with pytest.raises(ValueError, match="unknown variant 'padded'"):
        evaluation.measure([4], [1], [8], input_dim=12, variants=("padded",))

    sizes = [30, 20, 20, 10]  # chunks of 16: every set padded, the 30 into two chunks
    mlp = model.build([8], 10)
    params = model.init_chains(jax.random.split(jax.random.key(0), 2), mlp, 12)
    rng = np.random.default_rng(0)
    xs = [rng.random((n, 12), dtype=np.float32) for n in sizes]
    w = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    for name, program in evaluation.programs(model.predict_fn(mlp), sizes, chunk=16).items():
        outputs = jax.jit(program)(params, xs)
        assert [o.shape for o in outputs] == [(2, n, 10) for n in sizes], name
        for x, out in zip(xs, outputs):
            for c in range(2):
                hidden = np.maximum(x @ w["Dense_0"]["kernel"][c] + w["Dense_0"]["bias"][c], 0)
                logits = hidden @ w["Dense_1"]["kernel"][c] + w["Dense_1"]["bias"][c]
                expected = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
                np.testing.assert_allclose(np.asarray(out[c]), expected, atol=2e-6, err_msg=name)

    evaluation.main(["--out", str(tmp_path), "--sets", "30,20x2,10", "--chains", "2", "--hidden", "8",
                     "--chunk", "16", "--repeats", "1", "--input-dim", "12"])
    record = json.loads(next(tmp_path.glob("evaluation-*.json")).read_text())
    rows = {(r["chains"], r["variant"]): r for r in record["rows"]}
    assert set(rows) == {(2, v) for v in evaluation.VARIANTS}
    for (chains, variant), row in rows.items():
        assert row["compile_seconds"] > 0 and row["seconds"] > 0 and row["max_abs_difference"] < 2e-6, row
        # Each set's two layers on the CPU: 3 distinct sizes give 6 shapes; one shape for both one-shape variants.
        assert (row["gemms"], row["distinct_gemm_shapes"]) == ((8, 6) if variant == "per_set" else (2, 2)), row
    assert rows[(2, "per_set")]["identical"] and rows[(2, "per_set")]["max_abs_difference"] == 0
