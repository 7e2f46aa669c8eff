"""Benchmark: which exact-gradient kernel, and which trajectory length, should the reference posterior use?

Run ``python -m bnn_sgmcmc.bench.reference --source /path/to/mnist --out DIR``
(``--help`` lists the options). Issue #13 asks for BlackJAX's HMC or another
exact-gradient, Metropolis-adjusted kernel if it is better per second. With the
chains vmapped in one program, as the reference runs them, a step costs what
its slowest chain costs, so this counts the gradients of the slowest chain at
every step and reports effective samples per 1,000 of them. From the same
starts (Flax's initialisers, one key per chain), on a random subset of the
training images (``--train``), the workflow's MLP (``--hidden``) and N(0, 1)
prior:

* ``hmcL``: the workflow's own ``hmc`` kernel (BlackJAX's HMC, identity mass
  matrix, ``L`` leapfrog steps, its step size adapted by dual averaging to
  acceptance 0.8 in warmup; ``L + 1`` gradients a step);
* ``chees``: ChEES-HMC (``blackjax.chees_adaptation``, Hoffman, Radul and
  Sountsov 2021): step size and trajectory length adapted across the ensemble
  of chains, the number of leapfrog steps jittered by a Halton sequence all
  chains share (so vmapped chains stay in step), identity mass matrix;
* ``nuts``: NUTS with Stan's window adaptation (diagonal mass matrix), per
  chain, at most ``--max-doublings`` doublings; under ``vmap`` a step costs
  the largest of the chains' trajectories, which is what is counted.

Each kernel warms up for ``--warmup`` steps, then samples for ``--budget``
gradients. Every sampling step evaluates the draw on ``--test`` test images:
the mean test log-likelihood, each test example's log-probability of its
label (what the predictive, and so the agreement with the reference, is made
of) and the log posterior. Their rank-normalised split R-hat and bulk and tail
ESS are the reports' own (:mod:`bnn_sgmcmc.diagnostics`). It writes a JSON
record and prints a table. With fewer images than the 60,000 of MNIST the
posterior is wider and its scales differ: what carries over is the ranking
and the reasons, not the numbers (docs/benchmarks-history.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: The quantities traced at every sampling step; ``test_logprob`` is one per test example.
QUANTITIES = ("log_posterior", "mean_test_loglik", "test_logprob")
DEFAULT_KERNELS = ("hmc10", "hmc50", "hmc200", "chees", "nuts")


def measure(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], hidden: list[int], *,
            chains: int = 4, warmup: int = 300, budget: int = 40000, kernels: tuple[str, ...] = DEFAULT_KERNELS,
            max_doublings: int = 8, seed: int = 0, diagnose: bool = True) -> list[dict[str, Any]]:
    """One row per kernel: its adapted parameters, gradients, seconds, and the traced quantities' diagnostics
    (:func:`summarise`; ``diagnose=False`` leaves them out, and their compiles, one per kernel's draws' shape).

    ``train`` and ``test`` are (uint8 images [n, ...], labels [n]).
    """
    import jax
    import jax.numpy as jnp

    from bnn_sgmcmc import model

    def arrays(split):
        images, labels = split
        return (jnp.asarray(images.reshape(len(images), -1), jnp.float32) / 255.0, jnp.asarray(labels, jnp.int32))

    (x, y), (xt, yt) = arrays(train), arrays(test)
    mlp = model.build(hidden, int(max(train[1].max(), test[1].max())) + 1)
    log_likelihood = model.log_likelihood_fn(mlp)
    predict = model.predict_fn(mlp)

    def logdensity(params):
        return log_likelihood(params, x, y) + model.log_prior(params)

    def evaluate(params):
        log_probs = jnp.take_along_axis(predict(params, xt), yt[:, None], 1)[:, 0]
        return {"log_posterior": logdensity(params), "mean_test_loglik": log_probs.mean(), "test_logprob": log_probs}

    keys = jax.random.split(jax.random.key(seed), chains)
    starts = model.init_chains(keys, mlp, x.shape[1])
    rows = []
    for name in kernels:
        kind = name.rstrip("0123456789")
        if kind not in RUNNERS or (kind == "hmc") == (kind == name):
            raise ValueError(f"unknown kernel {name!r}: hmc<leapfrog steps> (hmc50), chees or nuts")
        key = jax.random.fold_in(jax.random.key(seed + 1), sum(map(ord, name)))
        began = time.perf_counter()
        row, draws = RUNNERS[kind](name, logdensity, evaluate, starts, key, chains=chains, warmup=warmup,
                                   budget=budget, max_doublings=max_doublings)
        row["seconds"] = time.perf_counter() - began  # compile included
        if diagnose:
            row.update(summarise(draws, row["sampling_gradients"]))
        rows.append({"kernel": name, **row})
    return rows


def summarise(draws: dict[str, Any], gradients: int) -> dict[str, Any]:
    """Bulk and tail ESS (all chains), per 1,000 gradients, and R-hat of the traced quantities ([steps, chains, ...]).

    For ``test_logprob``, one value per test example: the median and the 10th percentile of the bulk ESS, the
    worst R-hat and the share of examples above 1.01 (an example every draw gives log-probability 0 has none).
    """
    from bnn_sgmcmc import diagnostics

    per = 1000.0 / gradients
    out: dict[str, Any] = {}
    for quantity in QUANTITIES:
        stats = diagnostics.diagnose(np.moveaxis(np.asarray(draws[quantity], np.float64), 0, 1))
        if quantity != "test_logprob":
            out[quantity] = {"ess_bulk": float(stats.ess_bulk), "ess_tail": float(stats.ess_tail),
                             "ess_bulk_per_1000_gradients": float(stats.ess_bulk) * per,
                             "ess_tail_per_1000_gradients": float(stats.ess_tail) * per, "rhat": float(stats.rhat)}
            continue
        rhat = stats.rhat[np.isfinite(stats.rhat)]
        ess = stats.ess_bulk[np.isfinite(stats.ess_bulk)]
        out[quantity] = {"examples": int(stats.rhat.size), "diagnosed": int(rhat.size),
                         "ess_bulk_median_per_1000_gradients": float(np.median(ess)) * per,
                         "ess_bulk_p10_per_1000_gradients": float(np.percentile(ess, 10)) * per,
                         "rhat_max": float(rhat.max()), "share_rhat_over_1.01": float(np.mean(rhat > 1.01))}
    return out


def _hmc(name: str, logdensity: Callable, evaluate: Callable, starts: Any, key: Any, *, chains: int, warmup: int,
         budget: int, **_: Any) -> tuple[dict[str, Any], Any]:
    """The workflow's own kernel, through its Kernel interface, as a sampling job runs it."""
    import jax

    from bnn_sgmcmc.kernels import hmc

    steps = int(name[3:])
    settings = {"num_integration_steps": steps, "target_acceptance": 0.8, "divergence_threshold": 1000,
                "step_size": 0.01, "matmul_precision": "float32"}
    kernel = hmc.build(lambda position, batch: logdensity(position), settings)
    per_step = kernel.grad_evals_per_step
    num = max(budget // per_step, 8)
    warm_key, sample_key = jax.random.split(key)

    def chain_keys(k):
        return jax.random.split(k, chains)

    @jax.jit
    def run(starts):
        states = jax.vmap(kernel.init)(starts, chain_keys(warm_key))

        def warm(states, k):
            states = jax.vmap(lambda kk, s: kernel.warmup_step(kk, s, None, settings["step_size"], 1.0))(
                chain_keys(k), states)
            return states, states.acceptance_rate

        states, warm_rates = jax.lax.scan(warm, states, jax.random.split(warm_key, warmup))

        def sample(states, k):
            states = jax.vmap(lambda kk, s: kernel.step(kk, s, None, settings["step_size"], 1.0))(chain_keys(k), states)
            return states, (jax.vmap(evaluate)(states.position), states.acceptance_rate, states.divergent)

        states, (draws, rates, divergent) = jax.lax.scan(sample, states, jax.random.split(sample_key, num))
        return states.step_size, warm_rates, draws, rates, divergent

    step_size, warm_rates, draws, rates, divergent = run(starts)
    step_size = np.asarray(step_size, np.float64)
    return {"description": f"the workflow's hmc kernel, {steps} leapfrog steps, identity mass matrix",
            "leapfrog_steps": float(steps), "step_size": step_size.tolist(),
            "trajectory_length": float(np.mean(step_size) * steps),
            "warmup_acceptance_second_half": float(np.mean(warm_rates[warmup // 2:])),
            "acceptance": float(np.mean(rates)), "divergences": int(np.sum(divergent)),
            "warmup_gradients": warmup * per_step, "sampling_steps": num,
            "sampling_gradients": num * per_step}, draws


def _chees(name: str, logdensity: Callable, evaluate: Callable, starts: Any, key: Any, *, chains: int, warmup: int,
           budget: int, **_: Any) -> tuple[dict[str, Any], Any]:
    import blackjax
    import jax
    import optax
    from jax.flatten_util import ravel_pytree

    warm_key, sample_key = jax.random.split(key)
    # ChEES's ensemble statistics take each chain's position as one flat vector.
    _, unravel = ravel_pytree(jax.tree.map(lambda leaf: leaf[0], starts))

    def flat_density(v):
        return logdensity(unravel(v))

    adaptation = blackjax.chees_adaptation(flat_density, chains, max_leapfrog_steps=1000)
    (states, params), info = adaptation.run(warm_key, jax.vmap(lambda p: ravel_pytree(p)[0])(starts), 0.01,
                                            optax.adam(0.025), warmup, max_sampling_steps=10 * budget)
    warm_steps = np.asarray(info.info.num_integration_steps)  # [warmup, chains]
    mean_steps = float(params["integration_steps_params"][0])
    # The Halton jitter draws the trajectory uniformly from (0, 1] of the adapted length: half of it on average.
    num = max(int(budget / max(0.5 * mean_steps, 1.0)), 8)
    kernel = blackjax.dynamic_hmc(flat_density, **params)

    @jax.jit
    def run(states):
        def sample(states, k):
            states, info = jax.vmap(kernel.step)(jax.random.split(k, chains), states)
            return states, (jax.vmap(lambda v: evaluate(unravel(v)))(states.position), info.acceptance_rate,
                            info.is_divergent, info.num_integration_steps)

        return jax.lax.scan(sample, states, jax.random.split(sample_key, num))[1]

    draws, rates, divergent, leapfrogs = run(states)
    step_size = float(params["step_size"])
    return {"description": "ChEES-HMC (blackjax.chees_adaptation, dynamic_hmc), identity mass matrix",
            "leapfrog_steps": float(np.mean(leapfrogs)), "leapfrog_steps_adapted": mean_steps,
            "step_size": step_size, "trajectory_length": step_size * mean_steps,
            "warmup_acceptance_second_half": float(np.mean(np.asarray(info.info.acceptance_rate)[warmup // 2:])),
            "acceptance": float(np.mean(rates)), "divergences": int(np.sum(divergent)),
            "warmup_gradients": int(warm_steps.max(axis=1).sum()), "sampling_steps": num,
            "sampling_gradients": int(np.asarray(leapfrogs).max(axis=1).sum())}, draws


def _nuts(name: str, logdensity: Callable, evaluate: Callable, starts: Any, key: Any, *, chains: int, warmup: int,
          budget: int, max_doublings: int, **_: Any) -> tuple[dict[str, Any], Any]:
    import blackjax
    import jax

    warm_key, sample_key = jax.random.split(key)
    adaptation = blackjax.window_adaptation(blackjax.nuts, logdensity, max_num_doublings=max_doublings)

    @jax.jit
    def adapt(starts):
        def one(k, position):
            (state, params), info = adaptation.run(k, position, warmup)
            return state, params, info.info.num_integration_steps, info.info.acceptance_rate

        return jax.vmap(one)(jax.random.split(warm_key, chains), starts)

    states, params, warm_steps, warm_rates = adapt(starts)
    warm_steps = np.asarray(warm_steps)  # [chains, warmup]
    kernel = blackjax.nuts.build_kernel()
    num = max(int(budget / max(float(warm_steps[:, warmup // 2:].max(axis=0).mean()), 1.0)), 8)

    @jax.jit
    def run(states, params):
        def one(k, state, p):
            return kernel(k, state, logdensity, p["step_size"], p["inverse_mass_matrix"], max_doublings)

        def sample(states, k):
            states, info = jax.vmap(one)(jax.random.split(k, chains), states, params)
            return states, (jax.vmap(evaluate)(states.position), info.acceptance_rate, info.is_divergent,
                            info.num_integration_steps)

        return jax.lax.scan(sample, states, jax.random.split(sample_key, num))[1]

    draws, rates, divergent, leapfrogs = run(states, params)
    leapfrogs = np.asarray(leapfrogs)  # [steps, chains]
    return {"description": f"NUTS (blackjax.window_adaptation: diagonal mass matrix), at most {max_doublings} "
                           "doublings",
            "leapfrog_steps": float(leapfrogs.mean()), "step_size": np.asarray(params["step_size"]).tolist(),
            "share_at_max_doublings": float(np.mean(leapfrogs >= 2**max_doublings - 1)),
            "warmup_acceptance_second_half": float(np.mean(np.asarray(warm_rates)[:, warmup // 2:])),
            "acceptance": float(np.mean(rates)), "divergences": int(np.sum(divergent)),
            "warmup_gradients": int(warm_steps.max(axis=0).sum()), "sampling_steps": num,
            "sampling_gradients": int(leapfrogs.max(axis=1).sum()),
            "share_of_vmapped_gradients_used": float(leapfrogs.mean() / leapfrogs.max(axis=1).mean())}, draws


RUNNERS = {"hmc": _hmc, "chees": _chees, "nuts": _nuts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnn_sgmcmc.bench.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="folder of the MNIST IDX files")
    parser.add_argument("--out", required=True, help="folder for the JSON record")
    parser.add_argument("--train", type=int, default=2000, help="training images, drawn at random (default 2000)")
    parser.add_argument("--test", type=int, default=1000, help="test images, drawn at random (default 1000)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[20])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=300, help="warmup steps of every kernel")
    parser.add_argument("--budget", type=int, default=40000, help="sampling gradients of the slowest chain")
    parser.add_argument("--kernels", default=",".join(DEFAULT_KERNELS))
    parser.add_argument("--max-doublings", type=int, default=8, help="NUTS's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from bnn_sgmcmc import bench, data, provenance

    source = data.load_idx_folder(Path(args.source))[0]
    rng = np.random.default_rng(args.seed)
    i = rng.choice(len(source.train.labels), args.train, replace=False)
    j = rng.choice(len(source.test.labels), args.test, replace=False)
    rows = measure((source.train.images[i], source.train.labels[i]), (source.test.images[j], source.test.labels[j]),
                   args.hidden, chains=args.chains, warmup=args.warmup, budget=args.budget,
                   kernels=tuple(args.kernels.split(",")), max_doublings=args.max_doublings, seed=args.seed)
    record = provenance.record(device=provenance.device(), settings=vars(args) | {"source": str(args.source)},
                               command=" ".join(["python -m bnn_sgmcmc.bench.reference", *(argv or sys.argv[1:])]),
                               rows=rows)
    path = bench.write_record(args.out, "reference_kernels", record)
    print("kernel  trajectory  gradients  ESS per 1,000 gradients: log posterior, mean test log-lik, "
          "test examples (median, 10th pct)  worst R-hat  seconds")
    for r in rows:
        q = r["test_logprob"]
        print(f"{r['kernel']:7} {r['trajectory_length'] if 'trajectory_length' in r else float('nan'):10.3f} "
              f"{r['sampling_gradients']:10d}  {r['log_posterior']['ess_bulk_per_1000_gradients']:7.2f} "
              f"{r['mean_test_loglik']['ess_bulk_per_1000_gradients']:7.2f} "
              f"{q['ess_bulk_median_per_1000_gradients']:7.2f} {q['ess_bulk_p10_per_1000_gradients']:7.2f}  "
              f"{q['rhat_max']:6.3f}  {r['seconds']:7.1f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
