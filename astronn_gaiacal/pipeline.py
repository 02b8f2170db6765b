"""From a dataset to a trained model, and from a model to per-star results and summaries.

The command line (:mod:`astronn_gaiacal.cli`) and the experiments
(:mod:`astronn_gaiacal.studies`) are thin layers over these functions: every
number a subcommand prints is computed here.
"""
import functools
import os
import warnings

import numpy as np
from astropy import units as u

from .constants import DEFAULT_MODEL, is_missing, training_recipe
from .io.catalogue import GAIA_PASSTHROUGH_COLUMNS, LABEL_PASSTHROUGH_COLUMNS, catalogue_from_dataset
from .io.dataset import DatasetError, MissingColumnError
from .io.quality import (feature_range_flags, magnitude_flags, parallax_flags, parallax_unit_problem,
                         row_duplicates, spectrum_flags)
from .models import DeepEnsemble
from .models.calibration import UncalibratedWarning
from .models.luminosity_check import flagged_stars
from .models.protocol import LEARNED, ZeropointCalibrationWarning
from .models.workers import TrainJob, train_jobs
from .nn.losses import DEFAULT_LOSS
from .nn.noise import TrainingNoiseWarning
from .registry import get_model_class
from .summaries import zeropoint_estimate
from .zeropoint.trends import fit_quadratic_trend

#: Fewest stars with a zero-point, and distinct feature values, for a quadratic summary of a feature.
MIN_TREND_STARS = 4
#: Header comment of ``ZPESTIM``; short enough for the longest estimate name on one 80-character FITS card.
ZPESTIM_COMMENT = "estimate behind ZEROPT / zeropoint"


def trainable_mask(ds, offset, features=()):
    """Stars usable for training: spectra, magnitude and (multivariate) features all present.

    Returns
    -------
    mask : ndarray of bool
    reasons : dict
        ``{reason: number of stars excluded}``; stars without a Gaia parallax are
        kept (the likelihood masks them).
    """
    n = len(ds)
    keep = np.ones(n, bool)
    reasons = {}
    spectra_bad = is_missing(ds["spectra"]).any(axis=1)
    reasons["spectra with NaN/-9999 pixels"] = int(spectra_bad.sum())
    mag_bad = is_missing(ds.corrected_mag())
    reasons["missing magnitude"] = int((mag_bad & ~spectra_bad).sum())
    keep &= ~spectra_bad & ~mag_bad
    for reason, flag in (("not a continuum-normalised spectrum (flag_spectrum)", spectrum_flags(ds["spectra"])),
                         ("magnitude outside the plausible range (flag_magnitude)", magnitude_flags(ds.corrected_mag())),
                         ("repeated star (flag_duplicate)", row_duplicates(ds))):
        bad = flag & keep
        reasons[reason] = int(bad.sum())
        keep &= ~bad
    if offset == "multivariate":
        for name in features:
            bad = is_missing(ds[name]) & keep
            reasons[f"missing {name}"] = int(bad.sum())
            keep &= ~bad
    plx_bad = keep & parallax_flags(ds["parallax"], ds["parallax_error"])
    reasons["unusable Gaia parallax: error missing or not positive, or implausible value (flag_parallax)"] = \
        int(plx_bad.sum())
    keep &= ~plx_bad
    return keep, {k: v for k, v in reasons.items() if v}


def check_parallax_unit(ds):
    """Raise :class:`~astronn_gaiacal.io.dataset.DatasetError` when ``parallax_error`` cannot be in mas."""
    if "parallax_error" in ds:
        problem = parallax_unit_problem(ds["parallax_error"])
        if problem:
            raise DatasetError(problem)


def build_model(model=DEFAULT_MODEL, offset=None, features=None, loss=DEFAULT_LOSS, lr=None, **kwargs):
    """Instantiate a registered model class by name with the given options."""
    cls = get_model_class(model) if isinstance(model, str) else model
    options = dict(offset=offset, offset_features=features, loss=loss, **kwargs)
    if lr is not None:
        options["lr"] = lr
    return cls(**options)


#: ``training_noise_snr`` of :func:`train`: the model class's own ``training_noise_snr``.
MODEL_DEFAULT = "model default"


