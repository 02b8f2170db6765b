"""``astronn-gaiacal predict``: distances and parallaxes for a dataset, as the paper's Table-1 catalogue."""
NAME = "predict"
HELP = "NN distances and parallaxes (with uncertainties) for a dataset, written as a Table-1 FITS catalogue"

def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="model folder (single model or ensemble)")
    parser.add_argument("data", metavar="DATA", help="dataset (HDF5 dataset format or a table with spectra); with "
                        "--partitioned, a folder or glob of such files")
    parser.add_argument("--out", required=True, metavar="CATALOGUE.fits",
                        help="output FITS catalogue; with --partitioned, an output folder")
    parser.add_argument("--mc-num", type=int, default=100, help="MC-dropout passes (default 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="stars per inference batch")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    from ._common import add_cluster_arguments

    scale = parser.add_argument_group(
        "partitioned inputs (Dask)", "with --partitioned, every file of DATA is one Dask task, written to --out as "
        "one Parquet file (the catalogue's columns), resumable: a rerun skips the files already done")
    scale.add_argument("--partitioned", action="store_true", help="DATA is a folder or glob of dataset files")
    add_cluster_arguments(scale)
    scale.add_argument("--chunk-rows", type=int, default=10000,
                       help="stars read from a file at a time (default 10000)")
    scale.add_argument("--no-dropout", action="store_true",
                       help="one deterministic pass with MC dropout off (no model uncertainty)")


def _run_partitioned(args):
    import os

    from ._common import UsageError
    from ._common import run_scaled

    if args.mc_num < 1 or args.chunk_rows < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise UsageError("--mc-num, --chunk-rows and --batch-size must be positive integers")
    if not os.path.isdir(args.model):
        raise UsageError(f"no such model folder: {args.model}")
    from .. import distributed as scale

    return run_scaled("predict", lambda **kw: scale.predict_partitioned(args.model, args.data, args.out, **kw), args,
                      mc_num=args.mc_num, dropout=not args.no_dropout, batch_size=args.batch_size,
                      chunk_rows=args.chunk_rows)


def run(args):
    import os

    import numpy as np

    from .. import pipeline
    from ..io.catalogue import write_catalogue
    from ..constants import is_missing
    from ._common import UsageError, load_dataset, load_model, print_json

    if args.partitioned:
        return _run_partitioned(args)
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"output file {args.out} already exists (use --overwrite to replace it)")
    if not args.out.lower().endswith((".fits", ".fit")):
        raise UsageError(f"--out must be a .fits file, got {args.out}")
    net = load_model(args.model)
    ds = load_dataset(args.data, require=["spectra", "mag"])
    if ds["spectra"].shape[1] != net.spectrum_length:
        raise UsageError(f"{args.data} has {ds['spectra'].shape[1]}-pixel spectra; the model expects {net.spectrum_length}")
    try:
        table = pipeline.catalogue_for(net, ds, mc_num=args.mc_num, batch_size=args.batch_size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    write_catalogue(table, args.out, overwrite=args.overwrite)
    dist, dist_err = table["dist"].value, table["dist_error"].value
    ok = ~is_missing(dist) & ~is_missing(dist_err)  # the catalogue marks missing values with -9999
    summary = {
        "out": os.path.abspath(args.out), "n_stars": len(table),
        "n_with_distance": int((~is_missing(dist)).sum()),
        "median_fractional_dist_error": float(np.median(dist_err[ok] / dist[ok])) if ok.any() else float("nan"),
    }
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['n_stars']} stars to {args.out}; median fractional distance error "
              f"{100 * summary['median_fractional_dist_error']:.1f}%")
    return 0
