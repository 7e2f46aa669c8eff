import sys
from pathlib import Path

# The Snakefile checks the config with this checkout's package, installed or not.
# Paths from this file's folder, not workflow.basedir: used as a Snakemake module,
# the workflow's base folder is the host's.
sys.path.insert(0, str(Path(workflow.current_basedir).parents[1] / "src"))

from bnn_sgmcmc.config import check as check_config
from bnn_sgmcmc.errors import ConfigError
from bnn_sgmcmc.invocation import report_destination
from bnn_sgmcmc.logs import cannot_write
from bnn_sgmcmc.memory import machine_memory
from bnn_sgmcmc.plan import (
    REFERENCE,
    kernel_settings,
    reference_init,
    reference_sampler,
    reference_sampling,
    sampler_sampling,
    shard_chains,
    warmup_sampler,
)
from bnn_sgmcmc.schema import check_sampler_keys, check_schema, coerce, load_schema

# The schema file, with each kernel's keys and defaults from its module (bnn_sgmcmc.kernels).
SCHEMA = load_schema(workflow.source_path("../schemas/config.schema.yaml"))
try:
    # Nested --config mappings arrive untyped ('{chains: 8}' gives '8'): type them first.
    coerce(config, SCHEMA)
    # A kernel's foreign key, named with the kernel (the schema would only say "unexpected").
    check_sampler_keys(config, SCHEMA)
    # JSON Schema validation as Snakemake's validate() does it, defaults filled in the same way (validate()
    # reads the schema file, which lacks the kernels' part), with the key and the problem in one line.
    check_schema(config, SCHEMA)
    # Jobs that run here must fit in this machine's memory; a cluster's jobs ask its scheduler for theirs.
    check_config(config, memory_limit=machine_memory() if workflow.local_exec else None)
except ConfigError as err:
    raise WorkflowError(f"Invalid config: {err}") from None

# Snakemake writes --report's file once the DAG is built (with --report-after-run, after
# the whole run) and meets a destination it cannot write with its own traceback.
_report = report_destination(sys.argv)
if _report is not None and (_problem := cannot_write(_report)):
    raise WorkflowError(f"--report: {_problem}")


# Data sets by name: the one the model is trained and tested on. Every data
# path carries the name, so that more data sets can join without new rules.
DATASETS = {"mnist": config["data"]}
# The optional out-of-distribution set: the same loader, another source. A
# synthetic one is drawn with another seed, so its glyphs are new classes.
if config["ood"]["source"] is not None:
    _synthetic = config["data"]["synthetic"]
    _seed = config["seed"] if _synthetic["seed"] is None else _synthetic["seed"]
    DATASETS["ood"] = config["data"] | {
        "source": config["ood"]["source"],
        "synthetic": _synthetic | {"seed": _seed + 1},
        "subset": {"train": None, "test": None, "seed": None},  # ood.examples sizes it
    }


wildcard_constraints:
    dataset="|".join(DATASETS),


def data_config(wildcards):
    return DATASETS[wildcards.dataset]


def download_config(wildcards):
    # A subset is drawn in preprocess: changing it does not fetch the source again.
    return {k: v for k, v in DATASETS[wildcards.dataset].items() if k != "subset"}


SAMPLERS = config["samplers"]
# The chain runs: every sampler and, with a reference block, the reference posterior
# (full-batch HMC), which the warmup, sample, gather and diagnostics rules run as
# one more sampler with its own kernel settings, steps and chains.
RUNS = {name: kernel_settings(entry) for name, entry in SAMPLERS.items()}
RUN_SAMPLING = {
    name: sampler_sampling(config["sampling"], entry)
    for name, entry in SAMPLERS.items()
}
if config["reference"] is not None:
    RUNS[REFERENCE] = reference_sampler(config)
    RUN_SAMPLING[REFERENCE] = reference_sampling(config)
# Each run's shards' global chain indices: a chain's draws depend on its index only.
RUN_SHARD_CHAINS = {
    name: shard_chains(s["chains"], s["shards"]) for name, s in RUN_SAMPLING.items()
}