def configured_model(model, offset, features, loss=DEFAULT_LOSS, loss_config=None, lr=None, epochs=None,
                     batch_size=None, verbose=0, weight_averaging=None, offset_head=None,
                     training_noise_snr=MODEL_DEFAULT):
    """:func:`build_model` with the training settings applied (a picklable factory via ``functools.partial``)."""
    extra = {} if offset_head is None else {"offset_head": offset_head}
    net = build_model(model, offset, features, loss=loss, loss_config=loss_config, lr=lr, **extra)
    if training_noise_snr != MODEL_DEFAULT:
        net.training_noise_snr = None if training_noise_snr is None else float(training_noise_snr)
    if weight_averaging is not None:
        net.weight_averaging = float(weight_averaging)
    if epochs is not None:
        net.max_epochs = int(epochs)
    if batch_size is not None:
        net.batch_size = int(batch_size)
    net.verbose = verbose
    return net


def fit_arguments(net, ds):
    """Keyword arguments for ``net.fit`` from a dataset."""
    args = dict(
        spectra=ds["spectra"],
        parallax=ds["parallax"],
        parallax_error=ds["parallax_error"],
        magnitude=ds.corrected_mag(),
    )
    if net.offset == "multivariate":
        args["offset_features"] = {name: ds[name] for name in net.offset_features}
    if getattr(net, "training_noise_snr", None) is not None:  # training at the S/N of application
        if "spectra_err" in ds:
            args["spectra_err"] = ds["spectra_err"]
        if _has_column(ds, "snr"):
            args["snr"] = _float_column(ds, "snr")
    return args


def train(
    ds,
    model=DEFAULT_MODEL,
    offset=None,
    features=None,
    epochs=None,
    batch_size=None,
    loss=DEFAULT_LOSS,
    loss_config=None,
    lr=None,
    seed=0,
    ensemble=None,
    verbose=0,
    progress=True,
    n_jobs=1,
    weight_averaging=None,
    luminosity_from=None,
    freeze_luminosity=True,
    recipe=True,
    offset_head=None,
    training_noise_snr=MODEL_DEFAULT,
):
    """Train a model (or a deep ensemble of ``ensemble`` members) on a dataset.

    Parameters
    ----------
    ds : astronn_gaiacal.io.dataset.Dataset
        Needs spectra, mag (and optionally mag_ext), parallax, parallax_error
        and, for a multivariate offset, the feature columns.
    model : str or class
        A registered model name (``astronn-gaiacal models`` lists them).
    offset : {'none', 'constant', 'multivariate'}, optional
    features : sequence of str, optional
    epochs, batch_size, lr : optional
        Override the defaults (the recipe's, or the model's with ``recipe=False``).
    seed : int
        Seeds weights, dropout, shuffling (member ``k`` of an ensemble uses ``seed + k``).
    ensemble : int, optional
        Number of members; 1 trains a single model.  Default the recipe's (1 with ``recipe=False``).
    n_jobs : int or None
        Ensemble members trained at once in worker processes (``None``: one per
        core; see :mod:`astronn_gaiacal.models.workers`).
    weight_averaging : float, optional
        Average the weights over this fraction of the last epochs
        (:class:`~astronn_gaiacal.nn.callbacks.WeightAveraging`); default the recipe's (the model's, off,
        with ``recipe=False``).
    luminosity_from : str, optional
        Folder of a trained model whose luminosity network every member starts
        from (see :meth:`~astronn_gaiacal.models.GaiaCalBCNNBase.fit`).
    freeze_luminosity : bool
        Keep that network fixed (default) or fine-tune it.
    offset_head : {'network', 'quadratic'}, optional
        Offset model of a multivariate model (default
        :data:`~astronn_gaiacal.constants.DEFAULT_OFFSET_HEAD`).
    recipe : bool
        Take ``epochs``, ``lr``, ``weight_averaging`` and ``ensemble``, where
        not given, from the validated recipe for the number of usable stars
        (:func:`~astronn_gaiacal.constants.training_recipe`); False: the
        model class's defaults and one model.
    training_noise_snr : float or None, optional
        Lowest S/N the training spectra are degraded to (the model's
        ``training_noise_snr``, :mod:`astronn_gaiacal.nn.noise`; needs the dataset's
        ``spectra_err``); ``None`` trains on the spectra as given.  Default the
        model class's (:data:`~astronn_gaiacal.constants.TRAINING_NOISE_SNR`).

    The trained model carries its calibrated zero-point (constant) or trend
    (multivariate), refitted on the training stars
    (:attr:`~astronn_gaiacal.models.ZeropointModel.zeropoint_calibration`).

    Returns
    -------
    model : GaiaCalBCNNBase or DeepEnsemble
    excluded : dict
        Stars left out and why (see :func:`~astronn_gaiacal.pipeline.trainable_mask`).
    """
    if lr is not None and not float(lr) > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    check_parallax_unit(ds)
    probe = build_model(model, offset, features, loss=loss, loss_config=loss_config, lr=lr)
    keep, excluded = trainable_mask(ds, probe.offset, probe.offset_features)
    if keep.sum() == 0:
        raise ValueError("no star in the dataset is usable for training")
    train_ds = ds.subset(keep) if not keep.all() else ds
    if recipe:  # the validated settings for this many stars, where none is given
        chosen = training_recipe(int(keep.sum()))
        epochs = chosen["epochs"] if epochs is None else epochs
        lr = chosen["lr"] if lr is None else lr
        weight_averaging = chosen["weight_averaging"] if weight_averaging is None else weight_averaging
        ensemble = chosen["ensemble"] if ensemble is None else ensemble
    ensemble = 1 if ensemble is None else ensemble

    if training_noise_snr != MODEL_DEFAULT:
        if training_noise_snr is not None and not float(training_noise_snr) > 0:
            raise ValueError(f"training_noise_snr must be a positive S/N or None, got {training_noise_snr!r}")
        probe.training_noise_snr = training_noise_snr
    if probe.training_noise_snr is not None and "spectra_err" not in train_ds and not _has_column(train_ds, "snr"):
        warnings.warn("the training set has neither spectra_err nor snr, so the network is trained only at the S/N "
                      "of its spectra and its luminosities are biased low on noisier ones: add the spectra's errors "
                      "or S/N, or set training_noise_snr=None (--training-noise-snr none)", TrainingNoiseWarning,
                      stacklevel=2)
        training_noise_snr = probe.training_noise_snr = None  # once, here; the folders record "as given"
    factory = functools.partial(configured_model, model, offset, features, loss=loss, loss_config=loss_config,
                                lr=lr, epochs=epochs, batch_size=batch_size, verbose=verbose,
                                weight_averaging=weight_averaging, offset_head=offset_head,
                                training_noise_snr=training_noise_snr)
    fit_kwargs = fit_arguments(probe, train_ds)
    if luminosity_from is not None:
        fit_kwargs.update(luminosity_from=os.fspath(luminosity_from), freeze_luminosity=bool(freeze_luminosity))
    if int(ensemble) > 1:
        result = DeepEnsemble.train(factory, n_members=int(ensemble), seed=seed, progress=progress, n_jobs=n_jobs,
                                    **fit_kwargs)
    else:
        result = train_jobs([TrainJob(factory, seed, fit_kwargs, "model")], n_jobs=1)[0]
    if result.calibrate_at_fit and "snr" in train_ds and "spectra_err" in train_ds:
        _calibrate_with_snr(result, train_ds, fit_kwargs)
    return result, excluded


