"""JSON-ready summaries of trained models and their zero-points: what ``train``, ``zeropoint`` and ``predict`` print.

Every number comes from the models' own methods; these functions name the
numbers (the calibration study's estimate names) and say which estimate is the
reported one.
"""
from astropy import units as u

from .constants import RED_CLUMP_ABSMAG_KS, RED_CLUMP_ABSMAG_KS_SPREAD, ZEROPOINT_CONVENTION
from .models import DeepEnsemble
from .models.protocol import LEARNED
from .zeropoint.estimates import DEFAULT_ESTIMATE
from .zeropoint.trends import CONSTANT_NEEDS_NO_ANCHOR, red_clump_anchors

__all__ = ["SINGLE_NETWORK_NOTE", "convergence_summary", "model_summary", "refit_report", "uncertainty_summary",
           "zeropoint_estimate", "zeropoint_summary"]


def zeropoint_estimate(model, estimate=None):
    """Name of the estimate behind a model's reported zero-points (per-star values, :func:`model_summary`).

    The calibrated one's (e.g. ``'refit_ensemble'``, ``'trend_refit'``) unless
    ``estimate='learned'`` or the model has none; the learned offset is
    ``'ensemble'`` or ``'mc'`` (a constant ensemble or single model, the
    calibration study's names) or ``'network'`` (a multivariate offset).
    """
    if estimate is None and model.zeropoint_calibration is not None:
        return model.zeropoint_calibration.estimate
    if model.offset == "multivariate":
        return "network"
    return "ensemble" if model.n_members > 1 else "mc"


def uncertainty_summary(model):
    """JSON-ready uncertainty calibration of a model (:mod:`~astronn_gaiacal.models.calibration`).

    Returns
    -------
    dict
        ``uncertainty_scale`` (the factor applied to the network's uncertainties),
        ``uncertainty_calibrated`` (False: scale 1, the network's own) and
        ``uncertainty_calibration`` (the fit's numbers, or ``None``).
    """
    cal = model.uncertainty_calibration
    return {"uncertainty_scale": float(model.uncertainty_scale), "uncertainty_calibrated": cal is not None,
            "uncertainty_calibration": None if cal is None else cal.to_dict()}



#: What a single network's zero-point error leaves out (docs/policy.rst has the measurement).
SINGLE_NETWORK_NOTE = ("one network: the error is statistical only, without the network's own systematic error "
                       "(an ensemble's member spread, several uas at a few thousand stars); train an ensemble "
                       "(--ensemble 2 or more; the recipe's default)")


def convergence_summary(model):
    """``training_converged`` (bool, or None when not known) and ``training_convergence`` (the verdict,
    :mod:`~astronn_gaiacal.models.convergence`) of a model or ensemble."""
    verdict = getattr(model, "training_convergence", None)
    return {"training_converged": None if verdict is None else bool(verdict["converged"]),
            "training_convergence": verdict}


def model_summary(model, folder=None):
    """JSON-ready description of a trained model or ensemble, with its learned zero-point if constant.

    Parameters
    ----------
    model : GaiaCalBCNNBase or DeepEnsemble
    folder : str, optional
        Where it is saved (recorded as ``folder``).

    Returns
    -------
    dict
        ``model_class``, ``folder``, ``offset``, ``offset_features``,
        ``ensemble_members``, ``loss``, ``zeropoint_convention``, the keys of
        :func:`uncertainty_summary`; ``training`` (``ensemble``, ``epochs``,
        ``lr``, ``weight_averaging``, ``training_noise_snr``: the settings); ``final_loss``
        and ``epochs`` when the training history is there; ``training_converged``
        (None: not known) and ``training_convergence``
        (:mod:`~astronn_gaiacal.models.convergence`);
        ``zeropoint_calibrated`` (whether the model carries a calibrated
        zero-point) and ``zeropoint_calibration`` (its numbers, or None).
        For a constant model ``zeropoint_uas``, ``zeropoint_err_uas`` and
        ``zeropoint_estimate``: the calibrated zero-point (its estimate's name,
        :func:`zeropoint_estimate`), or the learned one if there is none; and
        always the learned offset as ``learned_zeropoint_uas``,
        ``learned_zeropoint_err_uas``, ``learned_zeropoint_estimate`` (``'mc'``
        for a single model; ``'ensemble'``, with the parts
        ``zeropoint_mc_err_uas`` and ``zeropoint_ensemble_err_uas``, for an ensemble).
        A single model's also gets ``zeropoint_note`` (:data:`SINGLE_NETWORK_NOTE`).
    """
    ensemble = isinstance(model, DeepEnsemble)
    first = model.members[0] if ensemble else model
    summary = {
        "model_class": type(first).__name__,
        "folder": str(folder) if folder else None,
        "offset": first.offset,
        "offset_features": first.offset_features if first.offset == "multivariate" else [],
        "ensemble_members": len(model.members) if ensemble else 1,
        "loss": first.loss_name,
        "zeropoint_convention": ZEROPOINT_CONVENTION,
        **uncertainty_summary(model),
    }
    summary["training"] = {"ensemble": len(model.members) if ensemble else 1, "epochs": int(first.max_epochs),
                           "lr": float(first.lr), "weight_averaging": float(first.weight_averaging),
                           "training_noise_snr": getattr(first, "training_noise_snr", None)}
    summary.update(convergence_summary(model))
    history = getattr(first, "history", None)
    if history is not None and getattr(history, "history", None):
        summary["final_loss"] = float(history.history["loss"][-1])
        summary["epochs"] = len(history.history["loss"])
    cal = model.zeropoint_calibration
    if first.offset != "none":
        summary["zeropoint_calibrated"] = cal is not None
        summary["zeropoint_calibration"] = None if cal is None else cal.summary()
    if first.offset == "constant":
        value, error, parts = model.zeropoint(components=True, estimate=LEARNED)
        if ensemble:
            summary["zeropoint_mc_err_uas"] = float(parts["mc"].to_value(u.uas))
            summary["zeropoint_ensemble_err_uas"] = float(parts["ensemble"].to_value(u.uas))
        summary["learned_zeropoint_uas"] = float(value.to_value(u.uas))
        summary["learned_zeropoint_err_uas"] = float(error.to_value(u.uas))
        summary["learned_zeropoint_estimate"] = zeropoint_estimate(model, LEARNED)
        if cal is not None:
            value, error = cal.fit.value, cal.fit.error
        summary["zeropoint_uas"] = float(value.to_value(u.uas))
        summary["zeropoint_err_uas"] = float(error.to_value(u.uas))
        summary["zeropoint_estimate"] = zeropoint_estimate(model)
        if not ensemble:
            summary["zeropoint_note"] = SINGLE_NETWORK_NOTE
    return summary



