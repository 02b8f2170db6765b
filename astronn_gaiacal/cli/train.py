"""``astronn-gaiacal train``: train a joint model on a dataset file."""
import os

from ..constants import DEFAULT_MODEL
from ._common import (UsageError, add_jobs_argument, trend_lines, astronn_chatter_to_stderr, check_output, check_positive,
                      check_spectra_length, checked_jobs, interrupt_on_sigterm, load_dataset, load_model, print_json)

NAME = "train"
HELP = "train a joint distance + zero-point model on a dataset (HDF5 dataset format or a table)"


def _noise_snr(text):
    """``--training-noise-snr``: 'none' (None) or a positive finite S/N."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise UsageError(f"--training-noise-snr must be a positive S/N or 'none', got {text!r}")
    return value


def add_arguments(parser):
    parser.add_argument("data", metavar="DATA", help="training set: HDF5 dataset format, or FITS/ECSV/CSV/Parquet table")
    parser.add_argument("--offset", choices=["none", "constant", "multivariate"], default=None,
                        help="zero-point model (default: the model class's, 'constant' for ApogeeGaiaBCNN)")
    parser.add_argument("--features", nargs="+", metavar="NAME",
                        help="offset features (multivariate only; default phot_g_mean_mag bp_rp teff)")
    parser.add_argument("--offset-head", choices=["network", "quadratic"], default=None,
                        help="offset model of --offset multivariate: the paper's dense network (default) or one "
                             "quadratic per feature (docs/calibration.rst)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registered model class (see `astronn-gaiacal models`)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the validated recipe for the number of stars, "
                             "70 below 10,000 stars, 40 from 10,000)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default 64)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default: the recipe's, 3e-3 below 10,000 stars, 1e-3 from 10,000)")
    parser.add_argument("--loss", default=None,
                        help="registered likelihood: gaia_gaussian_nll (the paper's, default), gaia_student_t_nll "
                             "(robust), gaussian_nll")
    parser.add_argument("--nu", type=float, default=None, help="degrees of freedom of gaia_student_t_nll (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (weights, dropout, shuffling)")
    parser.add_argument("--ensemble", type=int, default=None, metavar="K",
                        help="train a deep ensemble of K members, 1 for a single model (default: the recipe's, "
                             "4 below 10,000 stars, 5 from 10,000; the ensemble's refit is the calibrated zero-point)")
    parser.add_argument("--weight-averaging", type=float, default=None, metavar="FRAC",
                        help="average the weights over this fraction of the last epochs (default: the recipe's, "
                             "0.35; 0 turns it off)")
    parser.add_argument("--training-noise-snr", default=None, metavar="SNR",
                        help="lowest S/N the training spectra are degraded to, so that the network is trained at the "
                             "S/N it is applied at (default: the model's, 50; needs the data's spectra_err); "
                             "'none' trains on the spectra as given")
    parser.add_argument("--luminosity-from", metavar="MODEL_DIR",
                        help="start from the luminosity network of this trained model, held fixed: calibrate the "
                             "zero-point of a new catalogue of the same kind of stars with a trained network")
    parser.add_argument("--fine-tune-luminosity", action="store_true",
                        help="with --luminosity-from: train that network further instead of holding it fixed")
    add_jobs_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output model folder (astroNN format)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _check_options(args):
    check_positive(args, "epochs", "batch_size", "lr", "nu")
    if args.training_noise_snr is not None:
        args.noise = {"training_noise_snr": _noise_snr(args.training_noise_snr)}
    else:
        args.noise = {}
    args.replace = check_output(args.out, args.overwrite, inputs=[args.data, args.luminosity_from],
                                what="output folder")
    if args.offset_head and args.offset != "multivariate":
        raise UsageError("--offset-head only applies to --offset multivariate")
    if args.features and args.offset not in (None, "multivariate"):
        raise UsageError(f"--features only applies to --offset multivariate, not --offset {args.offset}")
    if args.weight_averaging is not None and not 0 <= args.weight_averaging < 1:
        raise UsageError(f"--weight-averaging must be a fraction in [0, 1), got {args.weight_averaging}")
    if args.fine_tune_luminosity and args.luminosity_from is None:
        raise UsageError("--fine-tune-luminosity needs --luminosity-from MODEL_DIR")
    if args.luminosity_from is not None and not os.path.isdir(args.luminosity_from):
        raise UsageError(f"no such model folder: {args.luminosity_from}")


def _check_luminosity_source(args, ds):
    """The --luminosity-from folder: one trained model with spectra as long as DATA's."""
    from ..models import DeepEnsemble

    source = load_model(args.luminosity_from)
    if isinstance(source, DeepEnsemble):
        raise UsageError(f"--luminosity-from {args.luminosity_from} is an ensemble; give one member's folder")
    check_spectra_length(ds, args.data, source.spectrum_length, "the network of --luminosity-from")


