# Two commands: `make run` (the default workflow) and `make test` (lint + tests).
# Both build .venv with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
# Extras for the package: `make run EXTRAS=cuda` installs JAX for NVIDIA GPUs, EXTRAS=cuda,slurm
# also Snakemake's Slurm executor plugin (for --profile profiles/slurm).
EXTRAS ?=
# More snakemake arguments for `make run` and `make dry-run`, e.g.
# make run ARGS="--config data='{source: /path/to/mnist}'"
ARGS ?=
comma := ,
PIP_INSTALL = $(BIN)/python -m pip install --disable-pip-version-check -q --no-compile -c constraints.txt
# pip byte-compiles what it installs one file at a time (40 of the test install's 78 s on 2 cores); this
# does it on every core (and for this package, which an editable install leaves to each process where
# PYTHONDONTWRITEBYTECODE is set), and leaves out the libraries' own test suites, which nothing imports.
BYTE_COMPILE = $(BIN)/python -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib src

.PHONY: run test test-bench install install-test lint dry-run check-config docs lock clean

run: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/python -m pytest

# The benchmark commands end to end on tiny data (55 s on 2 cores): run before measuring, since a broken
# benchmark found on a lent GPU costs its minutes. Not in make test, which must stay under 8 minutes.
test-bench: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m bench

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

dry-run: $(VENV)/.installed
	$(BIN)/snakemake -n $(ARGS)

# Config files checked as the Snakefile checks them, a YAML error named by file and line (Snakemake's own
# message names neither): make check-config FILES="config.yaml examples/reference.yaml"
FILES ?= config.yaml
check-config: $(VENV)/.installed
	$(BIN)/python -m bnn_sgmcmc.configfiles $(FILES)

# Pages generated from the code: docs/kernels.md from the kernel modules, docs/config.md from the config
# schema, the README's rule graph from Snakemake's (a test fails when any is stale).
docs: $(VENV)/.installed
	$(BIN)/python -m bnn_sgmcmc.kernels docs > docs/kernels.md
	$(BIN)/python -m bnn_sgmcmc.schema docs > docs/config.md
	$(BIN)/python tools/rulegraph.py README.md

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	$(BYTE_COMPILE)
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[test$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	$(BYTE_COMPILE)
	touch $@ $(VENV)/.installed

# Refresh constraints.txt: a clean resolve of pyproject.toml's ranges under each interpreter of
# LOCK_PYTHONS, merged (tools/merge_locks.py). JAX 0.11 and newer need Python 3.12, so the pins that
# differ carry a python_version marker and every interpreter gets the newest set it can run.
# Under pyenv: make lock LOCK_PYTHONS="$$(pyenv prefix 3.11.7)/bin/python $$(pyenv prefix 3.12.1)/bin/python"
LOCK_PYTHONS ?= python3.11 python3.12
lock:
	rm -rf .venv-lock
	for python in $(LOCK_PYTHONS); do \
		$$python -m venv .venv-lock/venv && \
		.venv-lock/venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip && \
		.venv-lock/venv/bin/python -m pip install --disable-pip-version-check -q -e ".[test]" && \
		version=$$(.venv-lock/venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') && \
		.venv-lock/venv/bin/python -m pip freeze --exclude-editable > .venv-lock/$$version.txt && \
		rm -rf .venv-lock/venv || exit 1; \
	done
	$(PYTHON) tools/merge_locks.py .venv-lock/*.txt > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
