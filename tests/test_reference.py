"""The reference posterior: its config, where its chains start, and what stops it before any job."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import REPO, snakemake
from harness import SAMPLERS, assert_same_results, job

from bnn_sgmcmc import config, experiment, h5io, kernels, plan, sampling, schema, states
from bnn_sgmcmc.errors import ConfigError


def test_the_reference_block_becomes_an_hmc_sampler_with_its_own_steps_and_chains():
    cfg = schema.with_defaults({"samplers": {"sgld": {"kernel": "sgld", "step_size": 1e-4}},
                                "reference": {"num_integration_steps": 20, "chains": 4, "sampling_steps": 200}})
    entry = plan.reference_sampler(cfg)
    assert entry["kernel"] == "hmc" and entry["num_integration_steps"] == 20 and entry["target_acceptance"] == 0.8
    assert entry["matmul_precision"] == "float32"
    cfg["reference"]["matmul_precision"] = "BF16_BF16_F32_X3"
    assert plan.reference_sampler(cfg)["matmul_precision"] == "BF16_BF16_F32_X3"
    run = plan.reference_sampling(cfg)
    assert run["chains"] == 4 and run["sampling_steps"] == 200 and run["warmup_steps"] == 100
    assert run["batch_size"] == cfg["sampling"]["batch_size"] and run["save_weights_every"] == 0
    assert plan.reference_init(cfg) == "sgld"
    cfg["reference"]["init"] = "prior"
    assert plan.reference_init(cfg) is None


@pytest.mark.parametrize("change, message", [
    ({"reference": {"init": "nope"}}, "reference.init = 'nope' is neither 'warmup', 'prior' nor a sampler"),
    ({"reference": {"chains": 2, "shards": 3}}, "reference.shards = 3 exceeds reference.chains = 2"),
    ({"reference": {"sampling_steps": 5, "thinning": 10}}, "reference.thinning = 10 exceeds"),
    ({"reference": {"matmul_precision": "tf32"}}, "'tf32' is not one of ['float32', 'default', 'BF16_BF16_F32_X3'"),
    ({"samplers": {"reference": {"kernel": "sgld", "step_size": 1e-4}}}, "the name 'reference' is kept"),
])
def test_a_bad_reference_stops_before_any_job(tmp_path, base_config, change, message):
    cfg = base_config | {"data": base_config["data"] | {"source": "synthetic"}} | change
    out = snakemake(tmp_path, "-n", config=cfg)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_reference_chains_start_where_the_warmups_chains_ended_in_global_order(data_h5, tmp_path):
    """Two warmup shards of sgld (chains [0] and [1]): reference chains 0..2 start from chains 0, 1, 0."""
    shards = [job("warmup", data_h5, tmp_path, "sgld", chains=(c,), tag=f"w{c}") for c in (1, 0)]
    spec = experiment.SamplerJob(
        data=data_h5, sampler="reference", sampler_config=schema.sampler_settings({"kernel": "hmc", "step_size": 1e-3}),
        model_config={"hidden": [16], "prior_scale": 1.0, "init": "flax"},
        sampling_config={"batch_size": 32, "batching": "replacement", "warmup_steps": 2, "eval_every": 1},
        seed=0, chains=[0, 1, 2], shard=0, shards=1, checkpoint=str(tmp_path / "c.h5"), out=str(tmp_path / "o.h5"),
        init_from=tuple(map(str, shards)),
    )
    setup = experiment.setup(spec)
    positions = states.warmup_positions(spec.init_from, setup)
    ended = {int(h5io.read_arrays(p)[0]["chain"][0]): h5io.read_arrays(p)[0]["state"] for p in shards}
    for chain, source in ((0, 0), (1, 1), (2, 0)):
        np.testing.assert_array_equal(positions["Dense_0"]["kernel"][chain], ended[source]["Dense_0"]["kernel"][0])
    # The warmup files the chains start from are part of the reference's fingerprint.
    assert len(setup.fingerprint["init_from"]) == 2


def test_the_reference_needs_two_chains_for_its_noise_floor():
    with pytest.raises(Exception, match="chains"):
        schema.with_defaults({"reference": {"chains": 1}})
    with pytest.raises(ConfigError, match="reference.init"):
        cfg = schema.with_defaults({"samplers": {"a": {"kernel": "sgld", "step_size": 1e-4}}, "reference": {"init": "b"}})
        config.check_reference(cfg)


def test_hmc_takes_no_step_size_schedule():
    cfg = schema.with_defaults({"samplers": {"h": {"kernel": "hmc", "step_size": 1e-3,
                                                   "schedule": {"kind": "cyclical"}}}})
    with pytest.raises(ConfigError, match="samplers.h: kernel hmc adapts its own step size"):
        config.check(cfg)


def test_hmc_compiles_its_matrix_products_in_float32_unless_told_otherwise_and_a_cpu_ignores_it(data_h5, tmp_path):
    """On NVIDIA A100/H100/H200 GPUs JAX's default precision rounds a float32 product's operands to TF32,
    an error of about 0.7 in the log density's change over a move on MNIST (docs/benchmarks-history.md), which a
    Metropolis test would count as energy error. So the hmc kernel's programs say float32 (HIGHEST) unless
    ``matmul_precision`` says otherwise, and the SG-MCMC kernels' keep JAX's default. A CPU computes every
    one of them in float32 (the bfloat16 algorithms as float32): the same arrays, whatever the setting."""
    def hmc(**settings):
        return kernels.build("hmc", lambda p, b: 0.0, schema.sampler_settings(SAMPLERS["hmc"] | settings))

    assert hmc().matmul_precision == "float32" and hmc(matmul_precision="default").matmul_precision is None
    assert kernels.build("sgld", lambda p, b: 0.0, schema.sampler_settings(SAMPLERS["sgld"])).matmul_precision is None
    operands = sampling.Operands(sampling.Data(jnp.ones((4, 3)), jnp.zeros(4)), jnp.zeros(()), {})

    def product(precision):
        compiled = sampling._compile(lambda ops, w: ops.data.x @ w, operands, jnp.ones((3, 2)), precision=precision)
        return next(line for line in compiled.program.func.as_text().splitlines() if " dot(" in line)

    assert "operand_precision={highest,highest}" in product(hmc().matmul_precision)
    assert "operand_precision" not in product(None) and "algorithm=dot_bf16_bf16_f32_x3" in product("BF16_BF16_F32_X3")
    # XLA's CPU compiler cannot emit the bfloat16 algorithms in every product of the programs; a CPU takes float32.
    x3 = schema.sampler_settings(SAMPLERS["hmc"] | {"matmul_precision": "BF16_BF16_F32_X3"})
    assert kernels.module("hmc").precision(x3, "cpu") == "float32"
    assert kernels.module("hmc").precision(x3, "gpu") == "BF16_BF16_F32_X3"
    tf32x3 = schema.sampler_settings(SAMPLERS["hmc"] | {"matmul_precision": "TF32_TF32_F32_X3"})
    assert kernels.module("hmc").precision(tf32x3, "cpu") == "float32"
    runs = {precision: job("warmup", data_h5, tmp_path, "hmc", tag=precision, sampling={"warmup_steps": 20},
                           sampler_config=SAMPLERS["hmc"] | {"matmul_precision": precision})
            for precision in ("float32", "default", "BF16_BF16_F32_X3")}
    assert h5io.read_arrays(runs["float32"])[1]["sampler"]["matmul_precision"] == "float32"
    assert_same_results(runs["float32"], runs["default"])
    assert_same_results(runs["float32"], runs["BF16_BF16_F32_X3"])


def test_a_full_batch_job_logs_its_estimate_from_a_one_gradient_probe_before_its_first_chunk(
        data_h5, tmp_path, caplog):
    """A chunk of reference steps takes an hour on a CPU (10 steps of 51 full-data gradients of 8 chains): before
    it, the job times one full-data gradient and says what the phase will take. Only full-batch kernels probe."""
    with caplog.at_level("INFO", logger="bnn_sgmcmc"):
        job("warmup", data_h5, tmp_path, "hmc", tag="h", sampling={"warmup_steps": 20})
    lines = [r.getMessage() for r in caplog.records if "a probe took" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    match = re.search(r"hmc warmup: a probe took ([\d.e+-]+) s for one full-data gradient of the 2 chains here "
                      r"\((\d+) images\); at 4 gradients a step, the 20 steps will take about \d+ s", lines[0])
    assert match and int(match[2]) == h5io.read_data_h5(data_h5, splits=("train",))[0].train.labels.size, lines[0]
    probe_line = caplog.records.index(next(r for r in caplog.records if "a probe took" in r.getMessage()))
    first_chunk = next(i for i, r in enumerate(caplog.records) if "hmc warmup step 10/20" in r.getMessage())
    assert probe_line < first_chunk
    caplog.clear()
    with caplog.at_level("INFO", logger="bnn_sgmcmc"):
        job("warmup", data_h5, tmp_path, "sgld", tag="s", sampling={"warmup_steps": 20})
    assert "a probe took" not in caplog.text
    # The README's CPU case: 0.92 s a gradient per chain, 8 chains, 1,100 steps of 201 gradients.
    assert [sampling.duration(t) for t in (7, 600, 9000, 0.92 * 8 * 201 * 1100)] == ["7 s", "10.0 min", "2.5 h",
                                                                                   "18.8 days"]


def test_the_cpu_example_plans_a_reference_and_the_samplers_on_a_subset(tmp_path, base_config):
    """examples/reference-cpu.yaml on top of the reference example: 2,000 training images, a 20-unit layer,
    8 chains of config.yaml's three samplers and a scaled-step sgld, and the reference beside them."""
    cfg = base_config | {"data": base_config["data"] | {"source": "synthetic"}}
    examples = (REPO / "examples/reference.yaml", REPO / "examples/reference-cpu.yaml")
    out = snakemake(tmp_path, "-n", config=cfg, configfiles=examples)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    # config.yaml's 3 samplers and ensemble, sgld_scaled, the 4 other baselines, and the reference.
    assert jobs["warmup"] == jobs["sample"] == "10" and jobs["agreement"] == "1"
    small = yaml.safe_load(examples[1].read_text())
    assert small["data"]["subset"]["train"] == 2000 and small["model"]["hidden"] == [20]
    assert small["sampling"]["chains"] == 8
    # The deep ensemble has a member per sgld chain; ensemble_budget's members each train for an sgld chain's
    # gradients, warmup and sampling (3 steps an epoch of 2,000 images in minibatches of 512).
    baselines = small["samplers"]
    assert baselines["ensemble"]["chains"] == 8 and baselines["map"]["chains"] == 1
    steps_per_epoch = 2000 // base_config["sampling"]["batch_size"]
    budget = base_config["sampling"]["warmup_steps"] + base_config["sampling"]["sampling_steps"]
    assert abs(baselines["ensemble_budget"]["epochs"] * steps_per_epoch - budget) < steps_per_epoch
    # The scaled step keeps the notebook's step size over the curvature of 60,000 images.
    assert small["samplers"]["sgld_scaled"]["step_size"] == pytest.approx(4.5e-5 * 60_000 / 2_000)
