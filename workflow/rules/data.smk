# Compute nodes often have no internet: fetching runs on the submit host.
localrules:
    download,


rule download:
    output:
        raw="results/data/{dataset}/raw.npz",
        provenance="results/data/{dataset}/provenance.json",
    log:
        "results/logs/download/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    params:
        data=download_config,
        seed=config["seed"],
    script:
        "../../scripts/download.py"


rule preprocess:
    input:
        raw=rules.download.output.raw,
        provenance=rules.download.output.provenance,
    output:
        h5="results/data/{dataset}.h5",
    log:
        "results/logs/preprocess/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        data=data_config,
        seed=config["seed"],
    script:
        "../../scripts/preprocess.py"
