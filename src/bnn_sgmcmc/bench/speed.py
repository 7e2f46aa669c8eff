"""Benchmark: the reference notebook's loop against this package's fused sampler.

Run ``python -m bnn_sgmcmc.bench --source /path/to/mnist`` (``--help`` lists the
options). On the same data, steps and device it measures

* the baseline: the notebook's loop, reimplemented for measurement only
  (BlackJAX ``step`` jitted and called once per step from Python, a host-side
  generator drawing each minibatch with ``jax.random.choice``, the per-example
  likelihood of ``blackjax.sgmcmc.gradients``, and the test-set running average
  updated by a separate jitted call per step);
* this package's sampler, through the functions the workflow's jobs use;

per sampler and phase: seconds without and with compile, steps and gradient
evaluations per second, compile seconds, peak host (and device) memory and the
ratio baseline / ours; chain scaling; and the arithmetic floor (FLOPs over a
matrix-product rate measured on the same device). Each measurement runs in a
fresh process, so peak memory and compile times are its own; its repeats run in
that process, the first compiling cold and the others from the persistent cache. It writes a JSON
record and a TSV table and prints a short table.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOL = {"batch_size": 512, "warmup_steps": 2340, "sampling_steps": 1000, "eval_every": 100}
MODEL = {"hidden": [500], "prior_scale": 1.0, "init": "flax"}


# --------------------------------------------------------------------------- measurements (child processes)


def _peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _peak_device_mib() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


@functools.cache
def default_samplers() -> dict[str, dict[str, Any]]:
    """The notebook's samplers as config.yaml has them, with the schema's defaults filled in (read once:
    the record asks for them after every measurement). Read-only."""
    import yaml

    from bnn_sgmcmc import schema

    entries = yaml.safe_load((schema.schema_path().parents[2] / "config.yaml").read_text())["samplers"]
    return {name: schema.sampler_settings(entry) for name, entry in entries.items()}


def grads_per_step(sampler: str) -> int:
    from bnn_sgmcmc import kernels

    settings = default_samplers()[sampler]
    return kernels.grad_evals_per_step(settings["kernel"], settings)


def _setup(task: dict[str, Any]):
    from bnn_sgmcmc import experiment

    job = experiment.SamplerJob(
        data=task["data"], sampler=task["sampler"], sampler_config=task["sampler_config"],
        model_config=MODEL, sampling_config={"thinning": 1, "batching": "replacement"} | task["plan"],
        seed=task["seed"], chains=list(range(task["chains"])), shard=0, shards=1, checkpoint="", out="",
        evaluation=task.get("evaluation", {}),
    )
    return experiment.setup(job)


def measure_ours(task: dict[str, Any]) -> dict[str, Any]:
    """This package's fused sampler: warmup then sampling, as the workflow's jobs run them."""
    from bnn_sgmcmc import compilation, experiment, sampling

    compilation.enable_compilation_cache(task.get("compilation_cache") or "")
    setup = _setup(task)
    warm, warm_compile = sampling.run_warmup(
        setup.spec, setup.dynamics, setup.train, setup.plan, setup.keys,
        sampling.WarmupState(setup.initial_state(), 0), setup.eval_sets["test"], setup.predict, setup.chains,
    )
    state = sampling.new_sampling_state(warm.state, setup.eval_sets, setup.num_classes)
    state, sample_compile = sampling.run_sampling(
        setup.spec, setup.dynamics, setup.train, setup.plan, setup.keys, state,
        setup.eval_sets, setup.predict, setup.chains, every=setup.draws_every,
    )
    return {
        "warmup": {"seconds": warm.seconds, "compile_seconds": warm_compile,
                   "final_accuracy": float(np.mean(warm.trace["test_accuracy"][-1]))},
        "sampling": {"seconds": state.seconds, "compile_seconds": sample_compile,
                     "final_accuracy": float(np.mean(state.trace["test"]["ensemble_accuracy"][-1])),
                     "draws": len(state.draws.get("step", []))},
        "peak_host_mib": _peak_host_mib(),
        "peak_device_mib": _peak_device_mib(),
    }


def notebook_step(spec: Any, mlp: Any, data_size: int) -> Any:
    """The reference notebook's BlackJAX step for ``spec`` (SGLD or SGHMC), jitted: its one-hot log-likelihood
    and standard-normal log prior, through ``blackjax.sgmcmc.gradients``' per-example estimator."""
    import blackjax
    import jax
    import jax.numpy as jnp
    from jax.scipy.stats import norm

    def loglikelihood_fn(parameters, data):
        x, y = data
        return jnp.sum(y * mlp.apply({"params": parameters}, x))

    def logprior_fn(parameters):
        flat = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(parameters)])
        return jnp.sum(norm.logpdf(flat))

    grad_fn = blackjax.sgmcmc.gradients.grad_estimator(logprior_fn, loglikelihood_fn, data_size)
    settings = spec.settings
    if spec.kernel == "sgld":
        kernel = blackjax.sgld(grad_fn)
    elif spec.kernel == "sghmc":
        kernel = blackjax.sghmc(grad_fn, settings["num_integration_steps"], settings["alpha"], settings["beta"])
    else:
        raise ValueError(f"the notebook's loop has SGLD and SGHMC only, not {spec.kernel}")
    return jax.jit(kernel.step)


