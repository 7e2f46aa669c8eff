"""How noisy sgld_cv's control-variate gradient is against the plain minibatch gradient, away from its centre.

    python benchmarks/cv_noise.py RESULTS CV_SAMPLER OTHER_SAMPLER [OTHER_SAMPLER ...]

RESULTS is a finished run's results/ folder (examples/reference-cpu.yaml's problem, say). The centre is chain
0's end of CV_SAMPLER's warmup (an sgld_cv sampler: where its gradient ascent ended); along the line from it
to chain 0's end of each OTHER_SAMPLER's warmup (an SGLD chain, out in the posterior), at 0, 10, 30 and 100 %
of the way, it prints the total standard deviation over the weights of 200 minibatch gradients (the run's
batch size) and of the control-variate estimate on the same minibatches. docs/benchmarks/reference-cpu-2026-12-06/
holds its output on that run.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp

from bnn_sgmcmc import h5io, model, sampling


def chain_weights(path: str, chain: int = 0):
    state = h5io.read_arrays(path)[0]["state"]
    weights = state["position"] if "position" in state else state
    return jax.tree.map(lambda a: jnp.asarray(a[chain]), weights)


def main(results: str, cv_sampler: str, others: list[str], draws: int = 200) -> None:
    images, attrs = h5io.read_data_h5(f"{results}/data/mnist.h5")
    x = jnp.asarray(images.train.images.reshape(len(images.train.labels), -1), jnp.float32) * float(attrs["pixel_scale"])
    y = jnp.asarray(images.train.labels)
    warm_attrs = h5io.read_arrays(f"{results}/sampling/{cv_sampler}/shard0/warmup.h5")[1]
    hidden, batch = warm_attrs["model"]["hidden"], int(warm_attrs["schedule"]["batch_size"])
    mlp = model.build(hidden, int(attrs["num_classes"]))
    prior = functools.partial(model.log_prior, prior_scale=float(warm_attrs["model"]["prior_scale"]))
    grad = jax.jit(jax.grad(sampling.log_density_estimator(prior, model.log_likelihood_fn(mlp), len(y))))
    centre = chain_weights(f"{results}/sampling/{cv_sampler}/shard0/warmup.h5")
    at_centre = grad(centre, (x, y))
    keys = jax.random.split(jax.random.key(0), draws)

    def flat(tree):
        return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])

    for other in others:
        far = chain_weights(f"{results}/sampling/{other}/shard0/warmup.h5")
        distance = float(jnp.linalg.norm(flat(far) - flat(centre)))
        for share in (0.0, 0.1, 0.3, 1.0):
            theta = jax.tree.map(lambda c, f: c + share * (f - c), centre, far)

            @jax.jit
            def estimates(key, theta=theta):
                idx = jax.random.randint(key, (batch,), 0, len(y))
                here, there = grad(theta, (x[idx], y[idx])), grad(centre, (x[idx], y[idx]))
                return flat(here), flat(jax.tree.map(lambda a, b, c: c + a - b, here, there, at_centre))

            plain, cv = jax.lax.map(estimates, keys)
            print(f"towards {other}'s warmup end: distance {share * distance:6.2f} of {distance:6.2f}; gradient "
                  f"noise (total sd) plain {float(jnp.sqrt(jnp.sum(jnp.var(plain, 0)))):7.1f}, control variates "
                  f"{float(jnp.sqrt(jnp.sum(jnp.var(cv, 0)))):7.1f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
