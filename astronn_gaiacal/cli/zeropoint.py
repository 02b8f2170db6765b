"""``astronn-gaiacal zeropoint``: the model's Gaia parallax zero-point."""
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
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (with --catalog: "
                        "an output folder of another run)")
    parser.add_argument("--shared-masks", action="store_true",
                        help="GAIA_TABLE, multivariate: share each MC pass's dropout masks by a batch of 4096 stars "
                             "(about 10x faster; every star's passes are still independent, but the MC noise of "
                             "stars in one batch is correlated)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    scale = parser.add_argument_group(
        "catalogue scale (Dask/LSDB)", "with --catalog, per-star zero-points of a whole catalogue are computed on a "
        "Dask cluster and written to the folder --out, one Parquet file per partition (a HATS catalogue for a "
        "HATS input), resumable: a rerun skips the partitions already written")
    scale.add_argument("--catalog", metavar="PATH_OR_HATS",
                       help="Parquet file, folder or glob, or a HATS catalogue folder, with the feature columns")
    from ._common import add_cluster_arguments

    add_cluster_arguments(scale)
    scale.add_argument("--no-dropout", action="store_true",
                       help="one deterministic pass with MC dropout off (zeropoint_error = 0)")
    scale.add_argument("--batch-size", type=int, default=65536, help="stars per inference call (default 65536)")


def _summary_text(summary):
    lines = [f"zero-point model: {summary['model_class']} (offset={summary['offset']})"]
    if "zeropoint_uas" in summary:
        lines.append(f"zero-point = {summary['zeropoint_uas']:.2f} +- {summary['zeropoint_err_uas']:.2f} uas "
                     f"({summary['zeropoint_convention']}; estimate '{summary['zeropoint_estimate']}')")
    if "refit" in summary:
        r = summary["refit"]
        lines.append(f"  refit on {r['n_stars']} stars, {r['members']} member(s): statistical "
                     f"{r['statistical_error_uas']:.2f} (x consistency factor {r['consistency_factor']:.2f}), ensemble "
                     f"{r['ensemble_error_uas']:.2f} uas; luminosity scatter {100 * r['scatter']:.1f}%; learned "
                     f"offset {summary['learned_zeropoint_uas']:.2f} +- {summary['learned_zeropoint_err_uas']:.2f} uas")
    if "refit_trend" in summary:
        r = summary["refit_trend"]
        lines.append(f"refit on {r['n_stars']} stars with the network fixed: luminosity scale {r['scale']:.4f} +- "
                     f"{r['scale_error']:.4f}, scatter {100 * r['scatter']:.1f}%")
        for t in r["trends"].values():
            lines.append(f"  {t['feature']}: {t['a']:.4g}({t['a_err']:.2g})(x-{t['pivot']:g})^2 + {t['b']:.4g}"
                         f"({t['b_err']:.2g})(x-{t['pivot']:g}) + {t['c']:.4g}({t['c_err']:.2g}) uas, valid "
                         f"{t['valid_range'][0]:.4g}..{t['valid_range'][1]:.4g}")
    if "n_stars" in summary:
        lines.append(f"{summary['n_stars']} stars ({summary['n_missing_features']} without features): "
                     f"mean {summary['mean_uas']:.2f} uas, median {summary['median_uas']:.2f} uas")
        for trend in summary.get("quadratic_trends", {}).values():
            lines.append(f"  {trend['feature']}: {trend['a']:.4g}(x-{trend['pivot']:g})^2 + {trend['b']:.4g}"
                         f"(x-{trend['pivot']:g}) + {trend['c']:.4g} uas, valid {trend['valid_range'][0]:.4g}.."
                         f"{trend['valid_range'][1]:.4g}")
    return "\n".join(lines)


def _run_catalog(args):
    import os

    from ._common import UsageError

    if args.table is not None:
        raise UsageError("give either GAIA_TABLE or --catalog, not both")
    if not args.out:
        raise UsageError("--catalog needs --out FOLDER")
    if args.mc_num < 1 or args.batch_size < 1:
        raise UsageError("--mc-num and --batch-size must be positive integers")
    if not os.path.isdir(args.model):
        raise UsageError(f"no such model folder: {args.model}")
    from .. import distributed as scale

    from ._common import run_scaled

    return run_scaled("zeropoint", lambda **kw: scale.zeropoint_catalog(args.model, args.catalog, args.out, **kw),
                      args, mc_num=args.mc_num, dropout=not args.no_dropout, batch_size=args.batch_size)


def _refit_trend(net, args, summary, ds):
    from ._common import UsageError

    if hasattr(net, "members"):
        raise UsageError("--refit of a multivariate model takes one model folder, not an ensemble")
    try:
        fit = net.refit_zeropoint_trend(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                        {f: ds[f] for f in net.offset_features}, magnitude=ds.corrected_mag())
    except ValueError as err:
        raise UsageError(f"cannot refit on {args.refit}: {err}") from None
    summary["refit_trend"] = {**fit.to_dict(), "data": args.refit}


