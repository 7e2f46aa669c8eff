#!/usr/bin/env bash
# The sampler zoo (examples/sampler-zoo.yaml) on real data, one sampling job
# at a time so that each job's seconds are its own, then the HTML report.
#
#   benchmarks/sampler_zoo.sh DATA_SOURCE OUT_DIR [snakemake arguments...]
#
# DATA_SOURCE is any data.source form (an IDX or parquet folder, mnist, or
# synthetic). Extra arguments go to every snakemake call, e.g. on a CPU:
#   --config sampling='{chains: 2, sampling_steps: 2000, thinning: 2}'
# ZOO_CONFIG="a.yaml b.yaml" replaces the config files (default: config.yaml
# examples/sampler-zoo.yaml and every other kernel at its module's settings,
# from `python -m bnn_sgmcmc.kernels zoo`), paths from the repository root.
# OUT_DIR gets the snakemake log, the tables, figures and job logs, and the
# HTML report; the sampling files are left out. ZOO_WORK=dir runs the workflow
# there instead of in OUT_DIR/work, and keeps it: a second call resumes a run
# that was cut short from its checkpoints (benchmarks/gpu.sh's reference plan).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source=$1
out=$(realpath -m "$2")
shift 2
[[ -e $source ]] && source=$(realpath "$source")
mkdir -p "$out"
work=$(realpath -m "${ZOO_WORK:-$out/work}")
mkdir -p "$work"
printf 'data: {source: %s}\n' "$source" >"$work/data.yaml"
cd "$here" # so that Snakemake finds profiles/default
configs=()
for file in ${ZOO_CONFIG:-config.yaml examples/sampler-zoo.yaml}; do configs+=("$here/$file"); done
if [[ -z ${ZOO_CONFIG:-} ]]; then
    PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m bnn_sgmcmc.kernels zoo >"$work/zoo-kernels.yaml"
    configs+=("$work/zoo-kernels.yaml")
fi
args=(-s "$here/Snakefile" --directory "$work" --resources gpu=1 "$@" --configfile "${configs[@]}" "$work/data.yaml")
start=$SECONDS
snakemake --cores all "${args[@]}" >"$out/snakemake.log" 2>&1 || { tail -n 60 "$out/snakemake.log"; exit 1; }
echo "workflow: $((SECONDS - start)) s"
snakemake "${args[@]}" --report "$out/report.html" >>"$out/snakemake.log" 2>&1 || { tail -n 40 "$out/snakemake.log"; exit 1; }
results=$work/results
cp -r "$results"/{tables,figures,logs} "$out/"
[[ -n ${ZOO_WORK:-} ]] || rm -rf "$work"
