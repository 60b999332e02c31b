"""The ``aggregame`` command line (the application layer: it may use every package).

Exit status (docs/cli.md):

* 0: an equilibrium was found and certified, or the command succeeded;
* 1: no equilibrium (the reason is printed), methods that do not all certify, or a
  solver that failed on valid input (one line naming the solver);
* 2: bad input or environment: a scenario, a flag, a file or folder, a network
  address, a full disk (one line on stderr);
* 3: an internal error, i.e. a bug (one line; the traceback with ``--debug``);
* 130: interrupted (Ctrl-C).

With ``--json`` a failure is one JSON object on stdout instead,
``{"schema_version", "command", "error": {"kind", "message", "file", "field"}}``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
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
    """``text`` on one line, its non-printable characters escaped (a message may
    quote a file's name or a flag's value: nothing raw reaches the terminal)."""
    from aggregame.checks import printable

    return printable(" ".join(str(text).split()))


def _os_message(err: OSError) -> str:
    """'<file>: No space left on device' rather than '[Errno 28] ...'."""
    what = err.strerror or str(err)
    if err.filename is not None:
        return f"{err.filename}: {what}"
    return what


@dataclass(frozen=True)
class Failure:
    """How a command ended without its result: the exit status, one word for the
    kind of problem, the message, and the file and field it is about."""

    code: ExitCode
    kind: str
    message: str
    file: str | None = None
    field: str | None = None

    @classmethod
    def of(cls, err: BaseException, debug: bool) -> "Failure":
        if isinstance(err, AggregameError):
            code = ExitCode.NO_EQUILIBRIUM if err.solver_failure else \
                ExitCode.BAD_INPUT
            return cls(code, err.kind, _one_line(err), err.file, err.field)
        if isinstance(err, OSError):
            return cls(ExitCode.BAD_INPUT, "environment",
                       _one_line(_os_message(err)),
                       None if err.filename is None else str(err.filename))
        if isinstance(err, KeyboardInterrupt):
            return cls(ExitCode.INTERRUPTED, "interrupted", "interrupted")
        if debug:
            traceback.print_exc()
        return cls(ExitCode.INTERNAL_ERROR, "internal",
                   f"{type(err).__name__}: {_one_line(err)} (rerun with --debug for "
                   f"the traceback)")

    def report(self, as_json: bool, command: str | None) -> int:
        """Print the failure (one line on stderr, or one JSON object on stdout)
        and return its exit status."""
        if as_json:
            from aggregame.cli.commands import JSON_SCHEMA_VERSION

            print(json.dumps({"schema_version": JSON_SCHEMA_VERSION,
                              "command": command,
                              "error": {"kind": self.kind, "message": self.message,
                                        "file": self.file, "field": self.field}},
                             indent=1))
        elif self.code is ExitCode.INTERRUPTED:
            print("aggregame: interrupted", file=sys.stderr)
        else:
            label = {ExitCode.NO_EQUILIBRIUM: "solver failure",
                     ExitCode.INTERNAL_ERROR: "internal error"}.get(self.code, "error")
            print(f"aggregame: {label}: {self.message}", file=sys.stderr)
        return int(self.code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aggregame`` command; returns its exit status (never raises)."""
    from aggregame.cli.commands import COMMANDS
    from aggregame.cli.parser import build_parser

    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    debug, as_json = "--debug" in given, "--json" in given
    command = next((a for a in given if a in COMMANDS), None)
    try:
        try:
            args = parser.parse_args(given)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        debug, as_json, command = args.debug, args.json, args.command
        configure_logging(args.verbose, args.quiet)
        if args.command is None:
            parser.print_help()
            return ExitCode.OK
        return int(COMMANDS[args.command](args))
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error.
        _quiet_stdout()
        return ExitCode.OK
    except (Exception, KeyboardInterrupt) as err:  # a bug is reported, not raised
        failure = Failure.of(err, debug)
        try:
            return failure.report(as_json, command)
        except BrokenPipeError:
            _quiet_stdout()
            return int(failure.code)


def _quiet_stdout() -> None:
    """Send what is left of stdout to /dev/null (its reader has gone)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