def _calibrate_with_snr(model, ds, fit_kwargs):
    """Refit the uncertainty scale with its S/N dependence (noise injected into the validation spectra)."""
    try:
        model.calibrate_uncertainties(fit_kwargs["spectra"], fit_kwargs["parallax"], fit_kwargs["parallax_error"],
                                      magnitude=fit_kwargs["magnitude"], offset_features=fit_kwargs.get(
                                          "offset_features"), spectra_err=ds["spectra_err"], snr=ds["snr"])
    except ValueError as exc:  # the constant scale of fit stays
        warnings.warn(f"the S/N dependence of the uncertainty scale was not fitted: {exc}", UncalibratedWarning,
                      stacklevel=3)


def _has_column(table, name):
    names = getattr(table, "colnames", None)  # astropy Table; Dataset, DataFrame and dict answer ``in``
    return name in names if names is not None else name in table


def _n_rows(table):
    if isinstance(table, dict):
        return len(next(iter(table.values()))) if table else 0
    return len(table)


def missing_features(model, table):
    """The offset features of ``model`` that ``table`` has no column for.

    Parameters
    ----------
    model : GaiaCalBCNNBase or DeepEnsemble
    table : astropy Table, Dataset, pandas DataFrame or dict of columns

    Returns
    -------
    list of str
        Empty for a constant or no-offset model, or when every feature is there.
    """
    if model.offset != "multivariate":
        return []
    return [name for name in model.offset_features if not _has_column(table, name)]