# Settings that change results; operational ones (checkpoint_every,
# compilation_cache) are read from the config by the scripts, so that changing
# them does not rerun finished GPU jobs.
# With --sdm conda, the sampling rules' environment: CPU or CUDA wheels.
SAMPLING_ENV = {"cpu": "../../envs/jax.yaml", "cuda": "../../envs/jax-cuda.yaml"}[
    config["conda_env"]
]
WARMUP_KEYS = ("batch_size", "batching", "warmup_steps", "eval_every")
SAMPLING_KEYS = WARMUP_KEYS + ("sampling_steps", "thinning", "save_weights_every")

# A sampling job's cores: sampling.cpu_threads where set (its XLA threads), else 2,
# which keeps a 2-core machine to one sampling job at a time.
SAMPLING_THREADS = config["sampling"]["cpu_threads"] or 2


wildcard_constraints:
    sampler="|".join(RUNS),
    shard=r"\d+",


def training_data(wildcards):
    return expand(rules.preprocess.output.h5, dataset="mnist")[0]


def sampler_config(wildcards):
    return RUNS[wildcards.sampler]


def warmup_sampler_config(wildcards):
    """What warmup depends on: the sampler but a schedule that spans sampling alone."""
    return warmup_sampler(RUNS[wildcards.sampler])


def warmup_settings(wildcards):
    """The sampling block's warmup keys, and the sampling phase's length if the schedule spans both phases."""
    phases = RUNS[wildcards.sampler]["schedule"]["phases"]
    both = ("sampling_steps",) if {"warmup", "sampling"} <= set(phases) else ()
    return run_settings(wildcards, WARMUP_KEYS + both)


def sampling_settings(wildcards):
    return run_settings(wildcards, SAMPLING_KEYS)


def run_settings(wildcards, keys):
    """The run's sampling ``keys``, and sampling.cpu_threads where set: CPU results depend
    on it, so changing it reruns the jobs; at null it is left out, so that runs made
    before the key existed are not rerun."""
    block = RUN_SAMPLING[wildcards.sampler]
    threads = (
        {} if block["cpu_threads"] is None else {"cpu_threads": block["cpu_threads"]}
    )
    return {k: block[k] for k in keys} | threads


def model_settings(wildcards):
    """The model block; the reference started from the prior draws its initial weights from it."""
    if wildcards.sampler == REFERENCE and reference_init(config) is None:
        return config["model"] | {"init": "prior"}
    return config["model"]


def init_warmups(wildcards):
    """The warmup files the reference's chains start from (none for a sampler, or from the prior)."""
    if wildcards.sampler != REFERENCE or reference_init(config) is None:
        return []
    start = reference_init(config)
    return expand(
        rules.warmup.output.h5, sampler=start, shard=range(len(RUN_SHARD_CHAINS[start]))
    )


def evaluation_settings(wildcards):
    """What sampling records besides the test set: function-space draws, shifts, OOD."""
    return {
        "draws_per_chain": config["diagnostics"]["draws_per_chain"],
        "shift": config["shift"],
        "ood_examples": config["ood"]["examples"] if "ood" in DATASETS else 0,
    }


def ood_data(wildcards):
    return (
        expand(rules.preprocess.output.h5, dataset="ood") if "ood" in DATASETS else []
    )


def chains_of_shard(wildcards):
    return RUN_SHARD_CHAINS[wildcards.sampler][int(wildcards.shard)]


def shards_of(wildcards):
    return len(RUN_SHARD_CHAINS[wildcards.sampler])


def shard_predictives(wildcards):
    return expand(
        rules.sample.output.h5,
        sampler=wildcards.sampler,
        shard=range(shards_of(wildcards)),
    )


# Report figures in the configured format; the report rules read only the
# gathered predictive files, so their settings never trigger resampling.
FMT = config["plots"]["format"]
DPI = config["plots"]["dpi"]
ANALYSIS = config["analysis"]


def gathered_predictives(wildcards):
    return expand(rules.gather.output.h5, sampler=SAMPLERS)


def agreement_table(wildcards):
    """The agreement with the reference posterior, when the config has one."""
    return [rules.agreement.output.table] if REFERENCE in RUNS else []
