"""Benchmark: what the function-space diagnostics cost, in sampling time and in memory.

Run ``python -m bnn_sgmcmc.bench.function_space`` (``--help`` lists the
options). It measures, each in a fresh process:

* the report side: :func:`bnn_sgmcmc.diagnostics.function_space_rhat` on
  ``--draws`` x ``--chains`` x ``--examples`` float16 draws (default the full
  8 x 1,000 x 10,000 of the issue), its seconds and the process's peak host
  memory, against the 2 GiB target;
* the sampling side: the sampling phase of ``--sampler`` with
  ``--sampling-chains`` chains and ``--sampling-steps`` kept samples on
  ``--source``, once recording the draws (``draws_per_chain`` =
  ``--draws``) and once not, and the overhead of recording them.

It writes a JSON record and prints a short table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def measure_report(task: dict[str, Any]) -> dict[str, Any]:
    """Function-space R-hat of synthetic draws whose chains disagree on a tenth of the examples."""
    from bnn_sgmcmc import diagnostics

    d, c, n = task["draws"], task["chains"], task["examples"]
    rng = np.random.default_rng(0)
    # Built in float16 a slice at a time, as sampling writes it: no float64 copy of the whole.
    log_probs = np.empty((d, c, n), np.float16)
    for start in range(0, n, 500):
        width = min(500, n - start)
        log_probs[:, :, start:start + width] = np.log(rng.beta(5, 2, size=(d, c, width)))
    tenth = n // 10
    log_probs[:, 0, :tenth] = np.log(rng.beta(2, 5, size=(d, tenth)))
    diagnostics.function_space_rhat(log_probs[:, :, :2])  # imports and compile outside the timing
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    rhat = diagnostics.function_space_rhat(log_probs)
    seconds = time.perf_counter() - start
    return {
        "draws": d, "chains": c, "examples": n, "input_mib": log_probs.nbytes / 2**20, "seconds": seconds,
        "peak_host_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_host_mib_before": before, "flagged": int(np.sum(rhat > 1.1)),
    }


def _child(args: tuple[str, dict[str, Any]]) -> Any:
    from bnn_sgmcmc import provenance
    from bnn_sgmcmc.bench import speed

    kind, task = args
    if kind == "report":  # and the device, which the record names: one process fewer to start
        return measure_report(task) | {"device": provenance.device()}
    return speed.measure_ours(task)


def run_isolated(kind: str, task: dict[str, Any]) -> Any:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, ((kind, task),))


def measure_sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling side: ``--sampler``'s sampling without and with the draws, and the overhead of recording them."""
    from bnn_sgmcmc.bench import speed

    sampling: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_h5, _, (_, n_test) = speed.write_data(args.source, 0, Path(tmp))
        plan = {"batch_size": 512, "warmup_steps": 10, "sampling_steps": args.sampling_steps,
                "eval_every": min(100, args.sampling_steps)}
        task = {"data": data_h5, "sampler": args.sampler, "sampler_config": speed.default_samplers()[args.sampler],
                "plan": plan, "seed": 0, "chains": args.sampling_chains,
                # One cache for both runs: the second reads the warmup's and the initial weights' programs
                # from it (the sampling seconds exclude compiling either way).
                "compilation_cache": str(Path(tmp) / "jax-cache")}
        for label, draws in (("without", 0), ("with", args.draws)):
            run = run_isolated("ours", task | {"evaluation": {"draws_per_chain": draws}})
            sampling[label] = {"seconds": run["sampling"]["seconds"], "draws": run["sampling"]["draws"],
                               "peak_host_mib": run["peak_host_mib"], "peak_device_mib": run["peak_device_mib"]}
            print(f"sampling {label} draws: {run['sampling']['seconds']:.2f} s, {run['sampling']['draws']} draws, "
                  f"peak host {run['peak_host_mib']:.0f} MiB", file=sys.stderr, flush=True)
    sampling["overhead"] = sampling["with"]["seconds"] / sampling["without"]["seconds"] - 1
    # The record's key for the step plan, as records before the name "plan" have it.
    return sampling | {"source": args.source, "sampler": args.sampler, "chains": args.sampling_chains,
                       "test_examples": n_test, "schedule": plan}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bnn_sgmcmc.bench.function_space", description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (diagnostics.draws_per_chain)")
    parser.add_argument("--chains", type=int, default=8, help="chains of the report-side measurement")
    parser.add_argument("--examples", type=int, default=10000, help="test examples of the report-side measurement")
    parser.add_argument("--source", default="synthetic", help="data.source of the sampling-side measurement")
    parser.add_argument("--sampler", default="sgld", choices=["sgld", "sghmc"])
    parser.add_argument("--sampling-chains", type=int, default=8)
    parser.add_argument("--sampling-steps", type=int, default=1000)
    parser.add_argument("--no-sampling", action="store_true", help="measure the report side only")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the JSON record")
    args = parser.parse_args(argv)

    from bnn_sgmcmc import bench, provenance

    created = provenance.now()
    report = run_isolated("report", {"draws": args.draws, "chains": args.chains, "examples": args.examples})
    device = report.pop("device")
    print(f"report side: {args.draws} draws x {args.chains} chains x {args.examples} examples "
          f"({report['input_mib']:.0f} MiB of float16): {report['seconds']:.1f} s, peak host memory "
          f"{report['peak_host_mib']:.0f} MiB", file=sys.stderr, flush=True)
    sampling = {} if args.no_sampling else measure_sampling(args)
    result = {
        "created": created, "command": " ".join([parser.prog, *(argv if argv is not None else sys.argv[1:])]),
        "host": platform.node(), "cpu_count": os.cpu_count(), "device": device,
        "versions": provenance.versions(), "report": report, "sampling": sampling,
    }
    path = bench.write_record(args.out, "function_space", result)
    print(f"report side: {report['seconds']:.1f} s, peak {report['peak_host_mib']:.0f} MiB (target 2048)")
    if sampling:
        print(f"sampling side: {100 * sampling['overhead']:+.1f} % sampling time with the draws "
              f"({sampling['without']['seconds']:.2f} s -> {sampling['with']['seconds']:.2f} s)")
    print(f"record: {path}")
    return result


if __name__ == "__main__":
    main()