def _refit(net, args, summary):
    from ._common import UsageError, load_dataset

    require = ["spectra", "mag", "parallax", "parallax_error"]
    if net.offset == "multivariate":
        require += list(net.offset_features)
    ds = load_dataset(args.refit, require=require)
    if ds["spectra"].shape[1] != net.spectrum_length:
        raise UsageError(f"{args.refit} has {ds['spectra'].shape[1]}-pixel spectra; the model expects "
                         f"{net.spectrum_length}")
    if net.offset == "multivariate":
        return _refit_trend(net, args, summary, ds)
    from ..zeropoint.estimates import DEFAULT_ESTIMATE
    from ..models.ensemble import DeepEnsemble

    ensemble = DeepEnsemble.of(net)
    try:
        fit, parts = ensemble.refit_zeropoint(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                              magnitude=ds.corrected_mag(), components=True)
    except ValueError as err:
        raise UsageError(f"cannot refit on {args.refit}: {err}") from None
    numbers = fit.to_dict()
    summary["learned_zeropoint_uas"] = summary.pop("zeropoint_uas")
    summary["learned_zeropoint_err_uas"] = summary.pop("zeropoint_err_uas")
    summary.update(zeropoint_uas=numbers["value_uas"], zeropoint_err_uas=numbers["error_uas"],
                   zeropoint_estimate=DEFAULT_ESTIMATE)
    summary["refit"] = {**numbers, "data": args.refit, "members": len(ensemble),
                        "statistical_error_uas": float(parts["statistical"].to_value("uas")),
                        "ensemble_error_uas": float(parts["ensemble"].to_value("uas")),
                        "member_spread_uas": float(parts["member_spread"].to_value("uas")),
                        "consistency_factor": float(parts.get("consistency_factor", 1.0)),
                        "failed_members": parts["failed"]}


def run(args):
    import os

    import numpy as np
    from astropy import units as u

    from ._common import UsageError, load_model, print_json, summarise_model

    if args.catalog is not None:
        return _run_catalog(args)
    net = load_model(args.model)
    net.mc_num = args.mc_num
    if net.offset == "none":
        raise UsageError(f"{args.model} was trained with offset 'none': it has no zero-point")
    summary = summarise_model(net, args.model)
    if args.refit is not None:
        if args.table is not None:
            raise UsageError("give either GAIA_TABLE or --refit DATA, not both")
        _refit(net, args, summary)
    if args.table is None:
        if net.offset != "constant" and args.refit is None:
            raise UsageError("a multivariate model needs GAIA_TABLE with its feature columns "
                             f"{', '.join(net.offset_features)}")
        print_json(summary) if args.json else print(_summary_text(summary))
        return 0

    from ..io.tables import TableFormatError, read_table, write_table
    from ..zeropoint.trends import fit_quadratic_trend

    if not os.path.exists(args.table):
        raise UsageError(f"no such file: {args.table}")
    try:
        table = read_table(args.table)
    except (TableFormatError, OSError, ValueError) as err:
        raise UsageError(f"cannot read {args.table}: {err}") from None
    out = args.out or "{0}_zeropoint{1}".format(*os.path.splitext(args.table))
    if os.path.exists(out) and not args.overwrite:
        raise UsageError(f"output file {out} already exists (use --overwrite to replace it)")
    n = len(table)
    if net.offset == "constant":
        value, error = net.predict_zeropoint()
        zp, zp_err = np.full(n, value.to_value(u.mas)) * u.mas, np.full(n, error.to_value(u.mas)) * u.mas
    else:
        missing = [c for c in net.offset_features if c not in table.colnames]
        if missing:
            raise UsageError(f"{args.table} lacks feature column(s) {', '.join(missing)} "
                             f"(the model needs {', '.join(net.offset_features)})")
        zp, zp_err = net.predict_zeropoint(table, shared_masks=True) if args.shared_masks else net.predict_zeropoint(table)
    table["zeropoint"] = zp.to(u.mas)
    table["zeropoint_error"] = zp_err.to(u.mas)
    good = np.isfinite(zp.value)
    summary.update(
        n_stars=int(n), n_missing_features=int((~good).sum()), out=os.path.abspath(out),
        mean_uas=float(np.mean(zp[good].to_value(u.uas))) if good.any() else float("nan"),
        median_uas=float(np.median(zp[good].to_value(u.uas))) if good.any() else float("nan"),
    )
    if net.offset == "multivariate" and good.sum() >= 4:
        trends = {}
        for name in net.offset_features:
            x = np.asarray(table[name], dtype=float)
            if np.unique(x[good]).size >= 4:
                trends[name] = fit_quadratic_trend(x[good], zp[good], zp_err[good], feature=name).to_dict()
        summary["quadratic_trends"] = trends
    write_table(table, out, overwrite=args.overwrite)
    print_json(summary) if args.json else print(_summary_text(summary))
    return 0
