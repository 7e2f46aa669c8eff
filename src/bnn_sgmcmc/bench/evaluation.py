"""Benchmark: one matrix shape for every evaluation set (issue #14's first lever), against one per set.

A sampling program evaluates every kept sample on the test set, each shifted
set and the OOD set. Each set is its own matrix product of its own shape, and
on a GPU XLA autotunes every distinct shape when it compiles the program
(most of a program's 4 to 9 s compile on an H100, docs/benchmarks-history.md). This
measures, for the workflow's model and the default config's sets, the
chains' vmapped forward pass (what ``predictive.fold`` runs) done three ways:

* ``per_set``: one forward pass per set, as the workflow does;
* ``one_matmul``: the sets concatenated, one forward pass, split after;
* ``chunks``: the sets zero-padded to whole chunks of ``--chunk`` rows, one
  forward pass per chunk in a loop (``lax.map``): one shape, a smaller one.

For each: cold compile seconds (the persistent cache off), the matrix-product
instructions in the optimised program and their distinct shapes, seconds per
evaluation, and whether every set's log-probabilities equal ``per_set``'s bit
for bit (the workflow promises bit-identical CPU results across changes).

Run ``python -m bnn_sgmcmc.bench.evaluation --out DIR`` (``--help`` lists the
options); inputs and weights are random, since only shapes matter here. It
writes a JSON record and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

VARIANTS = ("per_set", "one_matmul", "chunks")
#: The default config's evaluation sets: the MNIST test set, 9 shifted sets of 1,000 and an OOD set of 2,000.
DEFAULT_SETS = "10000,1000x9,2000"

#: A matrix product in optimised HLO: a dot, a cuBLAS call or a Triton GEMM fusion; group 1 is its result shape.
_GEMM = re.compile(
    r"=\s*(\(?[a-z0-9]+\[[0-9,]*\][^ ]*)\s+(?:dot\(|custom-call\(.*custom_call_target=\"__cublas\$(?:lt\$matmul|gemm)"
    r"|fusion\(.*\"__triton_gemm\")"
)


def parse_sets(text: str) -> list[int]:
    """``"10000,1000x9,2000"`` -> [10000, 1000, ..., 1000, 2000]: set sizes, ``NxK`` meaning K sets of N rows."""
    sizes = []
    for part in text.split(","):
        n, _, k = part.strip().partition("x")
        sizes += [int(n)] * int(k or 1)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sets must list positive set sizes, e.g. {DEFAULT_SETS}; got {text!r}")
    return sizes


def gemms(hlo: str) -> tuple[int, int]:
    """Matrix-product instructions in optimised HLO text, and how many distinct result shapes they have."""
    shapes = [m.group(1) for m in _GEMM.finditer(hlo)]
    return len(shapes), len(set(shapes))


@contextlib.contextmanager
def _no_persistent_cache() -> Iterator[None]:
    """Compile cold: JAX's persistent compilation cache off for the block, as it was after."""
    import jax

    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)


def programs(predict: Any, sizes: list[int], chunk: int) -> dict[str, Any]:
    """The three ways to evaluate ``params`` (leading chain axis) on sets of ``sizes`` rows, each
    ``(params, inputs) -> [log-probabilities [C, n, K] per set]``, with the inputs each takes."""
    import jax
    import jax.numpy as jnp

    def forward(params, x):
        return jax.vmap(predict, in_axes=(0, None))(params, x)

    def split(out):
        edges = np.cumsum([0, *sizes])
        return [out[:, a:b] for a, b in zip(edges[:-1], edges[1:])]

    def per_set(params, xs):
        return [forward(params, x) for x in xs]

    def one_matmul(params, xs):
        return split(forward(params, jnp.concatenate(xs)))

    def chunks(params, xs):
        padded = [jnp.pad(x, ((0, -len(x) % chunk), (0, 0))) for x in xs]
        out = jax.lax.map(lambda x: forward(params, x), jnp.concatenate(padded).reshape(-1, chunk, xs[0].shape[1]))
        out = jnp.moveaxis(out, 0, 1).reshape(out.shape[1], -1, out.shape[-1])  # [C, chunks x chunk, K]
        edges = np.cumsum([0, *(len(x) for x in padded)])
        return [out[:, a:a + n] for a, n in zip(edges[:-1], sizes)]

    return {"per_set": per_set, "one_matmul": one_matmul, "chunks": chunks}


