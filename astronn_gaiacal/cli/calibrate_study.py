"""``astronn-gaiacal calibrate-study``: pull distribution of the zero-point uncertainty over K mock surveys."""
import os
import sys

import numpy as np

from ..constants import PAPER_ZEROPOINT_UAS
from ..studies.configs import CONFIGS
from ._common import (OUTLIER_FLAGS, UsageError, add_jobs_argument, astronn_chatter_to_stderr, checked_jobs,
                      outliers_from_args, print_json)

NAME = "calibrate-study"
HELP = ("repeat simulate -> train (deep ensemble, constant offset) -> zeropoint over K seeds and report the pulls "
        "(recovered - injected)/sigma of each uncertainty estimate (MC dropout, ensemble)")


def add_arguments(parser):
    parser.add_argument("--out", default="calibration_study", metavar="DIR",
                        help="output folder: calibration_study.ecsv, summary.json, pulls.png, realisation_<i>.npz")
    demo = CONFIGS["default"]
    parser.add_argument("-k", type=int, default=10, help="number of realisations (default 10)")
    parser.add_argument("--n-train", type=int, default=demo["n_train"],
                        help=f"training stars per realisation (default {demo['n_train']}, the demo's size)")
    parser.add_argument("--epochs", type=int, default=demo["epochs"], help=f"epochs (default {demo['epochs']}, as the demo)")
    parser.add_argument("--ensemble", type=int, default=demo["ensemble"],
                        help=f"ensemble members (default {demo['ensemble']}, as the demo)")
    parser.add_argument("--mc-num", type=int, default=demo["mc_num"],
                        help=f"MC-dropout passes (default {demo['mc_num']}, as the demo)")
    parser.add_argument("--injected-uas", type=float, default=PAPER_ZEROPOINT_UAS,
                        help=f"injected constant zero-point in uas (default {PAPER_ZEROPOINT_UAS})")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--trend-kinds", metavar="KINDS", default=None,
                        help="instead of the constant study: the multivariate-method study (docs/calibration.rst, "
                             "'The multivariate method'), K surveys of each injected zero-point kind, comma-separated "
                             "from constant, g, bp_rp, teff, all; one model per method (--ensemble is not used); "
                             "writes trend_study.json and trend_study.txt into --out after every survey")
    parser.add_argument("--reanalyse", action="store_true",
                        help="no training: recompute the refit estimates of the study already in --out from its saved "
                             "realisation files (after the refits changed) and rewrite its table, summary and plot "
                             "(the first table is kept as calibration_study.original.ecsv)")
    parser.add_argument("--loss", default=None,
                        help="training loss of the constant study: gaia_gaussian_nll (the paper's, default), "
                             "gaia_student_t_nll (robust); the refits use its likelihood")
    odd = parser.add_argument_group("outliers in every mock survey of the constant study (off by default; "
                                    "docs/simulation.rst)")
    for flag, (default, metavar, text) in OUTLIER_FLAGS.items():
        odd.add_argument(flag, type=float, default=default, metavar=metavar, help=text)
    add_jobs_argument(parser)


def _text(summary):
    s = summary["settings"]
    lines = [f"calibration study: {s['k']} realisations, {s['n_train']} training stars, {s['epochs']} epochs, "
             f"{s['ensemble']}-member ensembles, injected {s['injected_uas']} uas",
             f"{'estimate':<22} {'|pull|<1':>9} {'|pull|<2':>9} {'mean pull':>10} {'rms pull':>9} {'median sigma':>13}"]
    for est, st in summary["pulls"].items():
        lines.append(f"{est:<22} {100 * st['frac_within_1']:8.0f}% {100 * st['frac_within_2']:8.0f}% "
                     f"{st['mean_pull']:+10.2f} {st['rms_pull']:9.2f} {st['median_sigma_uas']:10.2f} uas"
                     + ("  calibrated" if st["calibrated"] else ""))
    return "\n".join(lines)


