"""Summarise benchmarks/end_to_end.sh: where the end-to-end time goes, per run (cold, warm).

Reads OUT_DIR/runs.tsv (wall clock of the workflow and the report), each run's
snakemake log (rule start and finish stamps, 1 s resolution) and the jobs' logs:
every job's start-up (process start to its own code: Python, Snakemake's
script preamble, imports) and process lifetime, and per sampling program its
set-up (data read and on the device), compile and sampling seconds. Writes
OUT_DIR/end_to_end.tsv and prints it.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
STARTUP = re.compile(r"start-up: ([\d.]+) s from process start")
DONE = re.compile(r"job done: ([\d.]+) s since process start")
SETUP = re.compile(r"on the device in ([\d.]+) s")
WROTE = re.compile(r"wrote results/sampling/(\w+)/shard\d+/(warmup|predictive)\.h5: \d+ \w+ in ([\d.]+) s \(\+([\d.]+) s compile\)")


def rule_seconds(log: Path) -> dict[str, float]:
    """Seconds per rule (summed over its jobs) from a snakemake log's start and finish stamps."""
    started, rule_of, total = {}, {}, defaultdict(float)
    stamp = None
    lines = log.read_text().splitlines()
    for i, line in enumerate(lines):
        if m := STAMP.match(line.strip()):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(?:local)?(?:checkpoint|rule) (\w+):$", line.strip()):
            job = next(re.search(r"jobid: (\d+)", l).group(1) for l in lines[i:i + 12] if "jobid:" in l)
            started[job], rule_of[job] = stamp, m.group(1)
        elif m := re.match(r"^Finished jobid: (\d+)", line.strip()):
            job = m.group(1)
            if job in started:
                total[rule_of[job]] += (stamp - started[job]).total_seconds()
    return dict(total)


def main(out: Path) -> None:
    rows = []
    for line in (out / "runs.tsv").read_text().splitlines():
        run, start, middle, end = line.split("\t")
        rows.append((run, "workflow", float(middle) - float(start)))
        rows.append((run, "html report", float(end) - float(middle)))
        for rule, seconds in sorted(rule_seconds(out / f"{run}-snakemake.log").items()):
            rows.append((run, f"rule {rule} (all jobs)", seconds))
        logs = out / f"{run}-logs"
        startup, lifetime, programs = defaultdict(float), defaultdict(float), []
        for log in sorted(logs.rglob("*.log")):
            parts, text = log.relative_to(logs).parts, log.read_text()
            rule = parts[1].removesuffix(".log") if parts[0] == "report" else parts[0]  # report/<rule>[/<sampler>]
            # A resumed job's log holds each attempt: count the last one.
            startup[rule] += float(STARTUP.findall(text)[-1]) if STARTUP.search(text) else 0.0
            lifetime[rule] += float(DONE.findall(text)[-1]) if DONE.search(text) else 0.0
            if (m := SETUP.findall(text)) and WROTE.search(text):  # a sampling job: warmup/<sampler>/shardN.log
                programs.append((run, f"{parts[1]} {rule}: data to the device", float(m[-1])))
            for m in WROTE.finditer(text):
                sampler, kind, seconds, compile_seconds = m.groups()
                phase = "warmup" if kind == "warmup" else "sampling"
                programs.append((run, f"{sampler} {phase}: running", float(seconds)))
                programs.append((run, f"{sampler} {phase}: compile", float(compile_seconds)))
        for rule in sorted(startup):
            rows.append((run, f"{rule} jobs: start-up", startup[rule]))
            rows.append((run, f"{rule} jobs: process lifetime", lifetime[rule]))
        rows += programs
    text = "run\titem\tseconds\n" + "".join(f"{r}\t{i}\t{s:.2f}\n" for r, i, s in rows)
    (out / "end_to_end.tsv").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
