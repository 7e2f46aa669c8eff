"""Rule summary: one row per sampler in results/tables/summary.tsv."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.summary(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        threshold=snakemake.params.threshold,
        bins=snakemake.params.bins,
        table=snakemake.output.table,
        diagnostics=dict(zip(snakemake.params.samplers, snakemake.input.diagnostics)),
        ood_table=snakemake.input.ood,
        decisions_table=snakemake.input.decisions,
        agreement_table=snakemake.input.agreement[0] if snakemake.input.agreement else None,
    )
