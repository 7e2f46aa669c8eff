"""Rule plot_warmup: pointwise test accuracy against warmup step, every sampler."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.warmup(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        samplers=snakemake.params.samplers,
        figure=snakemake.output.figure,
        dpi=snakemake.params.dpi,
    )
