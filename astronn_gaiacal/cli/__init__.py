"""The ``astronn-gaiacal`` command line.

Each subcommand is one module in this package defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.  Modules are discovered
automatically and listed in ``--help`` in alphabetical order.  TensorFlow is
imported only inside ``run``, so parsing is cheap.

Exit codes: 0 success, 2 bad input (one-line reason on stderr, no partial
output files left behind).
"""
import argparse
import importlib
import pkgutil
import sys

from .._versions import __version__
from ._common import UsageError

__all__ = ["main", "build_parser", "UsageError"]


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
    )
    parser.add_argument("--version", action="version", version=f"astronn-gaiacal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
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
        Exit code: 0 on success, 2 on bad input (reason printed to stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"astronn-gaiacal {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
