"""Rule threshold_analysis: accuracy and dropped share against the threshold; accuracy-rejection curves."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.threshold(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        samplers=snakemake.params.samplers,
        points=snakemake.params.points,
        figure=snakemake.output.figure,
        rejection_figure=snakemake.output.rejection,
        table=snakemake.output.table,
        dpi=snakemake.params.dpi,
    )
