"""Rule sample: sample one shard of chains from its warmup state, accumulating predictions."""

import os
import sys

# Several jobs may share one GPU: take memory as needed, not 75 % of the card up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, steps
from bnn_sgmcmc.experiment import SamplerJob

with logs.to_file(snakemake.log[0]):
    steps.sample(SamplerJob.from_snakemake(snakemake))
