"""``astronn-gaiacal predict``: distances and parallaxes for a dataset, as the paper's Table-1 catalogue."""
import contextlib
import os
import sys

from ._common import (UsageError, add_cluster_arguments, check_output, check_spectra_length, interrupt_on_sigterm,
                      load_dataset, load_model, print_json, refuse_input_as_output, run_scaled, add_seed_argument,
                      seed_mc_dropout)

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
    add_seed_argument(parser)
    scale = parser.add_argument_group(
        "partitioned inputs (Dask)", "with --partitioned, every file of DATA is one Dask task, written to --out as "
        "one Parquet file (the catalogue's columns), resumable: a rerun skips the files already done")
    scale.add_argument("--partitioned", action="store_true", help="DATA is a folder or glob of dataset files")
    add_cluster_arguments(scale)
    scale.add_argument("--chunk-rows", type=int, default=10000,
                       help="stars read from a file at a time (default 10000)")
    parser.add_argument("--no-dropout", action="store_true",
                        help="one deterministic pass with MC dropout off (no MC-dropout uncertainty)")


#: Printed (stderr) whenever --no-dropout is given; docs/calibration.rst has the measurement.
NO_DROPOUT_WARNING = ("WARNING: --no-dropout runs one deterministic pass, not the MC-dropout mean the model was "
                      "trained and calibrated for: its distances are biased by tens of per cent and scatter several "
                      "times more (docs/calibration.rst), and their errors are missing (no MC spread measured); "
                      "use it to test throughput, not for science")


def _check_passes(args):
    if args.mc_num < 2 and not args.no_dropout:
        raise UsageError("--mc-num 1 with MC dropout on gives distances without their MC-dropout uncertainty: use "
                         "--mc-num 2 or more (default 100), or --no-dropout for one deterministic pass")
    if args.no_dropout:
        print(NO_DROPOUT_WARNING, file=sys.stderr)


def _run_partitioned(args):
    _check_passes(args)
    if not os.path.isdir(args.model):
        raise UsageError(f"no such model folder: {args.model}")
    refuse_input_as_output(args.out, args.data, args.model)
    from .. import distributed

    return run_scaled("predict",
                      lambda **kw: distributed.predict_partitioned(args.model, args.data, args.out, **kw),
                      args, args.model, args.data, mc_num=args.mc_num, dropout=not args.no_dropout,
                      batch_size=args.batch_size, chunk_rows=args.chunk_rows)


def run(args):
    interrupt_on_sigterm()
    if args.partitioned:
        return _run_partitioned(args)
    from .. import pipeline, summaries
    from ..io.catalogue import write_catalogue
    from ..io.quality import FLAG_COLUMNS, catalogue_summary
    from ..models.convergence import convergence_note
    from ..models.prediction import without_dropout

    check_output(args.out, args.overwrite, inputs=[args.data, args.model])
    if not args.out.lower().endswith((".fits", ".fit")):
        raise UsageError(f"--out must be a .fits file, got {args.out}")
    _check_passes(args)
    net = load_model(args.model)
    features = list(net.offset_features) if net.offset == "multivariate" else []
    ds = load_dataset(args.data, require=["spectra", "mag"])
    missing = pipeline.missing_features(net, ds)
    if missing:
        raise UsageError(f"{args.data} lacks feature column(s) {', '.join(missing)}: the multivariate model needs "
                         f"{', '.join(features)} for its zero-point; add them (e.g. with `astronn-gaiacal xmatch`) "
                         "or use a constant-offset model")
    check_spectra_length(ds, args.data, net.spectrum_length)
    seed_mc_dropout(args)
    with without_dropout(net) if args.no_dropout else contextlib.nullcontext():  # as with --partitioned
        catalogue = pipeline.catalogue_for(net, ds, mc_num=1 if args.no_dropout else args.mc_num,
                                           batch_size=args.batch_size)
    write_catalogue(catalogue, args.out, overwrite=args.overwrite)
    summary = {"out": os.path.abspath(args.out), **catalogue_summary(catalogue),
               **summaries.uncertainty_summary(net), **summaries.convergence_summary(net),
               "mc_num": 1 if args.no_dropout else args.mc_num, "dropout": not args.no_dropout}
    if net.offset != "none":  # which zero-point corrected the Gaia parallaxes
        summary.update(zeropoint_estimate=summaries.zeropoint_estimate(net),
                       zeropoint_calibrated=net.zeropoint_calibration is not None)
    if args.json:
        print_json(summary)
    else:
        frac = summary["median_fractional_dist_error"]
        print(f"wrote {summary['n_stars']} stars to {args.out}: {summary['n_with_distance']} with an NN distance"
              + (f", median fractional distance error {100 * frac:.1f}%" if frac is not None else ""))
        for name, count in summary["flags"].items():
            if count:
                print(f"  flagged {count} star(s) {name}: {FLAG_COLUMNS[name]}")
        if summary.get("zeropoint_calibrated") is False:
            print("  WARNING: the model has no calibrated zero-point; Gaia parallaxes are corrected by the learned "
                  "offset")
        if summary["training_converged"] is False:
            print(f"  WARNING: {convergence_note(summary['training_convergence'])}")
        if args.no_dropout:
            print(f"  {NO_DROPOUT_WARNING}")
    return 0
