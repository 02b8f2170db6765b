"""``astronn-gaiacal zeropoint``: the model's Gaia parallax zero-point."""
import os
import sys

import numpy as np

from ._common import (UsageError, add_cluster_arguments, trend_lines, check_output, check_spectra_length, interrupt_on_sigterm,
                      load_dataset, load_model, load_table, numeric_columns, print_json, refuse_input_as_output,
                      run_scaled, add_seed_argument, seed_mc_dropout)

NAME = "zeropoint"
HELP = ("the zero-point of a trained model: one value for a constant model, per-star values and "
        "quadratic summaries (paper eqs. 7-9) for a Gaia table")


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="model folder (single model or ensemble)")
    parser.add_argument("table", metavar="GAIA_TABLE", nargs="?",
                        help="stars to evaluate (FITS/CSV/ECSV/Parquet/HDF5) with the model's feature columns")
    parser.add_argument("--out", metavar="FILE", help="output table with zeropoint/zeropoint_error columns (mas); "
                        "default: GAIA_TABLE with suffix _zeropoint; with --catalog, the output folder")
    parser.add_argument("--mc-num", type=int, default=100, help="MC-dropout passes (default 100)")
    parser.add_argument("--refit", metavar="DATA",
                        help="refit the zero-point by maximum likelihood on DATA's Gaia parallaxes (a dataset file, "
                             "e.g. the training set) with the luminosity network(s) held fixed: for a constant model "
                             "the calibrated estimate; for a multivariate model a quadratic in each feature with a "
                             "free luminosity scale (docs/calibration.rst)")
    parser.add_argument("--red-clump", metavar="COLUMN",
                        help="with --refit, multivariate: a boolean column of DATA marking red-clump stars (e.g. from "
                             "a cross-match with Bovy et al. 2014's APOGEE-RC catalogue); their known luminosity (M_Ks "
                             "-1.61, spread 0.17 mag) pins an additive luminosity error of the network, which a trend "
                             "in the zero-point can otherwise take up (docs/calibration.rst)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (with --catalog: "
                        "an output folder of another run)")
    parser.add_argument("--learned", action="store_true",
                        help="GAIA_TABLE or --catalog: per-star zero-points from the offset the network learned (MC "
                             "dropout), not the model's calibrated zero-point or trend (the default, refitted on the "
                             "training set; --catalog then evaluates it without loading the network)")
    parser.add_argument("--shared-masks", action="store_true",
                        help="GAIA_TABLE, multivariate, with --learned or a model without a calibrated trend: share each MC pass's dropout masks by a batch of 4096 stars "
                             "(every star's passes are still independent, but the MC noise of stars in one batch is "
                             "correlated); on a CPU the default per-star masks run in a fused kernel at most ~1.5x "
                             "slower (docs/performance.rst), on a GPU or without Numba several times slower")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_seed_argument(parser)
    scale = parser.add_argument_group(
        "catalogue scale (Dask/LSDB)", "with --catalog, per-star zero-points of a whole catalogue are computed on a "
        "Dask cluster and written to the folder --out, one Parquet file per partition (a HATS catalogue for a "
        "HATS input), resumable: a rerun skips the partitions already written")
    scale.add_argument("--catalog", dest="catalogue", metavar="PATH_OR_HATS",
                       help="Parquet file, folder or glob, or a HATS catalogue folder, with the feature columns")
    add_cluster_arguments(scale)
    scale.add_argument("--no-dropout", action="store_true",
                       help="one deterministic pass with MC dropout off (for the learned offset: --learned or a model "
                            "without a calibrated zero-point; its zeropoint_error is then NaN, unknown)")
    scale.add_argument("--batch-size", type=int, default=65536, help="stars per inference call (default 65536)")


