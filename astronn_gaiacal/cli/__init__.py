"""The ``astronn-gaiacal`` command line.

Each subcommand is one module in this package defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.  Modules are discovered
automatically and listed in ``--help`` in alphabetical order.  A ``run``
parses and validates its arguments, calls the library
(:mod:`astronn_gaiacal.pipeline` and friends, imported inside ``run``) and
prints the result.

Start-up is instant: ``import astronn_gaiacal``, the subcommand modules and
building the parser import neither TensorFlow nor astroNN (the library is
imported inside ``run``), so ``--help``, ``--version`` and ``versions`` answer
in well under a second (tests/test_startup.py).  Unless ``--verbose`` is given,
TensorFlow's start-up lines, log messages and third-party Python warnings are
silenced (``astronn_gaiacal._compat.quiet_tensorflow``), in worker
processes too.

Exit codes (:data:`EXIT_CODES`): 0 success; 2 bad input (:class:`UsageError`:
one-line reason on stderr, no partial output files left behind); 3 the Gaia
archive or the Dask cluster is unavailable (:class:`ServiceUnavailable`); 1 an
internal error, with its traceback on stderr; 130 (Ctrl-C) or 143 (SIGTERM)
interrupted, its partial files removed.
"""
import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from .._compat import quiet_tensorflow
from .._versions import __version__
from ._common import (EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_UNAVAILABLE,
                      ServiceUnavailable, UsageError, check_common_options, interrupted_exit_code)

__all__ = ["main", "build_parser", "UsageError", "ServiceUnavailable", "EXIT_CODES"]

#: Exit code -> meaning, as ``--help`` lists them.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_BAD_INPUT: "bad input: an argument or input file is wrong (one-line reason on stderr)",
    EXIT_UNAVAILABLE: "the Gaia archive or the Dask cluster is unavailable (or partitions failed on it); retry later",
    EXIT_INTERNAL_ERROR: "internal error (traceback on stderr): please report it",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); the command's partial files were removed",
    EXIT_TERMINATED: "terminated (SIGTERM); the command's partial files were removed",
}


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{__name__}.{info.name}")


def build_parser():
    """The ``astronn-gaiacal`` argument parser, one subparser per command module.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="astronn-gaiacal",
        description=(
            "Calibrate spectro-photometric distances and the Gaia parallax zero-point "
            "together with astroNN (Leung & Bovy 2019)."
        ),
        epilog="exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"astronn-gaiacal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's log lines and third-party warnings (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show TensorFlow's log lines and third-party warnings")
        p.set_defaults(func=mod.run)
    return parser


def main(argv=None):
    """Run the command line; the ``astronn-gaiacal`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code (:data:`EXIT_CODES`): 0 success, 2 bad input, 3 archive or
        cluster unavailable (a one-line reason on stderr for both), 1 internal
        error (its traceback on stderr), 130 / 143 interrupted by Ctrl-C / SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_tensorflow()
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_OK
    try:
        check_common_options(args)
        return int(args.func(args) or EXIT_OK)
    except UsageError as err:  # one line, whatever a library's message holds
        print(f"astronn-gaiacal {args.command}: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServiceUnavailable as err:
        print(f"astronn-gaiacal {args.command}: error: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt as err:  # the command's context managers have removed its partial files by now
        print(f"astronn-gaiacal {args.command}: interrupted", file=sys.stderr)
        return interrupted_exit_code(err)
    except BrokenPipeError:  # output piped into e.g. `head`, which has closed it: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the interpreter's final flush must not fail)
        return EXIT_OK
    except Exception:
        traceback.print_exc()
        print(f"astronn-gaiacal {args.command}: internal error (traceback above)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
