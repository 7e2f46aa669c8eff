"""Rule shift: accuracy, NLL, ECE and entropy against rotation and noise, per sampler."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.shift(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        bins=snakemake.params.bins,
        table=snakemake.output.table,
        figure=snakemake.output.figure,
        dpi=snakemake.params.dpi,
    )
