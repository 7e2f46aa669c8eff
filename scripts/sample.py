"""Rule sample: sample one shard of chains from its warmup state, accumulating predictions."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, steps

with logs.to_file(snakemake.log[0]):
    steps.sample(
        data=snakemake.input.data,
        warmup=snakemake.input.warmup,
        sampler=snakemake.wildcards.sampler,
        sampler_config=snakemake.params.sampler,
        model_config=snakemake.params.model,
        # Operational settings come from the config, not params: changing them reruns nothing.
        sampling_config=snakemake.params.sampling
        | {k: snakemake.config["sampling"][k] for k in ("checkpoint_every", "compilation_cache")},
        seed=snakemake.params.seed,
        chains=snakemake.params.chains,
        shard=int(snakemake.wildcards.shard),
        shards=snakemake.params.shards,
        checkpoint=snakemake.params.checkpoint,
        out=snakemake.output.h5,
    )
