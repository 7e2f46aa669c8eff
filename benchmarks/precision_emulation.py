"""How much does a GPU's reduced-precision matrix product perturb the reference posterior's log density?

On NVIDIA A100/H100/H200 GPUs, JAX's default precision computes a float32 matrix product on tensor
cores with its operands rounded to TF32 (10 mantissa bits); a CPU computes it in float32. Full-batch HMC
accepts or rejects on the change of the log density over a trajectory, so an error in that change acts as
noise in its Metropolis test. This script measures that error on the CPU, on real MNIST and the workflow's
model (784-500-10, N(0, 1) prior), by rounding as the GPU does: ``lax.reduce_precision`` rounds
both operands of every product (forward and backward), and the X3 algorithm is three bfloat16 products
(hi x hi + hi x lo + lo x hi) accumulated in float32, as XLA's ``BF16_BF16_F32_X3``.

It runs the notebook's SGLD warmup (2,340 steps, batch 512, step 4.5e-5) for a realistic point W, then
for random moves t x N(0, I) of the weights reports, per algorithm, the error of
log p(W + move) - log p(W) against float32, and the error of the energy change over HMC trajectories.

    python benchmarks/precision_emulation.py MNIST_DIR OUT.json [--trajectories 3] [--adapt 60]

With ``--adapt N`` it also runs, for float32 and TF32, N steps of BlackJAX's HMC (10 leapfrog steps)
from W with BlackJAX's dual averaging to acceptance 0.8, as the reference's warmup does, one chain, and
reports the step size each ends with and the acceptance over the second half.

About 5 minutes on a 2-core CPU without trajectories; each trajectory (30 leapfrog steps at step size
0.0024, from W, one momentum draw) adds about 2.5 minutes for the four algorithms.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bnn_sgmcmc.data import read_idx  # noqa: E402

ALGORITHMS = ("float32", "tensorfloat32", "bfloat16", "BF16_BF16_F32_X3")


def rounded(bits):
    return lambda v: lax.reduce_precision(v, exponent_bits=8, mantissa_bits=bits)


def product(algorithm):
    """``(a, b) -> a @ b`` as the GPU computes it under ``algorithm``, forward and backward."""
    if algorithm == "float32":
        return lambda a, b: a @ b
    if algorithm == "BF16_BF16_F32_X3":
        r = rounded(7)

        def raw(a, b):
            a_hi, b_hi = r(a), r(b)
            a_lo, b_lo = r(a - a_hi), r(b - b_hi)
            return a_hi @ b_hi + (a_hi @ b_lo + a_lo @ b_hi)
    else:
        r = rounded(10 if algorithm == "tensorfloat32" else 7)

        def raw(a, b):
            return r(a) @ r(b)

    @jax.custom_vjp
    def mm(a, b):
        return raw(a, b)

    def fwd(a, b):
        return raw(a, b), (a, b)

    def bwd(res, g):
        a, b = res
        return raw(g, b.T), raw(a.T, g)

    mm.defvjp(fwd, bwd)
    return mm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mnist")
    parser.add_argument("out")
    parser.add_argument("--trajectories", type=int, default=0)
    parser.add_argument("--adapt", type=int, default=0)
    args = parser.parse_args()
    folder = Path(args.mnist)
    x = jnp.asarray(read_idx(folder / "train-images-idx3-ubyte.gz", "images").reshape(60000, -1) / np.float32(255))
    y = jnp.asarray(read_idx(folder / "train-labels-idx1-ubyte.gz", "labels").astype(np.int32))
    n = x.shape[0]

    def log_posterior(algorithm):
        mm = product(algorithm)

        def fn(p, xb=x, yb=y, weight=1.0):
            h = jax.nn.relu(mm(xb, p["w1"]) + p["b1"])
            log_probs = jax.nn.log_softmax(mm(h, p["w2"]) + p["b2"])
            likelihood = jnp.sum(jnp.take_along_axis(log_probs, yb[:, None], 1))
            return weight * likelihood - 0.5 * sum(jnp.sum(v * v) for v in jax.tree.leaves(p))

        return fn

    def normal_like(tree, seed):
        keys = dict(zip(sorted(tree), jax.random.split(jax.random.key(seed), len(tree))))
        return {k: jax.random.normal(keys[k], v.shape) for k, v in tree.items()}

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    start = {"w1": jax.random.truncated_normal(k1, -2, 2, (784, 500)) / np.sqrt(784) / 0.87962566,
             "b1": jnp.zeros(500),
             "w2": jax.random.truncated_normal(k2, -2, 2, (500, 10)) / np.sqrt(500) / 0.87962566,
             "b2": jnp.zeros(10)}
    estimate = log_posterior("float32")

    @jax.jit
    def sgld(p, key):
        def body(p, k):
            ka, kb = jax.random.split(k)
            idx = jax.random.randint(ka, (512,), 0, n)
            g = jax.grad(estimate)(p, x[idx], y[idx], n / 512)
            z = normal_like_keys(p, kb)
            return jax.tree.map(lambda v, gv, zv: v + 4.5e-5 * gv + jnp.sqrt(2 * 4.5e-5) * zv, p, g, z), None

        return lax.scan(body, p, jax.random.split(key, 2340))[0]

    def normal_like_keys(tree, key):
        keys = dict(zip(sorted(tree), jax.random.split(key, len(tree))))
        return {k: jax.random.normal(keys[k], v.shape) for k, v in tree.items()}

    t0 = time.perf_counter()
    w = jax.block_until_ready(sgld(start, k3))
    record = {"sgld_warmup_seconds": round(time.perf_counter() - t0, 1), "devices": str(jax.devices())}
    density = {a: jax.jit(log_posterior(a)) for a in ALGORITHMS}
    at_w = {a: float(density[a](w)) for a in ALGORITHMS}
    record["log_posterior_at_w"] = at_w
    moves = {}
    for scale in (1e-4, 1e-3, 1e-2, 0.07):
        errors = {a: [] for a in ALGORITHMS[1:]}
        for seed in range(5):
            q = jax.tree.map(lambda a, b: a + scale * b, w, normal_like(w, 1000 + seed))
            exact = float(density["float32"](q)) - at_w["float32"]
            for a in ALGORITHMS[1:]:
                errors[a].append(float(density[a](q)) - at_w[a] - exact)
        moves[str(scale)] = {a: {"rms": float(np.sqrt(np.mean(np.square(e)))), "errors": e} for a, e in errors.items()}
        print(scale, {a: round(v["rms"], 4) for a, v in moves[str(scale)].items()}, flush=True)
    record["error_of_log_density_change"] = moves

    def energy_change(algorithm, eps, steps, momentum):
        value_and_grad = jax.value_and_grad(log_posterior(algorithm))

        @jax.jit
        def run(p, m):
            lp0, g = value_and_grad(p)
            kinetic = lambda m: 0.5 * sum(jnp.sum(v * v) for v in jax.tree.leaves(m))
            h0 = -lp0 + kinetic(m)

            def body(c, _):
                p, m, g = c
                m = jax.tree.map(lambda a, b: a + 0.5 * eps * b, m, g)
                p = jax.tree.map(lambda a, b: a + eps * b, p, m)
                lp, g = value_and_grad(p)
                m = jax.tree.map(lambda a, b: a + 0.5 * eps * b, m, g)
                return (p, m, g), lp

            (p, m, g), lps = lax.scan(body, (p, m, g), None, steps)
            return -lps[-1] + kinetic(m) - h0

        return float(run(w, momentum))

    trajectories = []
    for i in range(args.trajectories):
        momentum = normal_like(w, 100 + i)
        row = {"step_size": 0.0024, "leapfrog_steps": 30}
        for a in ALGORITHMS:
            row[a] = energy_change(a, 0.0024, 30, momentum)
        trajectories.append(row)
        print(row, flush=True)
    record["energy_change_over_trajectories"] = trajectories
    if args.adapt:
        record["adaptation"] = [adapt(log_posterior(a), w, args.adapt) | {"algorithm": a}
                                for a in ("float32", "tensorfloat32")]
        print(record["adaptation"], flush=True)
    Path(args.out).write_text(json.dumps(record, indent=1))


def adapt(logdensity, position, steps, leapfrog=10, start=0.0024, target=0.8):
    """``steps`` HMC steps with dual averaging of the step size (one chain, as the reference's warmup)."""
    import blackjax
    from blackjax.adaptation.step_size import dual_averaging_adaptation
    from jax.flatten_util import ravel_pytree

    da_init, da_update, da_final = dual_averaging_adaptation(target)
    kernel = blackjax.mcmc.hmc.build_kernel()
    ones = jnp.ones_like(ravel_pytree(position)[0])

    @jax.jit
    def run(key):
        def body(carry, k):
            state, da = carry
            state, info = kernel(k, state, logdensity, jnp.exp(da.log_step_size), ones, leapfrog)
            rate = jnp.where(jnp.isfinite(info.acceptance_rate), info.acceptance_rate, 0.0)
            return (state, da_update(da, rate)), (rate, jnp.exp(da.log_step_size))

        init = (blackjax.mcmc.hmc.init(position, logdensity), da_init(start))
        (_, da), (rates, sizes) = lax.scan(body, init, jax.random.split(key, steps))
        return da_final(da), rates, sizes

    t0 = time.perf_counter()
    final, rates, sizes = run(jax.random.key(7))
    rates = np.asarray(rates)
    return {"steps": steps, "leapfrog_steps": leapfrog, "adapted_step_size": float(final),
            "acceptance_second_half": float(rates[steps // 2:].mean()), "acceptance": rates.round(3).tolist(),
            "step_sizes": np.asarray(sizes).tolist(), "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    main()
