"""Snakemake for the Slurm test: the executor polls every ``seconds-between-status-checks`` seconds.

snakemake-executor-plugin-slurm (2.8.0, ``Executor.check_active_jobs``) waits
10 s longer after each status check that finds no job finished, up to 180 s,
and goes back to ``init_seconds_before_status_checks`` after one that does.
That suits cluster jobs of minutes. The test's jobs take about 10 s, so each
batch was seen finished 33 s after submission (checks at 1, 12 and 33 s), and
the one-node cluster stood idle for a third of the test. Here the wait stays
at the profile's ``seconds-between-status-checks``; everything else, the job
submission and the job steps included, is the plugin's own.

Run as ``python tests/slurm_snakemake.py ARGS``, with ARGS as for snakemake.
"""

import sys

from snakemake_executor_plugin_slurm import Executor


def _polling_interval(self) -> float:
    return self.workflow.remote_execution_settings.seconds_between_status_checks


Executor.next_seconds_between_status_checks = property(_polling_interval, lambda self, value: None)

if __name__ == "__main__":
    from snakemake.cli import main

    sys.exit(main())
