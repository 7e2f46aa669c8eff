"""Rule agreement: every sampler's predictive against the reference posterior's, with its noise floor."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.agreement(
        predictive=dict(zip(snakemake.params.samplers, snakemake.input.predictive)),
        reference=snakemake.input.reference[0],
        verdicts=dict(zip(snakemake.params.runs, snakemake.input.verdicts)),
        reference_diagnostics=snakemake.input.reference_diagnostics[0],
        samplers=snakemake.params.samplers,
        table=snakemake.output.table,
        figure=snakemake.output.figure,
        bins=snakemake.params.bins,
        dpi=snakemake.params.dpi,
    )
