"""Rule decisions: least posterior expected cost against arg-max and the threshold rule."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.decisions(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        costs=snakemake.params.costs,
        reject=snakemake.params.reject,
        threshold=snakemake.params.threshold,
        table=snakemake.output.table,
        figure=snakemake.output.figure,
        dpi=snakemake.params.dpi,
    )
