"""bnn_sgmcmc: SG-MCMC posteriors of a Bayesian MLP on MNIST, as a Snakemake workflow.

Modules, one job each: ``config`` (checks beyond the schema), ``data`` (sources,
validation, synthetic data), ``h5io`` (files), ``provenance`` (how outputs were
made), ``logs`` (job logging) and ``steps`` (one function per workflow rule).
"""

__version__ = "0.1.0"