def measure(sizes: list[int], chains: list[int], hidden: list[int], input_dim: int = 784, num_classes: int = 10,
            chunk: int = 1000, repeats: int = 5, variants: tuple[str, ...] = VARIANTS) -> list[dict[str, Any]]:
    """One row per number of chains and variant: compile seconds, matrix products, seconds per evaluation,
    and how far each set's log-probabilities are from ``per_set``'s."""
    import jax
    import jax.numpy as jnp

    from bnn_sgmcmc import model

    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    mlp = model.build(hidden, num_classes)
    predict = model.predict_fn(mlp)
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.random((n, input_dim), dtype=np.float32)) for n in sizes]
    fns = programs(predict, sizes, chunk)
    rows = []
    for c in chains:
        params = model.init_chains(jax.random.split(jax.random.key(0), c), mlp, input_dim)
        baseline = None
        for name in ("per_set", *[v for v in variants if v != "per_set"]):
            row: dict[str, Any] = {"chains": c, "variant": name, "sets": len(sizes), "rows": sum(sizes),
                                   "chunk": chunk if name == "chunks" else None}
            with _no_persistent_cache():
                start = time.perf_counter()
                compiled = jax.jit(fns[name]).lower(params, xs).compile()
                row["compile_seconds"] = time.perf_counter() - start
            row["gemms"], row["distinct_gemm_shapes"] = gemms(compiled.as_text())
            out = [np.asarray(o) for o in compiled(params, xs)]
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(compiled(params, xs))
                times.append(time.perf_counter() - start)
            row["seconds"] = statistics.median(times)
            if baseline is None:
                baseline = out
            row["identical"] = all(np.array_equal(a, b) for a, b in zip(out, baseline))
            row["sets_identical"] = sum(np.array_equal(a, b) for a, b in zip(out, baseline))
            row["max_abs_difference"] = float(max(np.max(np.abs(a - b)) for a, b in zip(out, baseline)))
            rows.append(row)
    return [r for r in rows if r["variant"] in variants]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnn_sgmcmc.bench.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the JSON record")
    parser.add_argument("--sets", default=DEFAULT_SETS, help=f"set sizes, NxK for K sets of N (default {DEFAULT_SETS})")
    parser.add_argument("--chains", default="1,8", help="comma-separated numbers of chains (default 1,8)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[500])
    parser.add_argument("--input-dim", type=int, default=784, help="inputs per example (MNIST: 784)")
    parser.add_argument("--chunk", type=int, default=1000, help="rows of a chunk for the chunks variant")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu-autotuning", default="default", choices=["default", "cublas", "none"],
                        help="sampling.gpu_autotuning's XLA flags, set before JAX starts (a CPU ignores them)")
    args = parser.parse_args(argv)

    from bnn_sgmcmc import bench, compilation, provenance

    flags = compilation.use_gpu_autotuning(args.gpu_autotuning)
    sizes = parse_sets(args.sets)
    chains = [int(c) for c in args.chains.split(",")]
    rows = measure(sizes, chains, args.hidden, input_dim=args.input_dim, chunk=args.chunk, repeats=args.repeats)
    record = provenance.record(device=provenance.device(), sets=sizes, hidden=args.hidden, input_dim=args.input_dim,
                               gpu_autotuning=args.gpu_autotuning, xla_flags=list(flags),
                               command=" ".join(["python -m bnn_sgmcmc.bench.evaluation", *(argv or sys.argv[1:])]),
                               rows=rows)
    path = bench.write_record(args.out, "evaluation", record)
    print(f"{'chains':>6} {'variant':<10} {'compile s':>9} {'gemms':>5} {'shapes':>6} {'ms':>8}  identical to per_set")
    for r in rows:
        print(f"{r['chains']:>6} {r['variant']:<10} {r['compile_seconds']:>9.2f} {r['gemms']:>5} "
              f"{r['distinct_gemm_shapes']:>6} {r['seconds'] * 1e3:>8.2f}  {r['identical']} "
              f"({r['sets_identical']} of {r['sets']} sets; max |difference| {r['max_abs_difference']:.2g})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