def run(args):
    interrupt_on_sigterm()
    from .. import pipeline, summaries
    from ..models.convergence import convergence_note
    from ..nn.losses import DEFAULT_LOSS, LOSS_CLASSES
    from ..registry import registered

    _check_options(args)
    n_jobs = checked_jobs(args)
    loss = DEFAULT_LOSS if args.loss is None else args.loss
    if args.model not in registered("models"):
        raise UsageError(f"unknown model {args.model!r}; registered: {', '.join(registered('models'))}")
    if loss not in LOSS_CLASSES:
        raise UsageError(f"unknown loss {loss!r}; choose one of {', '.join(sorted(LOSS_CLASSES))}")
    if args.nu is not None and loss != "gaia_student_t_nll":
        raise UsageError("--nu only applies to --loss gaia_student_t_nll")
    probe = pipeline.build_model(args.model, args.offset, args.features)
    features = probe.offset_features if probe.offset == "multivariate" else []
    ds = load_dataset(args.data, require=["spectra", "mag", "parallax", "parallax_error"], features=features)
    check_spectra_length(ds, args.data, probe.spectrum_length, f"model {args.model}")
    if args.luminosity_from is not None:
        _check_luminosity_source(args, ds)
    keep, excluded = pipeline.trainable_mask(ds, probe.offset, features)
    if not keep.any():
        raise UsageError(f"no star in {args.data} is usable for training (each needs a spectrum without NaN/-9999 "
                         "pixels, a magnitude and the offset features)")
    batch_size = args.batch_size or probe.batch_size
    n_train = int(keep.sum()) - int(int(keep.sum()) * (probe.val_size or 0))
    if n_train < batch_size:
        raise UsageError(f"{args.data}: {n_train} usable training stars (after the {probe.val_size:.0%} validation "
                         f"split; excluded: {excluded or 'none'}) are fewer than --batch-size {batch_size}: give "
                         "more stars or a smaller --batch-size")
    with astronn_chatter_to_stderr():
        net, excluded = pipeline.train(
            ds, model=args.model, offset=args.offset, features=args.features, epochs=args.epochs,
            batch_size=args.batch_size, loss=loss, loss_config={"nu": args.nu} if args.nu else None,
            lr=args.lr, seed=args.seed, ensemble=args.ensemble, verbose=0, n_jobs=n_jobs,
            weight_averaging=args.weight_averaging, luminosity_from=args.luminosity_from,
            freeze_luminosity=not args.fine_tune_luminosity, offset_head=args.offset_head,
            **args.noise,
        )
        folder = net.save(args.out, overwrite=args.replace)
    summary = summaries.model_summary(net, folder)
    summary.update(n_stars=len(ds), excluded=excluded, data=os.path.abspath(args.data))
    if args.json:
        print_json(summary)
    else:
        print(f"trained {summary['model_class']} (offset={summary['offset']}) on "
              f"{len(ds) - sum(excluded.values())} stars -> {folder}")
        for reason, count in excluded.items():
            print(f"  excluded {count} star(s): {reason}")
        t = summary["training"]
        print(f"  {t['ensemble']} model(s), {t['epochs']} epochs, lr {t['lr']:g}, weights averaged over the last "
              f"{t['weight_averaging']:.0%} of the epochs")
        noise = t.get("training_noise_snr")
        print(f"  training spectra degraded to S/N {noise:g} and above each step" if noise is not None else
              "  training spectra used as given (no S/N degradation)")
        if "zeropoint_uas" in summary:
            print(f"  zero-point: {summary['zeropoint_uas']:.2f} +- {summary['zeropoint_err_uas']:.2f} uas "
                  f"(estimate '{summary['zeropoint_estimate']}'; learned offset {summary['learned_zeropoint_uas']:.2f}"
                  f" +- {summary['learned_zeropoint_err_uas']:.2f} uas)")
            if "zeropoint_note" in summary:
                print(f"    NOTE: {summary['zeropoint_note']}")
        cal = summary.get("zeropoint_calibration")
        if cal and "trends" in cal:
            print(f"  calibrated trend (estimate '{cal['estimate']}', on the {cal['data']}):")
            for line in trend_lines(cal):
                print(f"    {line}")
        if summary.get("zeropoint_calibrated") is False:
            print("  WARNING: the zero-point is not calibrated (the ZeropointCalibrationWarning above says why); "
                  "the learned offset is reported")
        if summary["training_converged"] is False:
            print(f"  WARNING: {convergence_note(summary['training_convergence'])}")
    return 0