def measure_baseline(task: dict[str, Any]) -> dict[str, Any]:
    """The reference notebook's loop: one jitted BlackJAX step per Python iteration.

    The loop stays one function, as the notebook has it: its step, batch generator and running average are
    closures over one mutable state, and apart they would no longer read as the loop being measured."""
    import jax
    import jax.numpy as jnp

    from bnn_sgmcmc import compilation

    compilation.enable_compilation_cache(task.get("compilation_cache") or "")
    setup = _setup(task)
    spec, plan, mlp = setup.spec, setup.plan, setup.mlp
    x_train = setup.train.x.astype(jnp.float32) * setup.train.scale  # the notebook scales on the host
    y_train = jax.nn.one_hot(setup.train.y, setup.num_classes)
    x_test, y_test = setup.eval_sets["test"].x, setup.eval_sets["test"].labels
    data_size = x_train.shape[0]
    step_fn = notebook_step(spec, mlp, data_size)
    predict = jax.jit(lambda p, x: jnp.exp(mlp.apply({"params": p}, x)))
    update = jax.jit(lambda avg, p, n: (avg * n + p) / (n + 1))

    def batches(key):
        while True:
            _, key = jax.random.split(key)
            idx = jax.random.choice(key=key, a=jnp.arange(data_size), shape=(plan.batch_size,))
            yield x_train[idx], y_train[idx]

    def accuracy(state):
        return float(jnp.mean(jnp.argmax(predict(state, x_test), axis=1) == y_test))

    key = jax.random.key(task["seed"])
    state = jax.tree.map(lambda a: a[0], setup.kernel.position(setup.initial_state()))
    gen = batches(jax.random.key(task["seed"] + 1))

    def timed_loop(n_steps, body):
        first = time.perf_counter()
        body(0)  # the first call compiles
        jax.block_until_ready(state)
        compile_seconds = time.perf_counter() - first
        start = time.perf_counter()
        for i in range(1, n_steps):
            body(i)
        jax.block_until_ready(state)
        return compile_seconds, time.perf_counter() - start

    def warm_body(i):
        nonlocal key, state
        _, key = jax.random.split(key)
        state = step_fn(key, state, next(gen), spec.step_size)
        if i % plan.eval_every == 0:
            accuracy(state)

    warm_compile, warm_seconds = timed_loop(plan.warmup_steps, warm_body)
    warm_accuracy = accuracy(state)
    avg = jnp.zeros((x_test.shape[0], setup.num_classes))

    def sample_body(i):
        nonlocal key, state, avg
        _, key = jax.random.split(key)
        state = step_fn(key, state, next(gen), spec.step_size)
        avg = update(avg, predict(state, x_test), i)

    sample_compile, sample_seconds = timed_loop(plan.sampling_steps, sample_body)
    return {
        "warmup": {"seconds": warm_seconds, "compile_seconds": warm_compile, "final_accuracy": warm_accuracy},
        "sampling": {"seconds": sample_seconds, "compile_seconds": sample_compile,
                     "final_accuracy": float(jnp.mean(jnp.argmax(avg, axis=1) == y_test))},
        "peak_host_mib": _peak_host_mib(),
        "peak_device_mib": _peak_device_mib(),
    }