def table_zeropoints(model, table, mc_num=None, batch_size=None, shared_masks=False, estimate=None):
    """Per-star zero-points of the stars of a table: the one implementation for every caller.

    By default the model's calibrated zero-point or trend
    (:attr:`~astronn_gaiacal.models.ZeropointModel.zeropoint_calibration`);
    the offset the network learned with ``estimate='learned'``, or, with a
    :class:`~astronn_gaiacal.models.protocol.ZeropointCalibrationWarning`,
    for a model that has no calibration.

    Parameters
    ----------
    model : GaiaCalBCNNBase or DeepEnsemble
        A model with offset ``'constant'`` or ``'multivariate'``.
    table : astropy Table, Dataset, pandas DataFrame or dict of 1-d arrays
        The stars, one row each.  A multivariate model reads its
        ``offset_features`` columns (converted to float; masked entries
        become NaN); a constant model only counts the rows.  Columns given
        as plain arrays in a dict must be numeric (convert nullable pandas
        columns first).
    mc_num : int, optional
        MC-dropout passes; default the model's ``mc_num``.
    batch_size : int, optional
        Stars per inference call (multivariate); default the model's own
        (``predict_zeropoint``'s default).
    shared_masks : bool
        Multivariate: share each pass's dropout masks by a batch of stars
        (see :meth:`~astronn_gaiacal.models.ZeropointModel.predict_zeropoint`).
    estimate : {None, 'learned'}
        ``'learned'``: the network's own offset even when a calibration exists
        (``mc_num``, ``batch_size`` and ``shared_masks`` apply to it only).

    Returns
    -------
    zeropoint, zeropoint_error : Quantity [mas], shape (N,)
        For a constant model its one value repeated for every row; for a
        multivariate model one value per star, NaN where a feature is missing
        (NaN/-9999).  Convention: ``parallax_gaia = parallax_true + zeropoint``.
        With a given ``mc_num`` (and a seed set beforehand), the numbers are
        those of ``model.predict_zeropoint`` with the same arguments.

    Raises
    ------
    MissingColumnError
        A multivariate model's feature column is not in ``table`` (a
        ``KeyError`` and a :class:`~astronn_gaiacal.io.dataset.DatasetError`);
        the message names the missing columns.
    ValueError
        The model has offset ``'none'``.
    """
    if model.offset not in ("constant", "multivariate"):
        raise ValueError(f"the model has offset={model.offset!r}: it has no zero-point")
    if estimate not in (None, LEARNED):
        raise ValueError(f"estimate must be None or {LEARNED!r}, got {estimate!r}")
    n = _n_rows(table)
    missing = missing_features(model, table)
    if missing:
        raise MissingColumnError(f"the table lacks offset feature column(s) {', '.join(missing)} (the model needs "
                                 f"{', '.join(model.offset_features)})")
    cal = model.zeropoint_calibration
    if estimate is None and cal is not None:
        columns = {name: _float_column(table, name) for name in cal.features}
        return cal.per_star(columns, n)
    if estimate is None:
        warnings.warn(f"the model has no calibrated zero-point: per-star zero-points are the learned offset's "
                      f"({zeropoint_estimate(model)})", ZeropointCalibrationWarning, stacklevel=2)
    options = {} if mc_num is None else {"mc_num": int(mc_num)}
    if model.offset == "constant":
        value, error = model.predict_zeropoint(**options)
        return np.full(n, value.to_value(u.mas)) * u.mas, np.full(n, error.to_value(u.mas)) * u.mas
    if n == 0:
        return np.empty(0) * u.mas, np.empty(0) * u.mas
    if batch_size is not None:
        options["batch_size"] = int(batch_size)
    if shared_masks:
        options["shared_masks"] = True
    return model.predict_zeropoint({name: table[name] for name in model.offset_features}, **options)


def zeropoint_range_flags(model, table):
    """``out_of_range`` per star: an offset feature outside the model's stored training range (``feature_ranges``).

    All False for a constant or no-offset model, and for a model folder that stores no ranges.
    """
    n = _n_rows(table)
    if model.offset != "multivariate" or missing_features(model, table):
        return np.zeros(n, bool)
    return feature_range_flags({name: _float_column(table, name) for name in model.offset_features},
                               getattr(model, "feature_ranges", None))


