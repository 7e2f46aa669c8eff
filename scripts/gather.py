"""Rule gather: join a sampler's shards into one predictive file, chains along the first axis."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, steps

with logs.to_file(snakemake.log[0]):
    steps.gather(shards=list(snakemake.input.shards), out=snakemake.output.h5)
