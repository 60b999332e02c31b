"""The ``aggregame`` command line (the application layer: it may use every package).

Exit status (docs/cli.md):

* 0: an equilibrium was found and certified, or the command succeeded;
* 1: no equilibrium (the reason is printed), or methods that do not all certify;
* 2: bad input or environment: a scenario, a flag, a file or folder, a network
  address, a full disk (one line on stderr);
* 3: an internal error, i.e. a bug (one line; the traceback with ``--debug``);
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import traceback
from typing import Sequence

from aggregame.errors import AggregameError


class ExitCode(enum.IntEnum):
    """The documented exit statuses of ``aggregame``."""

    OK = 0
    NO_EQUILIBRIUM = 1
    BAD_INPUT = 2
    INTERNAL_ERROR = 3
    INTERRUPTED = 130


#: The handler ``main`` puts on the package's logger (replaced on every call, so
#: in-process callers such as tests do not pile handlers up).
_HANDLER: logging.Handler | None = None


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log records of every aggregame module to stderr: warnings by default, info
    with -v, debug with -vv, errors only with -q."""
    global _HANDLER
    logger = logging.getLogger("aggregame")
    if _HANDLER is not None:
        logger.removeHandler(_HANDLER)
    _HANDLER = logging.StreamHandler(sys.stderr)
    _HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(_HANDLER)
    if quiet:
        level = logging.ERROR
    else:
        level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logger.setLevel(level)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_message(err: OSError) -> str:
    """'<file>: No space left on device' rather than '[Errno 28] ...'."""
    what = err.strerror or str(err)
    if err.filename is not None:
        return f"{err.filename}: {what}"
    return what


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aggregame`` command; returns its exit status (never raises)."""
    from aggregame.cli.commands import COMMANDS
    from aggregame.cli.parser import build_parser

    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        debug = args.debug
        configure_logging(args.verbose, args.quiet)
        if args.command is None:
            parser.print_help()
            return ExitCode.OK
        return int(COMMANDS[args.command](args))
    except AggregameError as err:
        print(f"aggregame: error: {_one_line(err)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as err:  # BrokenPipeError is one: handled apart
        if isinstance(err, BrokenPipeError):
            # Output piped into `head` and closed: not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return ExitCode.OK
        print(f"aggregame: error: {_one_line(_os_message(err))}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("aggregame: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as err:  # a bug: say so in one line, the details on request
        if debug:
            traceback.print_exc()
        print(f"aggregame: internal error: {type(err).__name__}: {_one_line(err)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
