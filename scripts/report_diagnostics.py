"""Rule diagnostics: split R-hat and ESS of one sampler's traced predictions, and its trace plot."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.chain_diagnostics(
        predictive=snakemake.input.predictive,
        sampler=snakemake.wildcards.sampler,
        samplers=snakemake.params.samplers,
        threshold=snakemake.params.threshold,
        table=snakemake.output.table,
        figure=snakemake.output.figure,
        dpi=snakemake.params.dpi,
    )
