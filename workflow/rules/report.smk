# Report rules are small: they run on the submit host, never as cluster jobs.
localrules:
    plot_warmup,
    compare,
    uncertainty,
    threshold_analysis,
    calibration,
    diagnostics,
    shift,
    ood,
    decisions,
    summary,
    agreement,


rule plot_warmup:
    input:
        predictive=gathered_predictives,
    output:
        figure=report(
            f"results/figures/warmup.{FMT}",
            caption="../report/warmup.rst",
            category="02. Warmup",
            labels={"figure": "test accuracy during warmup"},
        ),
    log:
        "results/logs/report/warmup.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        dpi=DPI,
    script:
        "../../scripts/report_warmup.py"


rule uncertainty:
    input:
        predictive=rules.gather.output.h5,
        data=training_data,
    output:
        images=report(
            f"results/figures/uncertainty/{{sampler}}_images.{FMT}",
            caption="../report/uncertain_images.rst",
            category="04. Uncertainty",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "least confident test images"},
        ),
        per_class=report(
            f"results/figures/uncertainty/{{sampler}}_per_digit.{FMT}",
            caption="../report/uncertain_per_digit.rst",
            category="04. Uncertainty",
            subcategory="{sampler}",
            labels={
                "sampler": "{sampler}",
                "figure": "uncertain predictions per digit",
            },
        ),
        table=report(
            "results/tables/uncertainty/{sampler}.tsv",
            caption="../report/uncertain_table.rst",
            category="04. Uncertainty",
            subcategory="{sampler}",
            labels={
                "sampler": "{sampler}",
                "figure": "least confident test examples (table)",
            },
        ),
    log:
        "results/logs/report/uncertainty/{sampler}.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        threshold=ANALYSIS["threshold"],
        n_images=ANALYSIS["uncertain_images"],
        dpi=DPI,
    script:
        "../../scripts/report_uncertainty.py"


rule threshold_analysis:
    input:
        predictive=gathered_predictives,
    output:
        figure=report(
            f"results/figures/threshold.{FMT}",
            caption="../report/threshold.rst",
            category="05. Threshold analysis",
            labels={"figure": "accuracy and dropped share against threshold"},
        ),
        rejection=report(
            f"results/figures/rejection.{FMT}",
            caption="../report/rejection.rst",
            category="05. Threshold analysis",
            labels={"figure": "accuracy-rejection curve"},
        ),
        table=report(
            "results/tables/threshold.tsv",
            caption="../report/threshold_table.rst",
            category="05. Threshold analysis",
            labels={"figure": "threshold curve (table)"},
        ),
    log:
        "results/logs/report/threshold.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        points=ANALYSIS["threshold_points"],
        dpi=DPI,
    script:
        "../../scripts/report_threshold.py"


rule calibration:
    input:
        predictive=rules.gather.output.h5,
    output:
        figure=report(
            f"results/figures/calibration/{{sampler}}.{FMT}",
            caption="../report/reliability.rst",
            category="06. Calibration",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "reliability diagram"},
        ),
        table=report(
            "results/tables/calibration/{sampler}.tsv",
            caption="../report/calibration_table.rst",
            category="06. Calibration",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "NLL, Brier and ECE (table)"},
        ),
    log:
        "results/logs/report/calibration/{sampler}.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        bins=ANALYSIS["calibration_bins"],
        dpi=DPI,
    script:
        "../../scripts/report_calibration.py"


rule diagnostics:
    input:
        predictive=rules.gather.output.h5,
        data=training_data,
    output:
        figure=report(
            f"results/figures/diagnostics/{{sampler}}.{FMT}",
            caption="../report/diagnostics.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "trace plot"},
        ),
        histogram=report(
            f"results/figures/diagnostics/{{sampler}}_function_space.{FMT}",
            caption="../report/function_space.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "function-space R-hat"},
        ),
        least_figure=report(
            f"results/figures/diagnostics/{{sampler}}_least_converged.{FMT}",
            caption="../report/least_converged.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "least converged test examples"},
        ),
        table=report(
            "results/tables/diagnostics/{sampler}.tsv",
            caption="../report/diagnostics_table.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "R-hat and ESS (table)"},
        ),
        verdict=report(
            "results/tables/diagnostics/{sampler}_verdict.tsv",
            caption="../report/verdict_table.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={"sampler": "{sampler}", "figure": "convergence verdict (table)"},
        ),
        least_table=report(
            "results/tables/diagnostics/{sampler}_least_converged.tsv",
            caption="../report/least_converged_table.rst",
            category="07. Chain diagnostics",
            subcategory="{sampler}",
            labels={
                "sampler": "{sampler}",
                "figure": "least converged test examples (table)",
            },
        ),
    log:
        "results/logs/report/diagnostics/{sampler}.log",
    # BlackJAX's diagnostics: the sampling environment, run on the CPU.
    conda:
        SAMPLING_ENV
    threads: config["diagnostics"]["threads"]
    params:
        samplers=list(RUNS),
        threshold=config["diagnostics"]["rhat_threshold"],
        ess_per_chain=config["diagnostics"]["ess_per_chain"],
        function_space_share=config["diagnostics"]["function_space_share"],
        least=config["diagnostics"]["least_converged"],
        dpi=DPI,
    script:
        "../../scripts/report_diagnostics.py"


