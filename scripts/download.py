"""Rule download: fetch the raw images and labels from data.source (runs on the submit host)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, steps

with logs.to_file(snakemake.log[0]):
    steps.download(
        data_config=snakemake.params.data,
        seed=snakemake.params.seed,
        dataset=snakemake.wildcards.dataset,
        raw=snakemake.output.raw,
        record=snakemake.output.provenance,
    )