def _summary_text(summary):
    lines = [f"zero-point model: {summary['model_class']} (offset={summary['offset']})"]
    if "zeropoint_uas" in summary:
        lines.append(f"zero-point = {summary['zeropoint_uas']:.2f} +- {summary['zeropoint_err_uas']:.2f} uas "
                     f"({summary['zeropoint_convention']}; estimate '{summary['zeropoint_estimate']}')")
        if "zeropoint_note" in summary:
            lines.append(f"  NOTE: {summary['zeropoint_note']}")
    if "refit" in summary:
        r = summary["refit"]
        lines.append(f"  refit on {r['n_stars']} stars, {r['members']} member(s): statistical "
                     f"{r['statistical_error_uas']:.2f} (x consistency factor {r['consistency_factor']:.2f}), ensemble "
                     f"{r['ensemble_error_uas']:.2f} uas; luminosity scatter {100 * r['scatter']:.1f}%; learned "
                     f"offset {summary['learned_zeropoint_uas']:.2f} +- {summary['learned_zeropoint_err_uas']:.2f} uas")
    cal = summary.get("zeropoint_calibration")
    if cal and "trends" in cal and "refit_trend" not in summary:
        lines.append(f"calibrated trend (estimate '{cal['estimate']}', refitted on the {cal['data']} with the "
                     "network fixed):")
        lines += [f"  {line}" for line in trend_lines(cal)]
    if summary.get("zeropoint_calibrated") is False:
        lines.append("WARNING: the model has no calibrated zero-point; the numbers are the learned offset's")
    if summary.get("training_converged") is False:
        from ..models.convergence import convergence_note
        lines.append(f"WARNING: {convergence_note(summary['training_convergence'])}")
    if "refit_trend" in summary:
        lines.append("refit with the network fixed:")
        lines += [f"  {line}" for line in trend_lines(summary["refit_trend"])]
    if "n_stars" in summary:
        stats = ("no star inside the training ranges" if summary["mean_uas"] is None else
                 f"mean {summary['mean_uas']:.2f} uas, median {summary['median_uas']:.2f} uas")
        lines.append(f"{summary['n_stars']} stars ({summary['n_missing_features']} without features, "
                     f"{summary['n_out_of_range']} outside the training ranges, flagged out_of_range): {stats}")
        for name, (lo, hi) in summary.get("feature_ranges", {}).items():
            lines.append(f"  the model's training range of {name}: {lo:.4g}..{hi:.4g}")
        for trend in summary.get("quadratic_trends", {}).values():
            lines.append(f"  {trend['feature']}: {trend['a']:.4g}(x-{trend['pivot']:g})^2 + {trend['b']:.4g}"
                         f"(x-{trend['pivot']:g}) + {trend['c']:.4g} uas, valid {trend['valid_range'][0]:.4g}.."
                         f"{trend['valid_range'][1]:.4g}")
    return "\n".join(lines)


#: Printed (stderr) by ``--catalog --no-dropout``.
NO_DROPOUT_WARNING = ("WARNING: --no-dropout runs the offset network once with dropout off: where the learned offset is "
                      "used (--learned, or a model without a calibrated zero-point) the zero-points are not the "
                      "MC-dropout mean the model was trained for and their zeropoint_error is NaN (unknown); use it to "
                      "test throughput, not for science")

_ONE_PASS = ("--mc-num 1 with MC dropout on has no MC-dropout spread (and one noisy pass for the refit's model "
             "parallaxes): use --mc-num 2 or more (default 100), or --no-dropout with --catalog")


def _run_catalogue(args):
    if args.table is not None:
        raise UsageError("give either GAIA_TABLE or --catalog, not both")
    if not args.out:
        raise UsageError("--catalog needs --out FOLDER")
    if args.mc_num < 2 and not args.no_dropout:
        raise UsageError(_ONE_PASS)
    if not os.path.isdir(args.model):
        raise UsageError(f"no such model folder: {args.model}")
    refuse_input_as_output(args.out, args.catalogue, args.model)
    if args.no_dropout:
        print(NO_DROPOUT_WARNING, file=sys.stderr)
    from .. import distributed

    return run_scaled("zeropoint",
                      lambda **kw: distributed.zeropoint_catalog(args.model, args.catalogue, args.out, **kw),
                      args, args.model, args.catalogue, mc_num=args.mc_num, dropout=not args.no_dropout,
                      batch_size=args.batch_size, estimate="learned" if args.learned else None)


