#!/usr/bin/env bash
# End-to-end time of the workflow: `snakemake --cores all` from a local data
# source to the finished figures and tables, then `snakemake --report`; first
# with an empty JAX compilation cache (cold), then in a fresh work directory
# with the cache the first run filled (warm).
#
#   benchmarks/end_to_end.sh DATA_SOURCE OUT_DIR [snakemake arguments...]
#
# DATA_SOURCE is any data.source form (an IDX or parquet folder, or synthetic).
# Extra arguments go to every snakemake call; E2E_CONFIG=file.yaml adds a
# config file after config.yaml (say a shorter protocol for a quick check).
# OUT_DIR gets each run's snakemake log, job logs and summary.tsv, and
# end_to_end.tsv (benchmarks/end_to_end.py): seconds per run, per rule, and
# compile and sampling seconds per program.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source=$1
out=$(realpath -m "$2")
shift 2
[[ -e $source ]] && source=$(realpath "$source")
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf 'data: {source: %s}\nsampling: {compilation_cache: %s}\n' "$source" "$scratch/jax-cache" >"$scratch/e2e.yaml"
cd "$here" # so that Snakemake finds profiles/default
for run in cold warm; do
    args=(-s "$here/Snakefile" --directory "$scratch/$run" --configfile "$here/config.yaml" ${E2E_CONFIG:+"$(realpath "$E2E_CONFIG")"} "$scratch/e2e.yaml" "$@")
    start=$EPOCHREALTIME
    snakemake "${args[@]}" --cores all >"$out/$run-snakemake.log" 2>&1 || { tail -n 40 "$out/$run-snakemake.log"; exit 1; }
    middle=$EPOCHREALTIME
    snakemake "${args[@]}" --report "$scratch/$run/results/report.html" >>"$out/$run-snakemake.log" 2>&1 ||
        { tail -n 40 "$out/$run-snakemake.log"; exit 1; }
    end=$EPOCHREALTIME
    printf '%s\t%s\t%s\t%s\n' "$run" "$start" "$middle" "$end" >>"$out/runs.tsv"
    rm -rf "$out/$run-logs"
    cp -r "$scratch/$run/results/logs" "$out/$run-logs"
    cp "$scratch/$run/results/tables/summary.tsv" "$out/$run-summary.tsv"
done
python3 "$here/benchmarks/end_to_end.py" "$out"
