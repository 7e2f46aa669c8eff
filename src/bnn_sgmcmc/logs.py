"""Logging for workflow jobs: everything into the rule's log, warnings and the one-line error on the console too."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bnn_sgmcmc.errors import USER_ERRORS


def process_seconds() -> float | None:
    """Seconds since this process started, from Linux's /proc (10 ms resolution); None where there is none.

    What a job spends before its own code runs (Python, Snakemake's script
    preamble, imports) is invisible from inside it otherwise.
    """
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 22 of /proc/self/stat, counted after the command name, which may hold spaces.
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def to_file(path: str | Path, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send logging and stderr to ``path`` for the duration of a job.

    A user error (bad data, bad config, a diverging chain) is logged as one
    line, also printed to the console (the real stderr, which Snakemake shows),
    and ends the job with exit status 1; any other exception is logged with its
    traceback and raised again. The log says how long the process ran before
    the job's code started (start-up: Python, imports) and when it finished.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    console = sys.stderr
    with open(path, "a", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(level)
        # Warnings (a checkpoint not used, a set that says nothing) go to the console too; errors are printed below.
        shown = logging.StreamHandler(console)
        shown.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        shown.addFilter(lambda record: record.levelno == logging.WARNING)
        ours = logging.getLogger("bnn_sgmcmc")
        ours.addHandler(shown)
        logging.getLogger("jax").setLevel(logging.WARNING)  # backend probing is noise here
        sys.stderr = fh
        started = process_seconds()
        if started is not None:
            logging.getLogger("bnn_sgmcmc").info("start-up: %.2f s from process start to the job's code", started)
        try:
            yield logging.getLogger("bnn_sgmcmc")
            if started is not None:
                logging.getLogger("bnn_sgmcmc").info("job done: %.2f s since process start", process_seconds())
        except USER_ERRORS as err:
            logging.getLogger("bnn_sgmcmc").error("%s", err)
            print(f"ERROR: {err}", file=console)
            raise SystemExit(1) from None
        except Exception:
            # A bug, not bad input: keep the whole traceback in the rule's log too.
            logging.getLogger("bnn_sgmcmc").exception("job failed")
            raise
        finally:
            sys.stderr = console
            root.removeHandler(handler)
            ours.removeHandler(shown)
