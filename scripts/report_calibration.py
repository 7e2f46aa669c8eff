"""Rule calibration: NLL, Brier, ECE and the reliability diagram of one sampler."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.calibration(
        predictive=snakemake.input.predictive,
        sampler=snakemake.wildcards.sampler,
        samplers=snakemake.params.samplers,
        bins=snakemake.params.bins,
        figure=snakemake.output.figure,
        table=snakemake.output.table,
        dpi=snakemake.params.dpi,
    )