def _refit_data(net, args):
    """The --refit dataset, checked against the model."""
    from ..models import DeepEnsemble

    if net.offset == "multivariate" and isinstance(net, DeepEnsemble):
        raise UsageError("--refit of a multivariate model takes one model folder, not an ensemble")
    require = ["spectra", "mag", "parallax", "parallax_error"]
    if net.offset == "multivariate":
        require += list(net.offset_features)
    if args.red_clump is not None:
        if net.offset != "multivariate":
            from ..zeropoint.trends import CONSTANT_NEEDS_NO_ANCHOR

            raise UsageError(f"--red-clump: {CONSTANT_NEEDS_NO_ANCHOR}")
    ds = load_dataset(args.refit, require=require)
    check_spectra_length(ds, args.refit, net.spectrum_length)
    if args.red_clump is not None:
        _check_red_clump(ds, args)
    return ds


def _check_red_clump(ds, args):
    from ..zeropoint.trends import red_clump_anchors

    if args.red_clump not in ds:
        raise UsageError(f"{args.refit} has no column {args.red_clump!r} (--red-clump): add a boolean column "
                         "marking the red-clump stars")
    try:
        fakemag, _ = red_clump_anchors(getattr(ds[args.red_clump], "value", ds[args.red_clump]))
    except (TypeError, ValueError):
        raise UsageError(f"--red-clump column {args.red_clump!r} of {args.refit} must be boolean (or 0/1) with no "
                         "missing values: mark the red-clump stars True, all others False") from None
    if not np.any(np.isfinite(fakemag)):
        raise UsageError(f"--red-clump column {args.red_clump!r} of {args.refit} marks no star: give the column "
                         "that flags the red-clump members, or leave --red-clump out")


def run(args):
    interrupt_on_sigterm()
    if args.catalogue is not None:
        return _run_catalogue(args)
    from .. import pipeline, summaries
    from ..io.tables import write_table

    if args.no_dropout:
        raise UsageError("--no-dropout applies to --catalog only; without it the learned offset and the refit use "
                         "--mc-num MC-dropout passes")
    if args.mc_num < 2:
        raise UsageError(_ONE_PASS)
    if args.refit is not None and args.table is not None:
        raise UsageError("give either GAIA_TABLE or --refit DATA, not both")
    if args.red_clump is not None and args.refit is None:
        raise UsageError("--red-clump needs --refit DATA: the anchors are stars of DATA")
    net = load_model(args.model)
    net.mc_num = args.mc_num
    if net.offset == "none":
        raise UsageError(f"{args.model} was trained with offset 'none': it has no zero-point")
    if args.table is None and args.refit is None and net.offset != "constant" and net.zeropoint_calibration is None:
        raise UsageError("this multivariate model has no calibrated trend: give GAIA_TABLE with its feature columns "
                         f"{', '.join(net.offset_features)}, or --refit DATA")
    refit = None if args.refit is None else _refit_data(net, args)
    table = out = None
    if args.table is not None:
        table = load_table(args.table)
        missing = pipeline.missing_features(net, table)
        if missing:
            raise UsageError(f"{args.table} lacks feature column(s) {', '.join(missing)} "
                             f"(the model needs {', '.join(net.offset_features)})")
        if net.offset == "multivariate":
            numeric_columns(table, net.offset_features, args.table)
        out = args.out or "{0}_zeropoint{1}".format(*os.path.splitext(args.table))
        check_output(out, args.overwrite, inputs=[args.table, args.model])
    seed_mc_dropout(args)
    summary = summaries.zeropoint_summary(net, args.model, refit=refit, refit_source=args.refit,
                                          red_clump=args.red_clump)
    if table is not None:
        summary.update(pipeline.add_zeropoint_columns(net, table, shared_masks=args.shared_masks,
                                                      estimate="learned" if args.learned else None),
                       out=os.path.abspath(out))
        write_table(table, out, overwrite=args.overwrite)
    print_json(summary) if args.json else print(_summary_text(summary))
    return 0
