"""How long and how fast to train a MAP member: the measured learning curves behind the ``map`` kernel's defaults.

    python benchmarks/map_learning_curve.py MNIST_FOLDER [--hidden 500] [--train N] [--epochs 5 10 20 40]
        [--rates 3e-4 1e-3 3e-3] [--optimiser adam] [--batch 512] [--members 2] > curve.tsv

For every learning rate and total number of epochs, ``members`` networks are trained exactly as the ``map``
kernel's warmup trains them (its own optax step on the workflow's minibatch log posterior, the model's
N(0, 1) prior as weight decay, minibatches of ``batch`` drawn with replacement, the learning rate cosine-decayed
over the whole training), from Flax's initial weights; after every epoch the members' test accuracy and NLL
(mean over members, each member's own predictive) go to standard output as one TSV row. ``--train`` keeps a
random subset of the training images (as ``data.subset.train``), for the reference problem. docs/baselines.md
holds the outputs behind the defaults.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bnn_sgmcmc import data, model, sampling, schedules, schema
from bnn_sgmcmc.kernels import map as map_kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--hidden", type=int, nargs="*", default=[500])
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--optimiser", default="adam")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--members", type=int, default=2)
    args = parser.parse_args()

    images, _ = data.load_idx_folder(args.folder)
    train = images.train
    if args.train:
        idx = data.subset_indices(len(train.labels), args.train, 0, "train")
        train = data.Split(train.images[idx], train.labels[idx])
    x = jnp.asarray(train.images.reshape(len(train.labels), -1), jnp.float32) / 255.0
    y = jnp.asarray(train.labels.astype(np.int32))
    xt = jnp.asarray(images.test.images.reshape(len(images.test.labels), -1), jnp.float32) / 255.0
    yt = jnp.asarray(images.test.labels.astype(np.int32))
    n, per_epoch = len(y), max(1, len(y) // args.batch)
    mlp = model.build(args.hidden, 10)
    logdensity = sampling.log_density_estimator(functools.partial(model.log_prior, prior_scale=1.0),
                                                model.log_likelihood_fn(mlp), n)
    predict = model.predict_fn(mlp)
    print("optimiser\tlearning_rate\tepochs\tepoch\ttest_accuracy\ttest_nll\tseconds")
    for epochs in args.epochs:
        for rate in args.rates:
            settings = schema.sampler_settings({"kernel": "map", "step_size": rate, "optimiser": args.optimiser,
                                                "epochs": epochs})
            init, step = map_kernel.training_step(logdensity, settings)
            lengths = {"warmup": epochs * per_epoch, "sampling": 1}
            lr_at = schedules.build(settings["schedule"], rate, lengths, "warmup")

            @jax.jit
            def one_epoch(states, keys, epoch):
                def body(states, t):
                    def member(state, key):
                        idx = jax.random.randint(jax.random.fold_in(key, t), (args.batch,), 0, n)
                        return step(state, (x[idx], y[idx]), lr_at(t).step_size)

                    return jax.vmap(member)(states, keys), None

                states, _ = jax.lax.scan(body, states, epoch * per_epoch + jnp.arange(per_epoch))
                return states

            @jax.jit
            def scores(states):
                log_probs = jax.vmap(lambda s: predict(s.position, xt))(states)  # [M, n, K]
                true = jnp.take_along_axis(log_probs, yt[None, :, None], axis=2)[..., 0]
                return jnp.mean(jnp.argmax(log_probs, -1) == yt[None]), -jnp.mean(true)

            keys = jax.random.split(jax.random.key(0), args.members)
            states = jax.vmap(lambda k: init(model.init_params(k, mlp, x.shape[1])))(keys)
            start = time.perf_counter()
            for epoch in range(epochs):
                states = one_epoch(states, keys, epoch)
                accuracy, nll = (float(v) for v in scores(states))
                print(f"{args.optimiser}\t{rate:g}\t{epochs}\t{epoch + 1}\t{accuracy:.4f}\t{nll:.4f}\t"
                      f"{time.perf_counter() - start:.1f}", flush=True)
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