def _float_column(table, name):
    col = table[name]
    values = np.ma.filled(np.ma.asarray(getattr(col, "value", col)).astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def predict_stars(model, ds, mc_num=None, batch_size=None):
    """Per-star NN results for a dataset, with the quality flags of docs/policy.rst.

    Returns
    -------
    dict
        ``fakemag``, ``fakemag_error``, ``fakemag_model_error`` (arrays; NaN
        for a star flagged ``flag_spectrum`` or ``flag_magnitude``: it cannot
        have an NN distance); ``zeropoint``/``zeropoint_error`` (Quantity, mas;
        per star for a multivariate model, broadcast for a constant one, absent
        for 'none'; :func:`~astronn_gaiacal.pipeline.table_zeropoints`); the boolean flags
        ``flag_spectrum``, ``flag_magnitude``, ``flag_duplicate``,
        ``flag_parallax`` (with Gaia parallaxes: :func:`~astronn_gaiacal.io.quality.parallax_flags`),
        ``flag_luminosity`` (:func:`~astronn_gaiacal.models.luminosity_check.flagged_stars`) and, for a
        multivariate model, ``out_of_range``.

    Raises
    ------
    MissingColumnError
        A multivariate model's feature column is not in ``ds``: the zero-point
        is never dropped silently.
    """
    missing = missing_features(model, ds)
    if missing:
        raise MissingColumnError(f"the dataset lacks offset feature column(s) {', '.join(missing)} (the model needs "
                                 f"{', '.join(model.offset_features)}; without them it has no zero-point)")
    if mc_num is not None:
        model.mc_num = int(mc_num)
    flags = {"flag_spectrum": spectrum_flags(ds["spectra"]), "flag_magnitude": magnitude_flags(ds.corrected_mag()),
             "flag_duplicate": row_duplicates(ds)}
    if "parallax" in ds and "parallax_error" in ds:  # unusable rows are left out of the weighting
        flags["flag_parallax"] = parallax_flags(ds["parallax"], ds["parallax_error"])
    spectra = ds["spectra"]
    if flags["flag_spectrum"].any():  # the network runs on a flat placeholder; those stars get no NN value
        spectra = np.where(flags["flag_spectrum"][:, None], np.ones(1, spectra.dtype), spectra)
    snr = _float_column(ds, "snr") if _has_column(ds, "snr") else None  # for an S/N-dependent uncertainty scale
    fakemag, err = model.predict(spectra, batch_size=batch_size, snr=snr)
    no_distance = flags["flag_spectrum"] | flags["flag_magnitude"]
    out = {
        name: np.where(no_distance, np.nan, values[:, 0])
        for name, values in (("fakemag", fakemag), ("fakemag_error", err["total"]),
                             ("fakemag_model_error", err["model"]), ("fakemag_predictive_error", err["predictive"]))
    }
    cal = model.uncertainty_calibration
    flags["flag_luminosity"] = flagged_stars(None if cal is None else cal.luminosity_check, out["fakemag"])
    if model.offset in ("constant", "multivariate"):
        out["zeropoint"], out["zeropoint_error"] = table_zeropoints(model, ds)
    if model.offset == "multivariate":
        flags["out_of_range"] = zeropoint_range_flags(model, ds)
    out.update(flags)
    return out


def catalogue_for(model, ds, mc_num=100, batch_size=None):
    """The Table-1 catalogue (QTable) of a dataset under a model, with the flag columns of :func:`predict_stars`.

    Gaia columns and stellar labels present in ``ds`` are copied
    (:data:`~astronn_gaiacal.io.catalogue.GAIA_PASSTHROUGH_COLUMNS`,
    :data:`~astronn_gaiacal.io.catalogue.LABEL_PASSTHROUGH_COLUMNS`).
    """
    stars = predict_stars(model, ds, mc_num=mc_num, batch_size=batch_size)
    catalogue = catalogue_from_dataset(
        ds, stars["fakemag"], stars["fakemag_error"], stars["fakemag_model_error"],
        zeropoint=stars.get("zeropoint"), zeropoint_error=stars.get("zeropoint_error"),
        gaia_columns=GAIA_PASSTHROUGH_COLUMNS + LABEL_PASSTHROUGH_COLUMNS,
    )
    for name in ("flag_spectrum", "flag_magnitude", "flag_duplicate", "flag_parallax", "flag_luminosity",
                 "out_of_range"):
        if name in stars:
            catalogue[name] = stars[name]
    # the NN uncertainties come calibrated by the model's scale (models.calibration); the header says which
    catalogue.meta["ERRSCALE"] = (float(model.uncertainty_scale), "NN uncertainties = network's x ERRSCALE")
    catalogue.meta["ERRCALIB"] = (bool(model.uncertainty_calibrated), "ERRSCALE fitted on held-out Gaia parallaxes")
    snr_form = None if model.uncertainty_calibration is None else model.uncertainty_calibration.snr_dependence
    if snr_form is not None:  # the scale at each star's S/N: k^2 = ERRSKINF^2 + (ERRSNOIS / snr)^2
        catalogue.meta["ERRSKINF"] = (float(snr_form["scale_inf"]), "NN error scale at high S/N (S/N form)")
        catalogue.meta["ERRSNOIS"] = (float(snr_form["noise"]), "S/N term: k^2 = ERRSKINF^2 + (ERRSNOIS/snr)^2")
    if model.offset != "none":
        catalogue.meta["ZPESTIM"] = (zeropoint_estimate(model), ZPESTIM_COMMENT)
    verdict = getattr(model, "training_convergence", None)
    if verdict is not None:  # a NOT CONVERGED model's catalogue says so in its own header
        catalogue.meta["CONVERGD"] = (bool(verdict["converged"]), "the model's training converged (docs/policy)")
    return catalogue


def add_zeropoint_columns(model, table, mc_num=None, batch_size=None, shared_masks=False, estimate=None):
    """Add per-star ``zeropoint`` and ``zeropoint_error`` columns (mas) to ``table``, and summarise them.

    Parameters
    ----------
    model, mc_num, batch_size, shared_masks, estimate
        As for :func:`table_zeropoints`.
    table : astropy Table
        Changed in place; a multivariate model also adds the boolean column
        ``out_of_range`` (:func:`zeropoint_range_flags`).

    Returns
    -------
    dict
        ``n_stars``, ``zeropoint_estimate`` (:func:`~astronn_gaiacal.summaries.zeropoint_estimate`),
        ``n_missing_features`` (stars without a zero-point),
        ``n_out_of_range`` (extrapolated stars), ``mean_uas`` and
        ``median_uas`` over the stars with a zero-point inside the training
        ranges (None if there is none), and, for a multivariate model,
        ``feature_ranges`` (the model's) and ``quadratic_trends``: the paper's
        quadratic summary (eqs. 7-9,
        :func:`~astronn_gaiacal.zeropoint.trends.fit_quadratic_trend`) of each
        feature with at least :data:`MIN_TREND_STARS` distinct in-range values,
        its ``valid_range`` the model's training range.

    Raises
    ------
    MissingColumnError
        See :func:`table_zeropoints`.
    """
    zp, zp_err = table_zeropoints(model, table, mc_num=mc_num, batch_size=batch_size, shared_masks=shared_masks,
                                  estimate=estimate)
    table["zeropoint"] = zp.to(u.mas)
    table["zeropoint_error"] = zp_err.to(u.mas)
    has_zp = np.isfinite(zp.value)
    outside = zeropoint_range_flags(model, table)
    if model.offset == "multivariate":
        table["out_of_range"] = outside
    good = has_zp & ~outside
    ranges = getattr(model, "feature_ranges", None) or {}
    summary = {
        "n_stars": len(table), "zeropoint_estimate": zeropoint_estimate(model, estimate),
        "n_missing_features": int((~has_zp).sum()), "n_out_of_range": int(outside.sum()),
        "mean_uas": float(np.mean(zp[good].to_value(u.uas))) if good.any() else None,
        "median_uas": float(np.median(zp[good].to_value(u.uas))) if good.any() else None,
    }
    if model.offset == "multivariate":
        summary["feature_ranges"] = {name: [float(v) for v in ranges[name]] for name in model.offset_features
                                     if name in ranges}
    if model.offset == "multivariate" and good.sum() >= MIN_TREND_STARS:
        trends = {}
        for name in model.offset_features:
            x = _float_column(table, name)
            if np.unique(x[good]).size >= MIN_TREND_STARS:
                trend = fit_quadratic_trend(x[good], zp[good], zp_err[good], feature=name).to_dict()
                if name in ranges:  # valid where the model was trained, not where the input happens to lie
                    trend["valid_range"] = [float(v) for v in ranges[name]]
                trends[name] = trend
        summary["quadratic_trends"] = trends
    return summary