def refit_report(model, ds, source=None, red_clump=None):
    """Refit of a model's zero-point on a dataset's Gaia parallaxes, its network(s) held fixed.

    Parameters
    ----------
    model : GaiaCalBCNNBase or DeepEnsemble
        Constant offset: a single model counts as a one-member ensemble and the
        estimate is :data:`~astronn_gaiacal.zeropoint.estimates.DEFAULT_ESTIMATE`.
        Multivariate offset: a quadratic in each feature with a free luminosity
        scale (:meth:`~astronn_gaiacal.models.ZeropointModel.refit_zeropoint_trend`;
        an ensemble's mean model parallaxes).
    ds : Dataset
        ``spectra``, ``mag`` (``mag_ext``), ``parallax``, ``parallax_error`` and,
        multivariate, the feature columns.
    source : str, optional
        Recorded as ``data`` (e.g. the dataset's file name).
    red_clump : str, optional
        Multivariate only: a boolean column of ``ds`` marking red-clump stars, whose known
        luminosity pins the additive fakemag term of the trend refit
        (:func:`~astronn_gaiacal.zeropoint.trends.red_clump_anchors`; docs/calibration.rst,
        "The partner: an additive luminosity error").

    Returns
    -------
    dict
        Constant: ``zeropoint_uas``, ``zeropoint_err_uas``, ``zeropoint_estimate``
        and ``refit`` (the fit's numbers, ``members``, ``statistical_error_uas``,
        ``ensemble_error_uas``, ``member_spread_uas``, ``consistency_factor``,
        ``failed_members``, ``data``).  Multivariate: ``refit_trend`` (the
        trend fit's numbers and ``data``).

    Raises
    ------
    ValueError
        The model has offset ``'none'``, or ``red_clump`` is given for a constant model.
    """
    if model.offset == "multivariate":
        anchors, extra = {}, {}
        if red_clump is not None:
            fakemag, error = red_clump_anchors(ds[red_clump])
            anchors = dict(anchor_fakemag=fakemag, anchor_fakemag_error=error)
            extra = {"anchors": {"column": red_clump, "red_clump_absmag_ks": RED_CLUMP_ABSMAG_KS,
                                 "red_clump_spread_mag": RED_CLUMP_ABSMAG_KS_SPREAD}}
        fit = model.refit_zeropoint_trend(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                          {f: ds[f] for f in model.offset_features}, magnitude=ds.corrected_mag(),
                                          **anchors)
        return {"refit_trend": {**fit.to_dict(), "data": source, **extra}}
    if red_clump is not None:
        raise ValueError(CONSTANT_NEEDS_NO_ANCHOR)
    if model.offset != "constant":
        raise ValueError(f"the model has offset={model.offset!r}: it has no zero-point to refit")
    ensemble = DeepEnsemble.of(model)
    fit, parts = ensemble.refit_zeropoint(ds["spectra"], ds["parallax"], ds["parallax_error"],
                                          magnitude=ds.corrected_mag(), components=True)
    numbers = fit.to_dict()
    return {
        "zeropoint_uas": numbers["value_uas"], "zeropoint_err_uas": numbers["error_uas"],
        "zeropoint_estimate": DEFAULT_ESTIMATE,
        "refit": {**numbers, "data": source, "members": len(ensemble),
                  "statistical_error_uas": float(parts["statistical"].to_value(u.uas)),
                  "ensemble_error_uas": float(parts["ensemble"].to_value(u.uas)),
                  "member_spread_uas": float(parts["member_spread"].to_value(u.uas)),
                  "consistency_factor": float(parts.get("consistency_factor", 1.0)),
                  "failed_members": parts["failed"]},
    }



def zeropoint_summary(model, folder=None, refit=None, refit_source=None, red_clump=None):
    """:func:`model_summary`, and with ``refit`` the :func:`refit_report` on that dataset (``red_clump``: its anchors).

    With a refit of a constant model the refit on that dataset becomes the
    reported ``zeropoint_uas``/``zeropoint_err_uas``/``zeropoint_estimate``
    (the stored calibration stays under ``zeropoint_calibration``, the learned
    offset under ``learned_zeropoint_uas``).

    Returns
    -------
    dict
    """
    summary = model_summary(model, folder)
    if refit is not None:
        summary.update(refit_report(model, refit, source=refit_source, red_clump=red_clump))
    return summary
