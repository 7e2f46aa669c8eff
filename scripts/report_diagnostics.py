"""Rule diagnostics: R-hat and ESS of one sampler's traced predictions, in function space too, and the verdict."""

import os
import sys

# Diagnostics run on the CPU, off any accelerator that a sampling job may be using.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # this checkout's package, in any env

from bnn_sgmcmc import compilation, logs, report

with logs.to_file(snakemake.log[0]):
    # Operational, read here rather than as a param: the sampling jobs' cache holds these programs too.
    compilation.enable_compilation_cache(snakemake.config["sampling"].get("compilation_cache"))
    report.chain_diagnostics(
        predictive=snakemake.input.predictive,
        data=snakemake.input.data,
        sampler=snakemake.wildcards.sampler,
        samplers=snakemake.params.samplers,
        threshold=snakemake.params.threshold,
        ess_per_chain=snakemake.params.ess_per_chain,
        function_space_share=snakemake.params.function_space_share,
        least=snakemake.params.least,
        table=snakemake.output.table,
        verdict_table=snakemake.output.verdict,
        least_table=snakemake.output.least_table,
        figure=snakemake.output.figure,
        histogram=snakemake.output.histogram,
        least_figure=snakemake.output.least_figure,
        dpi=snakemake.params.dpi,
        threads=snakemake.threads,
    )
