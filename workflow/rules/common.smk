import sys

from snakemake.utils import validate

# The Snakefile checks the config with this checkout's package, installed or not.
sys.path.insert(0, f"{workflow.basedir}/src")

from bnn_sgmcmc.config import ConfigError, check as check_config

validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"Invalid config: {err}") from None


# Data sets by name: the one the model is trained and tested on. Every data
# path carries the name, so that more data sets can join without new rules.
DATASETS = {"mnist": config["data"]}


wildcard_constraints:
    dataset="|".join(DATASETS),


def data_config(wildcards):
    return DATASETS[wildcards.dataset]