def measure_matmul(size: int) -> dict[str, Any]:
    """Float32 matrix-product rate at JAX's default precision: the device's practical peak."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"size": size, "seconds": seconds, "flops_per_second": 2 * size**3 / seconds}


def _child(args: tuple[str, dict[str, Any]]) -> Any:
    kind, task = args
    if kind == "matmul":  # and the device, which sizes it: one process for both
        device = _device()
        return {"device": device, "matmul": measure_matmul(task["size"] or (8192 if device["backend"] == "gpu" else 2048))}
    measure = {"ours": measure_ours, "baseline": measure_baseline}[kind]
    if task.get("compilation_cache") is not None:
        return [measure(task) for _ in range(task["repeats"])]
    # A cache of this process's own: the first run compiles cold, the repeats read it back.
    with tempfile.TemporaryDirectory() as cache:
        return [measure(task | {"compilation_cache": cache}) for _ in range(task["repeats"])]


def run_isolated(kind: str, task: dict[str, Any]) -> Any:
    """Run one measurement in a fresh process (its own peak memory, compile and caches).

    ``task["repeats"]`` runs share the process: the first one's compile is cold
    (unless ``task["compilation_cache"]`` names a cache that already holds the
    programs), the later ones' compile comes from the persistent cache.
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, ((kind, task),))


# --------------------------------------------------------------------------- arithmetic floor


def flops(input_dim: int, hidden: list[int], classes: int, batch: int, n_test: int) -> dict[str, float]:
    """Multiply-adds x 2 of the dense layers: a gradient is about 3 forward passes (forward + backward)."""
    widths = [input_dim, *hidden, classes]
    per_example = sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    return {"gradient": 3 * per_example * batch, "test_pass": per_example * n_test}


# --------------------------------------------------------------------------- the command


def _device() -> dict[str, Any]:
    from bnn_sgmcmc import provenance

    return provenance.device()


def phase_rows(impl: str, sampler: str, chains: int, grads_per_step: int, plan: dict, runs: list[dict]) -> list[dict]:
    rows = []
    for phase, steps in (("warmup", plan["warmup_steps"]), ("sampling", plan["sampling_steps"])):
        seconds = statistics.median(r[phase]["seconds"] for r in runs)
        compile_seconds = runs[0][phase]["compile_seconds"]  # the process's first compile
        cached = [r[phase]["compile_seconds"] for r in runs[1:]]
        rows.append({
            "impl": impl, "sampler": sampler, "chains": chains, "phase": phase, "steps": steps,
            "repeats": len(runs), "seconds": seconds, "seconds_with_compile": seconds + compile_seconds,
            "compile_seconds": compile_seconds,
            "compile_seconds_cached": statistics.median(cached) if cached else None,
            "steps_per_second": steps / seconds,
            "grad_evals_per_second": chains * steps * grads_per_step / seconds,
            "peak_host_mib": max(r["peak_host_mib"] for r in runs),
            "peak_device_mib": None if runs[0]["peak_device_mib"] is None else max(r["peak_device_mib"] for r in runs),
            "final_accuracy": statistics.median(r[phase]["final_accuracy"] for r in runs),
            "all_seconds": [r[phase]["seconds"] for r in runs],
        })
    return rows


def scaling_rows(sampler: str, chains: int, rows: list[dict]) -> list[dict]:
    """The chain-scaling table's rows of one measurement's phase ``rows``."""
    return [{"sampler": sampler, "chains": chains, "phase": row["phase"], "steps": row["steps"],
             "seconds": row["seconds"], "seconds_per_chain": row["seconds"] / chains,
             "compile_seconds": row["compile_seconds"], "peak_host_mib": row["peak_host_mib"],
             "peak_device_mib": row["peak_device_mib"]} for row in rows]


def add_floor(rows: list[dict], plan: dict, work: dict[str, float], matmul: dict[str, Any]) -> None:
    """Give each row the arithmetic floor of its steps (FLOPs over the measured matrix-product rate) and how
    far above it the row ran."""
    for row in rows:
        grads = grads_per_step(row["sampler"])
        passes = 1 / plan.get("thinning", 1) if row["phase"] == "sampling" else 1 / plan["eval_every"]
        per_step = grads * work["gradient"] + passes * work["test_pass"]
        floor = row["chains"] * row["steps"] * per_step / matmul["flops_per_second"]
        row |= {"flops_per_step": per_step, "floor_seconds": floor, "times_floor": row["seconds"] / floor,
                "achieved_flops_per_second": row["chains"] * row["steps"] * per_step / row["seconds"]}


