"""Rule ood: in- against out-of-distribution AUROC by entropy and mutual information."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.ood(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        source=snakemake.params.source,
        table=snakemake.output.table,
        figure=snakemake.output.figure,
        dpi=snakemake.params.dpi,
    )
