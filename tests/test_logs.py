"""Job logging: one line for user errors, the whole traceback for bugs (bnn_sgmcmc.logs)."""

from __future__ import annotations

import logging

import pytest

from bnn_sgmcmc import logs
from bnn_sgmcmc.errors import DataError


def test_a_user_error_is_one_line_in_the_log_and_on_the_console(tmp_path, capsys):
    path = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as exit_info, logs.to_file(path):
        logging.getLogger("bnn_sgmcmc.test").info("starting")
        raise DataError("the file is damaged: download it again")
    assert exit_info.value.code == 1
    text = path.read_text()
    assert "starting" in text and "ERROR bnn_sgmcmc: the file is damaged: download it again" in text
    assert "Traceback" not in text
    assert capsys.readouterr().err.strip() == "ERROR: the file is damaged: download it again"


def test_a_warning_is_in_the_log_and_on_the_console_once(tmp_path, capsys):
    path = tmp_path / "job.log"
    with logs.to_file(path):
        logging.getLogger("bnn_sgmcmc.steps").warning("checkpoint x not used: damaged")
        logging.getLogger("bnn_sgmcmc.steps").info("only in the log")
        logging.getLogger("jax").warning("not ours")
    assert "WARNING bnn_sgmcmc.steps: checkpoint x not used: damaged" in path.read_text()
    assert capsys.readouterr().err.strip() == "WARNING: checkpoint x not used: damaged"
    logging.getLogger("bnn_sgmcmc.steps").warning("after the job")  # the console handler is gone again
    assert "after the job" not in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_in_the_log(tmp_path):
    path = tmp_path / "job.log"
    with pytest.raises(KeyError), logs.to_file(path):
        {}["missing"]
    text = path.read_text()
    assert "job failed" in text and "Traceback" in text and "KeyError: 'missing'" in text


def test_stderr_goes_to_the_log_and_comes_back(tmp_path):
    import sys

    before = sys.stderr
    path = tmp_path / "job.log"
    with logs.to_file(path):
        print("from a library", file=sys.stderr)
    assert sys.stderr is before
    assert "from a library" in path.read_text()


@pytest.mark.skipif(logs.process_seconds() is None, reason="no /proc here: start-up is not measured")
def test_the_log_says_how_long_the_process_ran_before_and_after_the_job(tmp_path):
    import re
    import subprocess
    import sys
    import time

    path = tmp_path / "job.log"
    before = logs.process_seconds()
    time.sleep(0.05)
    assert logs.process_seconds() - before >= 0.04
    with logs.to_file(path):
        time.sleep(0.05)
    text = path.read_text()
    start = float(re.search(r"start-up: ([\d.]+) s from process start", text).group(1))
    done = float(re.search(r"job done: ([\d.]+) s since process start", text).group(1))
    assert before <= start and done - start >= 0.04
    # A fresh process: its own age, not the machine's or the parent's.
    child = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(0.3); from bnn_sgmcmc import logs; print(logs.process_seconds())"],
        capture_output=True, text=True, check=True,
    )
    assert 0.3 <= float(child.stdout) < 5
