"""The ``snakemake`` command line that started this process, read with Snakemake's own parser.

What the Snakefile checks before Snakemake acts on the line: the file that
``--report`` writes (:func:`report_destination`), which Snakemake would only
find it cannot write after building the DAG, or after the whole run. The
Snakefile imports this module, in whatever environment Snakemake itself runs
in: it imports the standard library, and ``snakemake.cli`` where it needs it.
"""

from __future__ import annotations

import os
from pathlib import Path


def report_destination(argv: list[str]) -> Path | None:
    """The file a ``snakemake`` command line (``sys.argv``) has ``--report`` (or the HTML reporter's
    ``--report-html-path``) write; None for a command that writes no report, or that is not Snakemake's.

    Snakemake writes it after building the DAG (with ``--report-after-run``, after the whole run) and meets a
    destination it cannot write with its own traceback, so the Snakefile checks it first. The line is read
    with Snakemake's own parser, abbreviations and ``--report`` without a value included."""
    program = Path(argv[0]) if argv else Path()
    if program.name != "snakemake" and program.parent.name != "snakemake":  # the script, or python -m snakemake
        return None
    # Every option Snakemake would take for these starts so ("--rep" is ambiguous): the parser only then.
    if not any(arg.startswith("--repo") for arg in argv[1:]):
        return None
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(argv[1:])
    except SystemExit:  # a line Snakemake itself refused: not this check's to report
        return None
    # The plugin's option is dataclasses.MISSING where it is not given.
    found = args.report or getattr(args, "report_html_path", None)
    return Path(found) if isinstance(found, (str, os.PathLike)) and str(found) else None
