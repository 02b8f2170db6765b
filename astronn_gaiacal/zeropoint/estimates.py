"""Named zero-point estimates of an ensemble, and the one reported by default.

An ensemble's members are each refitted with their luminosity network held fixed
(:func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`) and the refits combined.
The estimates differ in what the combined error includes:

``refit_ensemble``
    the members' mean refit, with the standard error of that mean in
    quadrature with the mean statistical error;
``refit_scaled_ensemble``
    each member's refit also fits a common luminosity scale;
``refit_curved_ensemble``
    and a term quadratic in the model parallax;
``refit_consistency_ensemble``
    ``refit_ensemble`` with the statistical term multiplied by the
    :func:`~astronn_gaiacal.zeropoint.fit.consistency_factor` of four
    quantile groups of model luminosity.

:data:`DEFAULT_ESTIMATE` was chosen by the pre-registered calibration study
(docs/calibration.rst).
"""
from dataclasses import replace

import numpy as np
from astropy import units as u

from .fit import combine_fits, consistency_factor, fit_zeropoint, usable_members

__all__ = ["DEFAULT_ESTIMATE", "ENSEMBLE_REFITS", "ESTIMATES", "REFIT_VARIANTS", "consistency_inflated",
           "ensemble_refits", "refits_from_parallaxes"]


#: Zero-point estimates compared by the study (see the module docstring).
ESTIMATES = ("mc", "ensemble", "refit", "refit_ensemble", "refit_scaled_ensemble", "refit_curved_ensemble",
             "refit_consistency_ensemble")
#: The refit variants: estimate name -> keyword arguments of :func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`.
REFIT_VARIANTS = {"refit_ensemble": {}, "refit_scaled_ensemble": {"fit_scale": True},
                  "refit_curved_ensemble": {"fit_curvature": True}}
#: The estimates that combine the refits of an ensemble's members (:func:`refits_from_parallaxes`).
ENSEMBLE_REFITS = (*REFIT_VARIANTS, "refit_consistency_ensemble")
#: The estimate reported by default (the demo's headline value); chosen by the pre-registered
#: study of docs/calibration.rst.
DEFAULT_ESTIMATE = "refit_consistency_ensemble"


def ensemble_refits(members, spectra, parallax, parallax_error, magnitude, batch_size=None):
    """Every refit variant of :data:`REFIT_VARIANTS` for the members of an ensemble, one prediction per member.

    Members whose training failed (:func:`~astronn_gaiacal.zeropoint.fit.usable_members`: a fitted
    scatter several times the best member's) are left out of every combined estimate, with a
    warning, as long as two members remain; otherwise all are kept and the spread between them
    carries the failure into the error.

    Returns
    -------
    fits : dict
        ``{estimate: (combined ZeropointFit, parts)}`` (:func:`~astronn_gaiacal.zeropoint.fit.combine_fits`)
        for each of :data:`REFIT_VARIANTS` and ``'refit_consistency_ensemble'`` (whose parts add
        ``'consistency_factor'``), plus ``'members'``: every member's plain refit, and ``'failed'``:
        the indices of the members left out.
    model_parallax : ndarray, shape (K, N)
        Each member's MC-mean model parallaxes (mas), all members.
    """
    model_plx = np.array([m.predict_parallax(spectra, magnitude=magnitude, batch_size=batch_size)[0].to_value(u.mas)
                          for m in members])
    return refits_from_parallaxes(model_plx, parallax, parallax_error, magnitude), model_plx


def refits_from_parallaxes(model_plx, parallax, parallax_error, magnitude):
    """The ``fits`` dict of :func:`ensemble_refits` from the members' model parallaxes ``(K, N)`` (mas)."""
    model_plx = np.atleast_2d(np.asarray(model_plx, dtype=float))
    plain = [fit_zeropoint(parallax, parallax_error, p) for p in model_plx]
    keep = usable_members(plain)
    fits = {"members": plain, "failed": [i for i in range(len(plain)) if not keep[i]]}
    for name, kwargs in REFIT_VARIANTS.items():
        if kwargs:
            per_member = [fit_zeropoint(parallax, parallax_error, p, **kwargs) for p in model_plx[keep]]
        else:
            per_member = [f for f, k in zip(plain, keep) if k]
        fits[name] = combine_fits(per_member)
    fits["refit_consistency_ensemble"] = consistency_inflated(fits["refit_ensemble"], parallax, parallax_error,
                                                              model_plx[keep], magnitude)
    return fits


#: Quantile groups of model luminosity for ``refit_consistency_ensemble``.
CONSISTENCY_GROUPS = 4


def consistency_inflated(combined, parallax, parallax_error, model_parallax, magnitude):
    """``refit_ensemble`` with its statistical term times the consistency factor of the luminosity groups.

    Parameters
    ----------
    combined : tuple
        ``(ZeropointFit, parts)`` of the ensemble's refits (:func:`~astronn_gaiacal.zeropoint.fit.combine_fits`).
    parallax, parallax_error : Quantity or array_like [mas]
    model_parallax : ndarray (K, N)
        The members' model parallaxes (mas).
    magnitude : array_like
        Extinction-corrected magnitudes (the luminosity is ``model parallax * 10**(m/5)``).

    Returns
    -------
    (ZeropointFit, parts)
        Same value; error ``sqrt((S * statistical)^2 + ensemble^2)``; ``parts['consistency_factor']`` = S.
    """
    fit, parts = combined
    mean_plx = np.mean(np.atleast_2d(model_parallax), axis=0)
    luminosity = mean_plx * 10 ** (np.asarray(u.Quantity(magnitude).value, dtype=float) / 5)
    factor, _ = consistency_factor(parallax, parallax_error, mean_plx, luminosity, CONSISTENCY_GROUPS)
    stat, ens = parts["statistical"].to_value(u.uas), parts["ensemble"].to_value(u.uas)
    error = np.hypot(factor * stat, ens) * u.uas
    return replace(fit, error=error), {**parts, "statistical": factor * stat * u.uas, "consistency_factor": factor}