def speedups(rows: list[dict], samplers: list[str]) -> list[dict]:
    """Baseline seconds over ours, per sampler and phase, on one chain."""
    ratios = []
    for name in samplers:
        for phase in ("warmup", "sampling"):
            pair = {r["impl"]: r for r in rows if r["sampler"] == name and r["phase"] == phase and r["chains"] == 1}
            if {"baseline", "ours"} <= set(pair):
                ratios.append({"sampler": name, "phase": phase,
                               "speedup": pair["baseline"]["seconds"] / pair["ours"]["seconds"],
                               "speedup_with_compile": pair["baseline"]["seconds_with_compile"]
                               / pair["ours"]["seconds_with_compile"]})
    return ratios


def scale_plan(scale: float) -> dict[str, int]:
    """The notebook's protocol with both phases shortened by ``scale``."""
    plan = {k: max(1, round(v * scale)) if k.endswith("_steps") else v for k, v in PROTOCOL.items()}
    plan["eval_every"] = min(plan["eval_every"], plan["warmup_steps"], plan["sampling_steps"])
    return plan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bnn_sgmcmc.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="synthetic", help="data.source: an IDX or parquet folder, a hub id, or 'synthetic'")
    parser.add_argument("--scale", type=float, default=1.0, help="shorten every phase by this factor (quick runs)")
    parser.add_argument("--samplers", default="sgld,sghmc", help="comma-separated: sgld, sghmc")
    parser.add_argument("--chains", default=None, help="chain counts for the scaling table (default 1,2,4 on CPU, 1,2,4,8,16 on GPU)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per measurement, in one fresh process; medians are reported, and the first run's "
                             "compile is the cold one")
    parser.add_argument("--scaling-scale", type=float, default=None,
                        help="scale of the chain-scaling runs (default: --scale); 0 skips them")
    parser.add_argument("--no-baseline", action="store_true", help="skip the reference loop")
    parser.add_argument("--thinning", type=int, default=1,
                        help="keep every n-th sampling step for the ensemble (ours only): fewer test-set passes")
    parser.add_argument("--matmul-size", type=int, default=None, help="matrix size for the rate (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--compilation-cache", default=None,
                        help="a persistent cache directory shared by every measurement (default: a fresh one per "
                             "process, so each first compile is cold)")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the JSON record and TSV table")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def write_data(source: str, seed: int, folder: Path) -> tuple[str, dict[str, Any], tuple[int, int]]:
    """The benchmark's data (``source``, 28 x 28 images of 10 classes) as a data file in ``folder``: its path,
    the source's record and the numbers of training and test images."""
    from bnn_sgmcmc import data as data_mod
    from bnn_sgmcmc import h5io

    data_config = {
        "source": source, "image_column": "image", "label_column": "label", "image_shape": [28, 28],
        "num_classes": 10, "synthetic": {"n_train": 4096, "n_test": 1024, "seed": None},
    }
    images, data_record = data_mod.load_source(data_config, seed)
    data_h5 = str(folder / "data.h5")
    h5io.write_data_h5(data_h5, images, num_classes=10, attrs={"source": source})
    return data_h5, data_record, (len(images.train.labels), len(images.test.labels))


