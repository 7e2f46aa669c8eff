from snakemake.utils import min_version

min_version("9.5")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sampling.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        expand(rules.preprocess.output.h5, dataset=DATASETS),
        expand(rules.gather.output.h5, sampler=SAMPLERS),
        rules.summary.output,
        rules.plot_warmup.output,
        rules.compare.output,
        rules.threshold_analysis.output,
        expand(rules.uncertainty.output, sampler=SAMPLERS),
        expand(rules.calibration.output, sampler=SAMPLERS),
        expand(rules.diagnostics.output, sampler=RUNS),
        rules.shift.output,
        rules.ood.output,
        rules.decisions.output,
        # With a reference block: every sampler's agreement with the reference posterior.
        rules.agreement.output if REFERENCE in RUNS else [],
