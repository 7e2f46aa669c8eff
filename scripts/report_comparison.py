"""Rule compare: running-ensemble accuracy per step, gradient evaluation and second; samplers ranked."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.comparison(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        samplers=snakemake.params.samplers,
        figure=snakemake.output.figure,
        table=snakemake.output.table,
        verdicts=dict(zip(snakemake.params.samplers, snakemake.input.verdicts)),
        ranking_figure=snakemake.output.ranking,
        dpi=snakemake.params.dpi,
    )
