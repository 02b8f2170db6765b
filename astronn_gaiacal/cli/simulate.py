"""``astronn-gaiacal simulate``: write a mock APOGEE x Gaia DR2 dataset."""
import os

import numpy as np

from ..constants import APOGEE_SPECTRUM_LENGTH, HDF5_EXTENSIONS, PAPER_ZEROPOINT_UAS
from ._common import OUTLIER_FLAGS, UsageError, check_output, interrupt_on_sigterm, outliers_from_args, print_json

NAME = "simulate"
HELP = ("write a mock APOGEE x Gaia DR2 survey (HDF5 dataset format) with an injected parallax zero-point; "
        "with --test-out, split it at S/N 200 into a training and a test set as in the paper")

ZEROPOINT_CHOICES = ("constant", "paper-g", "paper-bp-rp", "paper-teff", "paper-all")
_PAPER_FEATURES = {
    "paper-g": ("phot_g_mean_mag",),
    "paper-bp-rp": ("bp_rp",),
    "paper-teff": ("teff",),
    "paper-all": ("phot_g_mean_mag", "bp_rp", "teff"),
}


def add_arguments(parser):
    parser.add_argument("out", metavar="OUT", help="output .h5 file (the training set with --test-out)")
    parser.add_argument("-n", "--n-stars", type=int, default=5000,
                        help="number of stars (training stars with --test-out; default 5000)")
    parser.add_argument("--test-out", metavar="FILE", help="also write a test set (S/N < 200) to FILE")
    parser.add_argument("--n-test", type=int, default=None, help="test stars with --test-out (default: --n-stars)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--zeropoint", choices=ZEROPOINT_CHOICES, default="constant",
                        help="injected zero-point: constant (--zeropoint-uas) or the paper's quadratic trends "
                             "(eqs. 7-9) in G, BP-RP, Teff or their average (default constant)")
    parser.add_argument("--zeropoint-uas", type=float, default=None,
                        help="the constant zero-point in uas (default -52.3, the paper's value)")
    parser.add_argument("--dib", action="store_true", help="add the weak diffuse-interstellar-band feature")
    odd = parser.add_argument_group("outliers (off by default; docs/simulation.rst, column true_outlier)")
    for flag, (default, metavar, text) in OUTLIER_FLAGS.items():
        odd.add_argument(flag, type=float, default=default, metavar=metavar, help=text)
    parser.add_argument("--plot", metavar="PNG", help="also write an overview figure of the (training) set")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")


#: Largest injected constant zero-point (uas): Gaia's are tens of uas.
MAX_ZEROPOINT_UAS = 10_000.0


def _zeropoint(args):
    from astropy import units as u

    from ..simulate import paper_quadratic_zeropoint

    if args.zeropoint == "constant":
        value = PAPER_ZEROPOINT_UAS if args.zeropoint_uas is None else args.zeropoint_uas
        if abs(value) > MAX_ZEROPOINT_UAS:
            raise UsageError(f"--zeropoint-uas {value:g} is implausible for a Gaia parallax zero-point (tens of uas); "
                             f"give at most {MAX_ZEROPOINT_UAS:g} uas in size")
        return value * u.uas
    if args.zeropoint_uas is not None:
        raise UsageError(f"--zeropoint-uas applies to --zeropoint constant, not {args.zeropoint}")
    return paper_quadratic_zeropoint(*_PAPER_FEATURES[args.zeropoint])


def _outlier_counts(codes):
    from ..simulate.outliers import OUTLIER_CODES

    return {kind: int(np.sum(np.asarray(codes) == code)) for kind, code in OUTLIER_CODES.items() if code}


def _check_disk(args):
    """UsageError when the spectra alone (float32, 7514 pixels a star) would not fit on the output's disk."""
    import shutil

    n = args.n_stars + ((args.n_test or args.n_stars) if args.test_out else 0)
    need = n * APOGEE_SPECTRUM_LENGTH * 4
    folder = os.path.dirname(os.path.abspath(args.out))
    while not os.path.isdir(folder):  # the output's folder is made later
        folder = os.path.dirname(folder)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UsageError(f"{n} stars need at least {need / 1e9:.3g} GB for their spectra and the disk of {args.out} "
                         f"has {free / 1e9:.3g} GB free: lower --n-stars/--n-test or write elsewhere")


def run(args):
    interrupt_on_sigterm()
    outs = [args.out] + ([args.test_out] if args.test_out else [])
    if args.plot and not args.plot.endswith(".png"):
        raise UsageError(f"--plot {args.plot} must be a .png file")
    if args.test_out and os.path.realpath(args.test_out) == os.path.realpath(args.out):
        raise UsageError(f"--test-out {args.test_out} is the training set OUT: give the test set its own file")
    for path in outs + ([args.plot] if args.plot else []):
        if path in outs and not path.lower().endswith(HDF5_EXTENSIONS):
            raise UsageError(f"output {path} must be an HDF5 file ({', '.join(HDF5_EXTENSIONS)})")
        flag = "OUT" if path == args.out else "--test-out" if path == args.test_out else "--plot"
        if path in outs:
            check_output(path, args.overwrite, flag=flag)
        elif os.path.exists(path) and not args.overwrite:
            raise UsageError(f"{path} exists; pass --overwrite to replace it")
    if args.n_test is not None and not args.test_out:
        raise UsageError("--n-test needs --test-out")
    _check_disk(args)
    zeropoint = _zeropoint(args)
    outliers = outliers_from_args(args)

    from ..io.dataset import read_dataset
    from ..simulate import plot_survey, write_survey, write_train_test

    if args.test_out:
        write_train_test(args.out, args.test_out, args.n_stars, args.n_test or args.n_stars, seed=args.seed,
                         dib=args.dib, overwrite=args.overwrite, zeropoint=zeropoint, progress=True,
                         outliers=outliers)
    else:
        write_survey(args.out, args.n_stars, seed=args.seed, zeropoint=zeropoint, dib=args.dib,
                     overwrite=args.overwrite, progress=True, outliers=outliers)
    summary = {"files": []}
    for path in outs:
        ds = read_dataset(path)
        summary["files"].append({
            "path": os.path.abspath(path),
            "n_stars": len(ds),
            "snr_median": float(np.median(ds["snr"])),
            "zeropoint_mean_uas": float(ds["true_zeropoint"].mean() * 1000.0),
            "zeropoint_model": ds.attrs.get("zeropoint_model", ""),
            **({"outliers": _outlier_counts(ds["true_outlier"])} if "true_outlier" in ds else {}),
        })
    if args.plot:
        summary["plot"] = plot_survey(read_dataset(args.out), args.plot)
    if args.json:
        print_json(summary)
    else:
        for f in summary["files"]:
            print(f"{f['path']}: {f['n_stars']} stars, median S/N {f['snr_median']:.0f}, "
                  f"mean injected zero-point {f['zeropoint_mean_uas']:.2f} uas ({f['zeropoint_model']})"
                  + ("; outliers " + ", ".join(f"{k} {v}" for k, v in f["outliers"].items()) if "outliers" in f
                     else ""))
        if args.plot:
            print(f"overview figure: {summary['plot']}")
    return 0
