rule warmup:
    input:
        data=training_data,
        init=init_warmups,
    output:
        h5="results/sampling/{sampler}/shard{shard}/warmup.h5",
    log:
        "results/logs/warmup/{sampler}/shard{shard}.log",
    conda:
        SAMPLING_ENV
    threads: SAMPLING_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        sampler=warmup_sampler_config,
        model=model_settings,
        sampling=warmup_settings,
        seed=config["seed"],
        chains=chains_of_shard,
        shards=shards_of,
        checkpoint="results/checkpoints/{sampler}/shard{shard}/warmup.h5",
    script:
        "../../scripts/warmup.py"


rule sample:
    input:
        data=training_data,
        warmup=rules.warmup.output.h5,
        ood=ood_data,
    output:
        h5="results/sampling/{sampler}/shard{shard}/predictive.h5",
    log:
        "results/logs/sample/{sampler}/shard{shard}.log",
    conda:
        SAMPLING_ENV
    threads: SAMPLING_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        sampler=sampler_config,
        model=model_settings,
        sampling=sampling_settings,
        evaluation=evaluation_settings,
        seed=config["seed"],
        chains=chains_of_shard,
        shards=shards_of,
        checkpoint="results/checkpoints/{sampler}/shard{shard}/sampling.h5",
    script:
        "../../scripts/sample.py"


# Joining a sampler's shards is quick file work: no cluster job needed.
localrules:
    gather,


rule gather:
    input:
        shards=shard_predictives,
    output:
        h5="results/predictive/{sampler}.h5",
    log:
        "results/logs/gather/{sampler}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/gather.py"
