"""Rule preprocess: validate the raw arrays and write the data HDF5 file."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, steps

with logs.to_file(snakemake.log[0]):
    steps.preprocess(
        raw=snakemake.input.raw,
        record=snakemake.input.provenance,
        data_config=snakemake.params.data,
        seed=snakemake.params.seed,
        dataset=snakemake.wildcards.dataset,
        h5=snakemake.output.h5,
    )
