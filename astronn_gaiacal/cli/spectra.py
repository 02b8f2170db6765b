"""``astronn-gaiacal spectra``: apStar files to a dataset file."""
NAME = "spectra"
HELP = "continuum-normalise APOGEE apStar files (or folders of them) into an HDF5 dataset"


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR", help="apStar FITS files and/or folders")
    parser.add_argument("--out", required=True, metavar="DATA.h5", help="output dataset file")
    parser.add_argument("--dr", type=int, default=None, help="APOGEE data release (default: from file names, else 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    import os

    from ..spectra import read_apstar_files
    from ._common import UsageError, print_json

    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"output file {args.out} already exists (use --overwrite to replace it)")
    ds, report = read_apstar_files(args.inputs, dr=args.dr, progress=not args.json)
    summary = {"read": report["read"], "failed": dict(report["failed"]), "out": None}
    if ds is None:
        for path, reason in report["failed"].items():
            print(f"skipped {reason}")
        raise UsageError(f"none of the {len(report['failed'])} input file(s) could be read")
    ds.write(args.out, overwrite=args.overwrite)
    summary["out"] = os.path.abspath(args.out)
    if args.json:
        print_json(summary)
    else:
        for reason in report["failed"].values():
            print(f"skipped {reason}")
        print(f"wrote {report['read']} spectra to {args.out} ({len(report['failed'])} file(s) skipped)")
    return 0
