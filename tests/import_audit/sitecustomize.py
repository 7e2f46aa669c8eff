"""Records what the package imports in each workflow job, for tests/test_envs.py.

Active only where ``BNN_IMPORT_AUDIT`` names a folder and the process runs a
Snakemake rule script (``.snakemake/scripts/tmp*.<script>.py``). Every import
statement that runs in code of ``bnn_sgmcmc`` (at the top of a module or
inside a function, whichever ran) is noted by its top-level name, even where
the module was loaded before; what the libraries import in turn is their own
dependencies' business. At exit the job writes
``<pid>.json``: the script's name and those modules.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

_FOLDER = os.environ.get("BNN_IMPORT_AUDIT")
_SCRIPT = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
_PACKAGE = f"{os.sep}bnn_sgmcmc{os.sep}"


class _Recorder:
    """Wraps ``__import__``: notes the top-level name of every import statement that runs in the package's
    code, whether or not the module was already loaded, then imports as usual."""

    def __init__(self, original) -> None:
        self.original = original
        self.modules: set[str] = set()

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and _PACKAGE in sys._getframe(1).f_code.co_filename:
            self.modules.add(name.partition(".")[0])
        return self.original(name, globals, locals, fromlist, level)


def _write(recorder: _Recorder) -> None:
    script = _SCRIPT.split(".", 1)[1] if _SCRIPT.startswith("tmp") else _SCRIPT  # tmpab12cd.sample.py -> sample.py
    with open(os.path.join(_FOLDER, f"{os.getpid()}.json"), "w") as fh:
        json.dump({"script": script, "modules": sorted(recorder.modules)}, fh)


if _FOLDER and f"{os.sep}.snakemake{os.sep}scripts{os.sep}" in (sys.argv[0] if sys.argv else ""):
    import builtins

    _recorder = _Recorder(builtins.__import__)
    builtins.__import__ = _recorder
    atexit.register(_write, _recorder)
