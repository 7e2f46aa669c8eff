"""Rule uncertainty: one sampler's least confident predictions and uncertain counts per digit."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import logs, report

with logs.to_file(snakemake.log[0]):
    report.uncertainty(
        predictive=snakemake.input.predictive,
        data=snakemake.input.data,
        sampler=snakemake.wildcards.sampler,
        samplers=snakemake.params.samplers,
        threshold=snakemake.params.threshold,
        n_images=snakemake.params.n_images,
        images_figure=snakemake.output.images,
        per_class_figure=snakemake.output.per_class,
        table=snakemake.output.table,
        dpi=snakemake.params.dpi,
    )
