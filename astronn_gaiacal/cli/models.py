"""``astronn-gaiacal models``: list the registered model classes."""
from ._common import print_json

NAME = "models"
HELP = "list the registered model classes (names usable with `train --model`)"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from ..registry import registered

    rows = []
    for name, cls in registered("models").items():
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "name": name,
                "module": cls.__module__,
                "spectrum_length": getattr(cls, "spectrum_length", None),
                "default_offset": getattr(cls, "default_offset", None),
                "summary": doc[0] if doc else "",
            }
        )
    if args.json:
        print_json({"models": rows})
    else:
        for r in rows:
            length = r["spectrum_length"] if r["spectrum_length"] is not None else "any"
            print(f"{r['name']:<24} inputs={length:<6} offset={r['default_offset']:<13} {r['summary']}")
    return 0