def _reanalyse(args):
    from astropy.table import QTable

    from ..studies.calibration import StudyFileError, reanalyse_study, realisation_path

    path = os.path.join(args.out, "calibration_study.ecsv")
    if not os.path.isfile(path):
        raise UsageError(f"--reanalyse: {path!r} does not exist (run the study with --out {args.out} first)")
    try:
        table = QTable.read(path, format="ascii.ecsv")
    except (OSError, ValueError) as err:
        raise UsageError(f"--reanalyse: cannot read {path}: {err}") from None
    absent = [realisation_path(args.out, i) for i in range(len(table))
              if not os.path.isfile(realisation_path(args.out, i))]
    if absent:
        raise UsageError(f"--reanalyse: {absent[0]!r} is missing ({len(absent)} realisation file(s) absent)")
    try:
        table = reanalyse_study(table, args.out)
    except StudyFileError as err:
        raise UsageError(f"--reanalyse: {err}") from None
    first = os.path.join(args.out, "calibration_study.original.ecsv")
    if not os.path.exists(first):  # keep the study's table as it was first written
        os.replace(path, first)
    return table


def run(args):
    import astropy.units as u

    from ..studies.calibration import calibration_study

    if args.ensemble < 2:
        raise UsageError("--ensemble must be >= 2 (the spread between members is one of the estimates)")
    if args.mc_num < 2:
        raise UsageError("--mc-num 1 has no MC-dropout spread for the uncertainties: use 2 or more")
    n_jobs = checked_jobs(args)
    if args.trend_kinds is not None:
        return _trend_study(args, n_jobs)
    if args.reanalyse:
        return _write(args, _reanalyse(args))
    if args.loss is not None:
        from ..nn.losses import LOSS_CLASSES

        if args.loss not in LOSS_CLASSES:
            raise UsageError(f"unknown --loss {args.loss!r}; choose one of {', '.join(sorted(LOSS_CLASSES))}")
    with astronn_chatter_to_stderr():
        table = calibration_study(k=args.k, n_train=args.n_train, epochs=args.epochs, ensemble=args.ensemble,
                                  mc_num=args.mc_num, seed=args.seed, injected=args.injected_uas * u.uas, n_jobs=n_jobs,
                                  save_dir=args.out, outliers=outliers_from_args(args), loss=args.loss,
                                  log=lambda line: print(f"[calibrate-study] {line}", file=sys.stderr, flush=True))
    return _write(args, table)


def _trend_study(args, n_jobs):
    from ..studies.trend_study import TREND_KINDS, trend_study, trend_study_text

    kinds = [k.strip() for k in args.trend_kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in TREND_KINDS]
    if not kinds or unknown:
        raise UsageError(f"--trend-kinds: unknown kind(s) {unknown or args.trend_kinds!r}; choose from "
                         f"{', '.join(TREND_KINDS)}")
    with astronn_chatter_to_stderr():
        result = trend_study(kinds=kinds, k=args.k, n_train=args.n_train, epochs=args.epochs, mc_num=args.mc_num,
                             seed=args.seed, n_jobs=n_jobs, out=args.out,
                             log=lambda line: print(f"[calibrate-study] {line}", file=sys.stderr, flush=True))
    print_json(result["summary"]) if args.json else print(trend_study_text(result))
    return 0


def _write(args, table):
    from ..io.atomic import atomic_path
    from ..studies.calibration import plot_pulls, summarise_pulls

    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, "calibration_study.ecsv"), overwrite=True) as tmp:
        table.write(tmp, format="ascii.ecsv")
    plot_pulls(table, os.path.join(args.out, "pulls.png"))
    summary = {"settings": dict(table.meta), "pulls": summarise_pulls(table),
               "runs": [{c: np.asarray(getattr(r[c], "value", r[c]), dtype=float).tolist() for c in table.colnames}
                        for r in table]}
    with atomic_path(os.path.join(args.out, "summary.json"), overwrite=True) as tmp:
        with open(tmp, "w") as f:
            print_json(summary, file=f)
    print_json(summary) if args.json else print(_text(summary))
    return 0
