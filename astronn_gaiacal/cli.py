"""The ``astronn-gaiacal`` command line.

Each subcommand is a function ``cmd_<name>(args)`` plus an ``add_<name>``
parser builder registered in :data:`SUBCOMMANDS`.  TensorFlow is imported only
inside the commands, so ``--help`` and ``--version`` are instant.

Exit codes: 0 success, 2 bad input (one-line reason on stderr).
"""
import argparse
import sys

from ._versions import __version__


class UsageError(Exception):
    """Bad input: reported in one line, exit code 2."""


def add_versions(sub):
    p = sub.add_parser("versions", help="print installed and supported dependency versions")
    p.set_defaults(func=cmd_versions)


def cmd_versions(args):
    from . import show_versions

    show_versions()
    return 0


#: subcommand builders, in --help order
SUBCOMMANDS = [add_versions]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="astronn-gaiacal",
        description=(
            "Calibrate spectro-photometric distances and the Gaia parallax zero-point "
            "together with astroNN (Leung & Bovy 2019)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"astronn-gaiacal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None):
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
