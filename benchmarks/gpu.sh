#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md in one call, most important first,
# each bounded so that the whole fits in BUDGET seconds (default 560):
#   1. a 20-second smoke run of the benchmark on synthetic data (stops here if it fails);
#   2. what the function-space diagnostics cost (bnn_sgmcmc.bench.function_space);
#   3. one matrix shape for every evaluation set against one per set: compile
#      (autotuning), speed, agreement (bnn_sgmcmc.bench.evaluation);
#   4. the benchmark for SGLD: reference loop against ours, then 1 to 64 chains;
#   5. the end-to-end workflow, cold and warm (benchmarks/end_to_end.sh), then
#      again with sampling.gpu_autotuning: cublas;
#   6. the benchmark for SGHMC, with 1, 2, 8 and 16 chains.
# Usage: benchmarks/gpu.sh MNIST_DIR OUT_DIR [BUDGET]
# GPU_PLAN=reference runs instead issue #13's full-length reference posterior:
# the card's float32 matrix-product rate; what each of the reference's
# matmul_precision values costs per full-data gradient of 8 chains and how far
# it moves the log density (bnn_sgmcmc.bench.precision); then config.yaml with
# examples/reference.yaml at 8 chains (8 x 1,000 HMC steps of 200 leapfrog
# steps, and every sampler's agreement with it) at the fastest precision whose
# error is at float32's level (float32 unless a bfloat16 algorithm is faster
# with an error under 0.05), with fewer steps if the probe says that
# 1,100 do not fit in the budget (sampling first, then warmup too), through benchmarks/sampler_zoo.sh, in
# .gpu-work/reference (kept: a call cut short by BUDGET resumes from the
# checkpoints in the next call on the same machine).
# Each benchmark writes its JSON/TSV record after every measurement, so a step
# cut short by its time limit still leaves what it measured.
# Needs python3 with this package's dependencies (constraints.txt) and
# `snakemake` on PATH. For the H100 run in docs/benchmarks-history.md, whose image had
# JAX, flax and optax but not snakemake, blackjax or datasets, the wheels of
# those and of their missing dependencies at constraints.txt's versions were
# fetched with `pip download --no-deps --only-binary=:all: --python-version
# 3.12 ...`, installed with `pip install --no-deps --target /tmp/site`, and
# PYTHONPATH=/tmp/site:$PWD/src PATH=/tmp/site/bin:$PATH were set.
set -uo pipefail
data=$1
out=$2
budget=${3:-560}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
t0=$SECONDS
left() { echo $((budget - (SECONDS - t0))); }
until_left() { local n=$(($(left) - $1)); echo $((n < 10 ? 10 : n)); } # seconds until $1 are left
step() { echo "== $* ($(left) s left)"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c 'import sys, jax, flax, optax, blackjax, snakemake; print(sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "blackjax", blackjax.__version__, "snakemake", snakemake.__version__, jax.devices())'

if [[ ${GPU_PLAN:-} == reference ]]; then
    step "matrix-product rate"
    python3 -c 'import json; from bnn_sgmcmc.bench import speed; print(json.dumps(speed.measure_matmul(8192)))' |
        tee "$out/matmul.json"
    step "matmul precision: seconds per full-data gradient and log-density error"
    timeout -k 5 150 python3 -m bnn_sgmcmc.bench.precision --source "$data" --out "$out" --chains 8
    # The precision, and the sampling steps that fit in what is left (150 s kept for the samplers, compiles
    # and reports) at the probe's seconds per gradient: a shorter reference rather than none.
    # A second call on the same machine resumes with the first call's choice (.gpu-work/reference/plan).
    mkdir -p .gpu-work/reference
    [[ -s .gpu-work/reference/plan ]] || python3 - "$out" "$(left)" >.gpu-work/reference/plan <<'PY'
import glob, json, sys, yaml
ref = yaml.safe_load(open("examples/reference.yaml"))["reference"]
files = sorted(glob.glob(sys.argv[1] + "/precision-*.json"))
rows = json.load(open(files[-1]))["rows"] if files else []
fine = [r for r in rows if "error" not in r and r["matmul_precision"] != "default" and r["rms_error_of_change_t0.07"] < 0.05]
best = min(fine, key=lambda r: r["seconds_per_gradient"]) if fine else None
warmup, steps, every = ref["warmup_steps"], ref["sampling_steps"], ref["eval_every"]
if best:
    # HMC steps that fit; warmup keeps its length while at least four times as many sampling steps fit, and
    # shrinks to a fifth of them (at least 20) when not.
    fit = int((float(sys.argv[2]) - 150) / ((ref["num_integration_steps"] + 1) * best["seconds_per_gradient"]))
    warmup = min(warmup, max(20, fit // 5))
    steps = max(every, min(steps, (fit - warmup) // every * every))
print(best["matmul_precision"] if best else "float32", warmup, steps)
PY
    read -r precision warmup steps <.gpu-work/reference/plan
    step "reference posterior, 8 chains, matmul_precision $precision, $warmup warmup and $steps sampling steps"
    ZOO_CONFIG="config.yaml examples/reference.yaml" ZOO_WORK=.gpu-work/reference \
        timeout -k 10 "$(until_left 10)" benchmarks/sampler_zoo.sh "$data" "$out/reference" \
        --config "sampling={chains: 8}" "reference={matmul_precision: $precision, warmup_steps: $warmup, sampling_steps: $steps}"
    echo "reference: exit $?"
    # A run the budget cut short still brings back its logs and whatever tables it finished.
    mkdir -p "$out/reference"
    for part in logs tables figures; do
        [[ -d .gpu-work/reference/results/$part ]] && cp -r ".gpu-work/reference/results/$part" "$out/reference/"
    done
    step done
    exit 0
fi

step smoke
timeout -k 5 90 python3 -m bnn_sgmcmc.bench --scale 0.01 --samplers sgld,sghmc --repeats 1 --chains 1 --no-baseline \
    --matmul-size 1024 --out /tmp/smoke || { echo "smoke run failed: stopping"; exit 1; }

step "function-space diagnostics: sampling overhead at 8 chains, report memory at 8 x 1,000 x 10,000"
timeout -k 5 150 python3 -m bnn_sgmcmc.bench.function_space --source "$data" --sampling-chains 8 --out "$out"

step "evaluation sets: one matrix shape against one per set, 1 and 8 chains"
timeout -k 5 40 python3 -m bnn_sgmcmc.bench.evaluation --out "$out"

step "benchmark sgld"
timeout -k 5 "$(until_left 280)" python3 -m bnn_sgmcmc.bench --source "$data" --samplers sgld \
    --chains 1,2,4,8,16,32,64 --repeats 3 --out "$out"

step "end to end"
timeout -k 5 "$(until_left 200)" benchmarks/end_to_end.sh "$data" /tmp/e2e
tar czf "$out/end_to_end.tgz" -C /tmp e2e

# The autotuning policy: the same workflow with cuBLAS's matrix products only (sampling.gpu_autotuning),
# cold and warm: compile saved against slower steps.
step "end to end, gpu_autotuning: cublas"
timeout -k 5 "$(until_left 110)" benchmarks/end_to_end.sh "$data" /tmp/e2e-cublas --config "sampling={gpu_autotuning: cublas}"
tar czf "$out/end_to_end-cublas.tgz" -C /tmp e2e-cublas

step "benchmark sghmc"
timeout -k 5 "$(until_left 5)" python3 -m bnn_sgmcmc.bench --source "$data" --samplers sghmc \
    --chains 1,2,8,16 --repeats 3 --out "$out"
step done
