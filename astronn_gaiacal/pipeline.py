"""From a dataset to a trained model, and from a model to per-star results.

The command line and the demo are thin layers over these functions.
"""
import functools
import os

import numpy as np
from astropy import units as u

from .constants import MAGIC_NUMBER
from .registry import get_model_class


def _missing(x):
    x = np.asarray(x, dtype=float)
    return (x == MAGIC_NUMBER) | ~np.isfinite(x)


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
    spectra_bad = _missing(ds["spectra"]).any(axis=1)
    reasons["spectra with NaN/-9999 pixels"] = int(spectra_bad.sum())
    mag_bad = _missing(ds.corrected_mag())
    reasons["missing magnitude"] = int((mag_bad & ~spectra_bad).sum())
    keep &= ~spectra_bad & ~mag_bad
    if offset == "multivariate":
        for name in features:
            bad = _missing(ds[name]) & keep
            reasons[f"missing {name}"] = int(bad.sum())
            keep &= ~bad
    err_bad = keep & ~_missing(ds["parallax"]) & (_missing(ds["parallax_error"]) | (np.asarray(ds["parallax_error"]) <= 0))
    reasons["parallax without a positive error"] = int(err_bad.sum())
    keep &= ~err_bad
    return keep, {k: v for k, v in reasons.items() if v}


def build_model(model="ApogeeGaiaBCNN", offset=None, features=None, loss="gaia_gaussian_nll", lr=None, **kwargs):
    """Instantiate a registered model class by name with the given options."""
    cls = get_model_class(model) if isinstance(model, str) else model
    options = dict(offset=offset, offset_features=features, loss=loss, **kwargs)
    if lr is not None:
        options["lr"] = lr
    return cls(**options)


def configured_model(model, offset, features, loss="gaia_gaussian_nll", loss_config=None, lr=None, epochs=None,
                     batch_size=None, verbose=0, weight_averaging=None):
    """:func:`build_model` with the training settings applied (a picklable factory via ``functools.partial``)."""
    net = build_model(model, offset, features, loss=loss, loss_config=loss_config, lr=lr)
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
    return args


def train(
    ds,
    model="ApogeeGaiaBCNN",
    offset=None,
    features=None,
    epochs=None,
    batch_size=None,
    loss="gaia_gaussian_nll",
    loss_config=None,
    lr=None,
    seed=0,
    ensemble=1,
    verbose=0,
    progress=True,
    n_jobs=1,
    weight_averaging=None,
    luminosity_from=None,
    freeze_luminosity=True,
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
        Override the model's defaults.
    seed : int
        Seeds weights, dropout, shuffling (member ``k`` of an ensemble uses ``seed + k``).
    ensemble : int
        Number of members; 1 trains a single model.
    n_jobs : int or None
        Ensemble members trained at once in worker processes (``None``: one per
        core; see :mod:`astronn_gaiacal.models.workers`).
    weight_averaging : float, optional
        Average the weights over this fraction of the last epochs
        (:class:`~astronn_gaiacal.nn.callbacks.WeightAveraging`); default the model's (off).
    luminosity_from : str, optional
        Folder of a trained model whose luminosity network every member starts
        from (see :meth:`~astronn_gaiacal.models.GaiaCalBCNNBase.fit`).
    freeze_luminosity : bool
        Keep that network fixed (default) or fine-tune it.

    Returns
    -------
    model : GaiaCalBCNNBase or DeepEnsemble
    excluded : dict
        Stars left out and why (see :func:`trainable_mask`).
    """
    from .models.ensemble import DeepEnsemble
    from .models.workers import TrainJob, train_jobs

    probe = build_model(model, offset, features, loss=loss, loss_config=loss_config, lr=lr)
    keep, excluded = trainable_mask(ds, probe.offset, probe.offset_features)
    if keep.sum() == 0:
        raise ValueError("no star in the dataset is usable for training")
    train_ds = ds.subset(keep) if not keep.all() else ds

    factory = functools.partial(configured_model, model, offset, features, loss=loss, loss_config=loss_config,
                                lr=lr, epochs=epochs, batch_size=batch_size, verbose=verbose,
                                weight_averaging=weight_averaging)
    fit_kwargs = fit_arguments(probe, train_ds)
    if luminosity_from is not None:
        fit_kwargs.update(luminosity_from=os.fspath(luminosity_from), freeze_luminosity=bool(freeze_luminosity))
    if int(ensemble) > 1:
        result = DeepEnsemble.train(factory, n_members=int(ensemble), seed=seed, progress=progress, n_jobs=n_jobs,
                                    **fit_kwargs)
    else:
        result = train_jobs([TrainJob(factory, seed, fit_kwargs, "model")], n_jobs=1)[0]
    return result, excluded


def predict_stars(model, ds, mc_num=None, batch_size=None):
    """Per-star NN results for a dataset.

    Returns
    -------
    dict
        ``fakemag``, ``fakemag_error``, ``fakemag_model_error`` (arrays);
        ``zeropoint``/``zeropoint_error`` (Quantity, mas; per star for a
        multivariate model, broadcast for a constant one, absent for 'none').
    """
    if mc_num is not None:
        model.mc_num = int(mc_num)
    fakemag, err = model.predict(ds["spectra"], batch_size=batch_size)
    out = {
        "fakemag": fakemag[:, 0],
        "fakemag_error": err["total"][:, 0],
        "fakemag_model_error": err["model"][:, 0],
        "fakemag_predictive_error": err["predictive"][:, 0],
    }
    n = len(ds)
    if model.offset == "constant":
        value, error = model.predict_zeropoint()
        out["zeropoint"] = np.full(n, value.to_value(u.mas)) * u.mas
        out["zeropoint_error"] = np.full(n, error.to_value(u.mas)) * u.mas
    elif model.offset == "multivariate":
        missing = [name for name in model.offset_features if name not in ds]
        if not missing:
            zp, zp_err = model.predict_zeropoint({name: ds[name] for name in model.offset_features})
            out["zeropoint"], out["zeropoint_error"] = zp, zp_err
    return out


def catalogue_for(model, ds, mc_num=100, batch_size=None):
    """The Table-1 catalogue (QTable) of a dataset under a model.

    Gaia columns and stellar labels present in ``ds`` are copied
    (:data:`~astronn_gaiacal.io.catalogue.GAIA_PASSTHROUGH_COLUMNS`,
    :data:`~astronn_gaiacal.io.catalogue.LABEL_PASSTHROUGH_COLUMNS`).
    """
    from .io.catalogue import GAIA_PASSTHROUGH_COLUMNS, LABEL_PASSTHROUGH_COLUMNS, catalogue_from_dataset

    stars = predict_stars(model, ds, mc_num=mc_num, batch_size=batch_size)
    return catalogue_from_dataset(
        ds, stars["fakemag"], stars["fakemag_error"], stars["fakemag_model_error"],
        zeropoint=stars.get("zeropoint"), zeropoint_error=stars.get("zeropoint_error"),
        gaia_columns=GAIA_PASSTHROUGH_COLUMNS + LABEL_PASSTHROUGH_COLUMNS,
    )