def measure_sampler(name: str, task: dict[str, Any], args: argparse.Namespace, chain_counts: list[int],
                    rows: list[dict], scaling: list[dict], record: Callable[[], Any]) -> None:
    """Measure sampler ``name``: both implementations on one chain, then ours on ``chain_counts`` chains;
    append to ``rows`` and ``scaling``, and ``record()`` after every measurement."""
    plan, grads = task["plan"], grads_per_step(name)
    for impl in ["ours"] if args.no_baseline else ["baseline", "ours"]:
        runs = run_isolated(impl, task)
        for r, run in enumerate(runs):
            print(f"{impl} {name} run {r + 1}: warmup {run['warmup']['seconds']:.2f} s "
                  f"(compile {run['warmup']['compile_seconds']:.2f} s), sampling {run['sampling']['seconds']:.2f} s "
                  f"(compile {run['sampling']['compile_seconds']:.2f} s)", file=sys.stderr, flush=True)
        rows += phase_rows(impl, name, 1, grads, plan, runs)
        record()
    scaling_scale = args.scale if args.scaling_scale is None else args.scaling_scale
    scaled = scale_plan(scaling_scale)
    for chains in chain_counts if scaling_scale > 0 else []:
        if chains == 1 and scaled == plan:  # already measured above
            chain_rows = [r for r in rows if r["impl"] == "ours" and r["sampler"] == name]
        else:
            runs = run_isolated("ours", task | {"chains": chains, "plan": scaled})
            print(f"ours {name} x{chains}: warmup {statistics.median(r['warmup']['seconds'] for r in runs):.3f} s, "
                  f"sampling {statistics.median(r['sampling']['seconds'] for r in runs):.3f} s",
                  file=sys.stderr, flush=True)
            chain_rows = phase_rows("ours", name, chains, grads, scaled, runs)
        scaling += scaling_rows(name, chains, chain_rows)
        record()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _parser()
    args = parser.parse_args(argv)
    # Measured processes share the card with nothing, but take memory as the workflow's jobs do.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    from bnn_sgmcmc import provenance

    started = time.perf_counter()
    probe = run_isolated("matmul", {"size": args.matmul_size})
    device, matmul = probe["device"], probe["matmul"]
    gpu = device["backend"] == "gpu"
    chain_counts = [int(c) for c in (args.chains or ("1,2,4,8,16" if gpu else "1,2,4")).split(",")]
    plan = scale_plan(args.scale)
    if args.thinning > 1:
        if not args.no_baseline:
            parser.error("--thinning applies to this package's sampler only: add --no-baseline")
        plan["thinning"] = args.thinning
    samplers = args.samplers.split(",")
    created = provenance.now()
    rows: list[dict[str, Any]] = []
    scaling: list[dict[str, Any]] = []

    def record() -> dict[str, Any]:
        """The record so far: written after every measurement, so an interrupted run keeps what it measured."""
        add_floor(rows, plan, work, matmul)
        result = {
            "created": created,
            "command": " ".join(["python -m bnn_sgmcmc.bench", *(argv if argv is not None else sys.argv[1:])]),
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "device": device,
            "versions": provenance.versions(),
            "source": args.source,
            "data": {"n_train": n_train, "n_test": n_test, "splits": data_record["splits"]},
            "schedule": plan,  # the record's key for the step plan, as records before the name "plan" have it
            "scale": args.scale,
            "model": MODEL,
            "samplers": {s: default_samplers()[s] for s in samplers},
            "flops": work,
            "matmul": matmul,
            "phases": rows,
            "speedup": speedups(rows, samplers),
            "chain_scaling": scaling,
            "total_seconds": time.perf_counter() - started,
        }
        write(result, Path(args.out))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        data_h5, data_record, (n_train, n_test) = write_data(args.source, args.seed, Path(tmp))
        work = flops(28 * 28, MODEL["hidden"], 10, plan["batch_size"], n_test)
        for name in samplers:
            task = {"data": data_h5, "sampler": name, "sampler_config": default_samplers()[name], "plan": plan,
                    "seed": args.seed, "chains": 1, "repeats": args.repeats, "compilation_cache": args.compilation_cache}
            measure_sampler(name, task, args, chain_counts, rows, scaling, record)
        result = record()
    print(table(result))
    return result


def write(result: dict[str, Any], folder: Path) -> None:
    import pandas as pd

    from bnn_sgmcmc import bench, h5io

    json_path = bench.write_record(folder, "bench", result)
    tsv_path = json_path.with_suffix(".tsv")
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "all_seconds"} for r in result["phases"]])
    with h5io.atomic_path(tsv_path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    result["files"] = [str(json_path), str(tsv_path)]


def table(result: dict[str, Any]) -> str:
    lines = [f"device: {result['device']['device_kind']} ({result['device']['backend']}), "
             f"matmul {result['matmul']['flops_per_second'] / 1e9:.0f} GFLOP/s"]
    lines.append(f"{'impl':9} {'sampler':7} {'phase':9} {'seconds':>9} {'compile':>8} {'cached':>7} {'steps/s':>9} "
                 f"{'x floor':>8} {'acc':>6}")
    for r in result["phases"]:
        cached = "-" if r["compile_seconds_cached"] is None else f"{r['compile_seconds_cached']:.2f}"
        lines.append(f"{r['impl']:9} {r['sampler']:7} {r['phase']:9} {r['seconds']:9.3f} {r['compile_seconds']:8.2f} "
                     f"{cached:>7} {r['steps_per_second']:9.1f} {r['times_floor']:8.2f} {r['final_accuracy']:6.3f}")
    for r in result["speedup"]:
        lines.append(f"speedup {r['sampler']} {r['phase']}: {r['speedup']:.2f}x ({r['speedup_with_compile']:.2f}x with compile)")
    for r in result["chain_scaling"]:
        lines.append(f"chains {r['sampler']} {r['phase']} x{r['chains']}: {r['seconds']:.3f} s, {r['seconds_per_chain']:.3f} s per chain")
    return "\n".join(lines)