rule agreement:
    input:
        predictive=gathered_predictives,
        reference=expand(rules.gather.output.h5, sampler=REFERENCE),
        verdicts=expand(rules.diagnostics.output.verdict, sampler=RUNS),
        reference_diagnostics=expand(rules.diagnostics.output.table, sampler=REFERENCE),
    output:
        figure=report(
            f"results/figures/agreement.{FMT}",
            caption="../report/agreement.rst",
            category="03. Sampler comparison",
            labels={"figure": "agreement with the reference posterior"},
        ),
        table=report(
            "results/tables/agreement.tsv",
            caption="../report/agreement_table.rst",
            category="03. Sampler comparison",
            labels={"figure": "agreement with the reference posterior (table)"},
        ),
    log:
        "results/logs/report/agreement.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        runs=list(RUNS),
        bins=ANALYSIS["calibration_bins"],
        dpi=DPI,
    script:
        "../../scripts/report_agreement.py"


rule compare:
    input:
        predictive=gathered_predictives,
        verdicts=expand(rules.diagnostics.output.verdict, sampler=SAMPLERS),
    output:
        figure=report(
            f"results/figures/comparison.{FMT}",
            caption="../report/comparison.rst",
            category="03. Sampler comparison",
            labels={"figure": "ensemble accuracy while sampling"},
        ),
        ranking=report(
            f"results/figures/ranking.{FMT}",
            caption="../report/ranking.rst",
            category="03. Sampler comparison",
            labels={"figure": "samplers ranked"},
        ),
        table=report(
            "results/tables/comparison.tsv",
            caption="../report/comparison_table.rst",
            category="03. Sampler comparison",
            labels={"figure": "samplers compared and ranked (table)"},
        ),
    log:
        "results/logs/report/comparison.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        dpi=DPI,
    script:
        "../../scripts/report_comparison.py"


rule shift:
    input:
        predictive=gathered_predictives,
    output:
        figure=report(
            f"results/figures/shift.{FMT}",
            caption="../report/shift.rst",
            category="08. Distribution shift",
            labels={"figure": "metrics against rotation and noise"},
        ),
        table=report(
            "results/tables/shift.tsv",
            caption="../report/shift_table.rst",
            category="08. Distribution shift",
            labels={"figure": "metrics against shift (table)"},
        ),
    log:
        "results/logs/report/shift.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        bins=ANALYSIS["calibration_bins"],
        dpi=DPI,
    script:
        "../../scripts/report_shift.py"


rule ood:
    input:
        predictive=gathered_predictives,
    output:
        figure=report(
            f"results/figures/ood.{FMT}",
            caption="../report/ood.rst",
            category="09. Out-of-distribution detection",
            labels={"figure": "entropy and mutual information, in against out"},
        ),
        table=report(
            "results/tables/ood.tsv",
            caption="../report/ood_table.rst",
            category="09. Out-of-distribution detection",
            labels={"figure": "AUROC (table)"},
        ),
    log:
        "results/logs/report/ood.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        source=config["ood"]["source"],
        dpi=DPI,
    script:
        "../../scripts/report_ood.py"


rule decisions:
    input:
        predictive=gathered_predictives,
    output:
        figure=report(
            f"results/figures/decisions.{FMT}",
            caption="../report/decisions.rst",
            category="10. Decisions under a cost matrix",
            labels={"figure": "realised against expected cost"},
        ),
        table=report(
            "results/tables/decisions.tsv",
            caption="../report/decisions_table.rst",
            category="10. Decisions under a cost matrix",
            labels={"figure": "decision rules compared (table)"},
        ),
    log:
        "results/logs/report/decisions.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        costs=config["decision"]["costs"],
        reject=config["decision"]["reject"],
        threshold=ANALYSIS["threshold"],
        dpi=DPI,
    script:
        "../../scripts/report_decisions.py"


rule summary:
    input:
        predictive=gathered_predictives,
        diagnostics=expand(rules.diagnostics.output.verdict, sampler=SAMPLERS),
        agreement=agreement_table,
        ood=rules.ood.output.table,
        decisions=rules.decisions.output.table,
    output:
        table=report(
            "results/tables/summary.tsv",
            caption="../report/summary.rst",
            category="01. Summary",
            labels={"figure": "one row per sampler"},
        ),
    log:
        "results/logs/report/summary.log",
    conda:
        "../../envs/report.yaml"
    params:
        samplers=list(SAMPLERS),
        threshold=ANALYSIS["threshold"],
        bins=ANALYSIS["calibration_bins"],
    script:
        "../../scripts/report_summary.py"
