"""Job logging: one line for user errors, the whole traceback for bugs (bnn_sgmcmc.logs)."""

from __future__ import annotations

import logging
import os
import signal

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


@pytest.mark.parametrize("error, first_line", [
    (PermissionError(13, "Permission denied", "/r/results/checkpoints/sgld/shard0/warmup.h5"),
     "ERROR: cannot write /r/results/checkpoints/sgld/shard0/warmup.h5: Permission denied; give your user write "
     "access to /r/results/checkpoints/sgld/shard0 (ls -ld /r/results/checkpoints/sgld/shard0) or run in a folder "
     "you own, then rerun."),
    # h5py's own wording, with the C library's errno and the path inside.
    (OSError("Unable to create file (unable to open file: name = '/r/results/report/a.h5', errno = 30, "
             "error message = 'Read-only file system', flags = 13, o_flags = 242)"),
     "ERROR: cannot write /r/results/report/a.h5: Read-only file system; that file system is read-only: run the "
     "workflow in a writable folder."),
    (OSError(28, "No space left on device", "/r/results/sampling/x.h5"),
     "ERROR: cannot write /r/results/sampling/x.h5: No space left on device; the disk is full: free space on it "
     "(df -h /r/results/sampling), then rerun."),
], ids=["permission", "read-only (h5py)", "disk full"])
def test_a_refused_write_is_one_line_naming_the_path_and_the_fix(tmp_path, capsys, error, first_line):
    path = tmp_path / "job.log"
    with pytest.raises(SystemExit) as exit_info, logs.to_file(path):
        raise error
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == first_line
    assert "Traceback" not in path.read_text()


def test_another_os_error_is_a_bug_with_its_traceback(tmp_path):
    with pytest.raises(FileNotFoundError), logs.to_file(tmp_path / "job.log"):
        open(tmp_path / "missing")
    assert "Traceback" in (tmp_path / "job.log").read_text()


def test_ctrl_c_is_one_line_and_says_how_to_resume(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info, logs.to_file(tmp_path / "job.log"):
        raise KeyboardInterrupt
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "Interrupted: rerun the same command to resume from the last checkpoint."


def test_a_ctrl_c_that_python_swallowed_stops_the_job_at_the_next_chunk(tmp_path, capsys):
    """A real SIGINT whose KeyboardInterrupt is raised inside __del__, where Python prints "Exception ignored"
    and carries on (as it did inside a garbage-collector callback of a sampling job): the job notes it and
    stops at the next chunk with its one line and no traceback; out of a job, SIGINT is Python's again."""

    class Victim:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # Python runs the handler here, inside __del__
                pass

    path = tmp_path / "job.log"
    # SIGINT at Python's default, as in a job started from a terminal (pytest may run with it ignored, as a
    # background job of a non-interactive shell does; a job keeps it ignored then).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as exit_info, logs.to_file(path):
            logs.stop_if_interrupted()  # nothing yet
            Victim()  # collected at once: the interrupt is raised in __del__ and swallowed
            swallowed = True
            logs.stop_if_interrupted()  # the chunk's end
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert swallowed and exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "Interrupted: rerun the same command to resume from the last checkpoint."
    text = path.read_text()
    assert "Ctrl-C came inside a callback that cannot raise" in text and "Traceback" not in text
    logs.stop_if_interrupted()  # the job is over: nothing raised


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
