"""Benchmark: what each of the hmc kernel's ``matmul_precision`` values costs, and how far it moves the
log density whose changes the reference's Metropolis test judges.

Run ``python -m bnn_sgmcmc.bench.precision --source /path/to/mnist --out DIR``
(``--help`` lists the options). For each value, on this process's device, with
the workflow's model and prior on the whole training set:

* seconds per full-data gradient of ``--chains`` chains (vmapped, as the
  reference runs them), compile seconds and the arithmetic rate;
* the error, against ``float32``, of the change of log density from the
  chains' weights W to W + t x N(0, I) for a few move sizes t: a Metropolis
  test takes that error as part of the energy error.

A value this device cannot compile is recorded with XLA's message. A CPU
computes every value in float32 (errors 0). ``benchmarks/precision_emulation.py``
emulates the GPU's algorithms on a CPU instead. It writes a JSON record and
prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The hmc kernel's ``matmul_precision`` values (the config schema's enum), float32 first: the yardstick.
PRECISIONS = ("float32", "default", "BF16_BF16_F32_X3", "BF16_BF16_F32_X6", "TF32_TF32_F32_X3")
MOVES = (1e-3, 1e-2, 0.07)


def gradient_flops(n: int, sizes: list[int]) -> float:
    """Floating-point operations of one full-data gradient of one chain: the matrix products of the forward
    pass (2 n in x out per layer) and the two of the backward pass, three times the forward's."""
    return 6.0 * n * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def median_seconds(fn: Any, argument: Any, repeats: int) -> float:
    """The median seconds of ``repeats`` calls of ``fn(argument)``, after one call that warms it up."""
    import jax

    jax.block_until_ready(fn(argument))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(argument))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(images: np.ndarray, labels: np.ndarray, hidden: list[int], chains: int, repeats: int = 10,
            precisions: tuple[str, ...] = PRECISIONS, moves: tuple[float, ...] = MOVES, seeds: int = 5) -> list[dict]:
    """One row per precision: its timing and its log-density errors against the first of ``precisions``."""
    import jax
    import jax.numpy as jnp

    from bnn_sgmcmc import kernels, model

    x = jnp.asarray(images.reshape(len(images), -1), jnp.float32) / 255.0
    y = jnp.asarray(labels, jnp.int32)
    mlp = model.build(hidden, int(labels.max()) + 1)
    log_likelihood = model.log_likelihood_fn(mlp)

    def log_posterior(params):
        return model.log_prior(params) + log_likelihood(params, x, y)

    keys = jax.random.split(jax.random.key(0), chains)
    weights = model.init_chains(keys, mlp, x.shape[1])

    def moved(scale, seed):
        leaves, treedef = jax.tree.flatten(weights)
        noise = [jax.random.normal(k, leaf.shape) for k, leaf in
                 zip(jax.random.split(jax.random.key(1000 + seed), len(leaves)), leaves)]
        return jax.tree.unflatten(treedef, [leaf + scale * z for leaf, z in zip(leaves, noise)])

    targets = {(scale, seed): moved(scale, seed) for scale in moves for seed in range(seeds)}
    flops = gradient_flops(len(y), [x.shape[1], *hidden, mlp.num_classes]) * chains
    rows, yardstick = [], None
    for name in precisions:
        row: dict[str, Any] = {"matmul_precision": name, "chains": chains}
        resolved = kernels.module("hmc").precision({"matmul_precision": name})
        row["jax_precision"] = resolved or "default"
        grad = jax.jit(jax.vmap(jax.value_and_grad(log_posterior)))
        density = jax.jit(jax.vmap(log_posterior))
        try:
            with jax.default_matmul_precision(resolved):
                start = time.perf_counter()
                grad = grad.lower(weights).compile()
                density = density.lower(weights).compile()
                row["compile_seconds"] = time.perf_counter() - start
        except Exception as err:  # noqa: BLE001 (XLA's errors have no common type; record it and go on)
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            rows.append(row)
            continue
        row["seconds_per_gradient"] = median_seconds(grad, weights, repeats)
        row["flops_per_second"] = flops / row["seconds_per_gradient"]
        at_w = np.asarray(density(weights), np.float64)
        changes = {key: np.asarray(density(target), np.float64) - at_w for key, target in targets.items()}
        if yardstick is None:
            yardstick = changes
        for scale in moves:
            errors = np.concatenate([changes[(scale, s)] - yardstick[(scale, s)] for s in range(seeds)])
            row[f"rms_error_of_change_t{scale:g}"] = float(np.sqrt(np.mean(errors**2)))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnn_sgmcmc.bench.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="folder of the MNIST IDX files")
    parser.add_argument("--out", required=True, help="folder for the JSON record")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500])
    parser.add_argument("--limit", type=int, default=0, help="use the first this-many training images (0: all)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    from bnn_sgmcmc import bench, data, provenance

    train = data.load_idx_folder(Path(args.source))[0].train
    n = args.limit or len(train.labels)
    rows = measure(train.images[:n], train.labels[:n], args.hidden, args.chains, args.repeats)
    record = provenance.record(device=provenance.device(), images=n, hidden=args.hidden, moves=list(MOVES),
                               command=" ".join(["python -m bnn_sgmcmc.bench.precision", *(argv or sys.argv[1:])]),
                               rows=rows)
    path = bench.write_record(args.out, "precision", record)
    for row in rows:
        print(row["matmul_precision"], row.get("error") or
              f"{row['seconds_per_gradient'] * 1e3:.2f} ms per gradient, {row['flops_per_second'] / 1e12:.1f} TFLOP/s, "
              + ", ".join(f"t={t:g}: {row[f'rms_error_of_change_t{t:g}']:.4f}" for t in MOVES))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
