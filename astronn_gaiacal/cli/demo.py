"""``astronn-gaiacal demo``: the whole method on a built-in mock survey (no network, no data)."""
import os
import sys

from ._common import (UsageError, add_jobs_argument, astronn_chatter_to_stderr, check_output, checked_jobs,
                      interrupt_on_sigterm, print_json)

NAME = "demo"
HELP = ("simulate a mock APOGEE x Gaia survey with an injected zero-point, train the no-offset, constant and "
        "multivariate models, and report (JSON, text, FITS catalogue, PNG plots)")


def add_arguments(parser):
    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    parser.add_argument("--full", action="store_true",
                        help="the paper's scale: 35,112 training / 33,468 test stars, 40 epochs (hours on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mock survey and training")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder of the demo")
    add_jobs_argument(parser)
    sizes = parser.add_argument_group("sizes (override the defaults of the default or --full demo)")
    for name, kind, text in (
        ("n-train", int, "training stars (S/N > 200)"),
        ("n-test", int, "test stars (S/N < 200)"),
        ("epochs", int, "training epochs (the default demo's no-offset model gets half as many)"),
        ("ensemble", int, "members of the constant model's deep ensemble"),
        ("mc-num", int, "MC-dropout passes at inference"),
    ):
        sizes.add_argument(f"--{name}", type=kind, default=None, help=text)


def _relocated(obj, tmp, final):
    """``obj`` (the report) with the temporary folder's path replaced by the final one."""
    if isinstance(obj, dict):
        return {k: _relocated(v, tmp, final) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relocated(v, tmp, final) for v in obj]
    return obj.replace(tmp, final) if isinstance(obj, str) else obj


def run(args):
    interrupt_on_sigterm()
    from ..studies.demo import run_demo

    config = {k: getattr(args, k) for k in ("n_train", "n_test", "epochs", "ensemble", "mc_num")
              if getattr(args, k) is not None}
    if config.get("mc_num") == 1:
        raise UsageError("--mc-num 1 has no MC-dropout spread for the uncertainties: use 2 or more "
                         "(default 30, 100 with --full)")
    n_jobs = checked_jobs(args)
    replace = check_output(args.out, args.overwrite, what="output folder")
    from ..io.atomic import atomic_directory

    final = os.path.abspath(args.out)
    # everything is written into a temporary sibling folder that becomes --out only when the demo is done:
    # an interrupted demo leaves nothing behind (a killed one: removed at the next start)
    with atomic_directory(final, overwrite=replace) as tmp, astronn_chatter_to_stderr():
        report = run_demo(tmp, full=args.full, seed=args.seed, progress=True, config=config, n_jobs=n_jobs,
                          final_out=final,
                          log=lambda line: print(f"[demo] {line}", file=sys.stderr, flush=True))
    report = _relocated(report, os.path.abspath(tmp), final)
    text = report.pop("text")
    if args.json:
        print_json(report)
    else:
        print(text)
    return 0
