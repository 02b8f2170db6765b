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

Every refit, the consistency factor's included, uses one likelihood
(:mod:`~astronn_gaiacal.zeropoint.likelihood`): an ensemble's own training
likelihood in :func:`ensemble_refits`, the Student-t for members trained with
``loss='gaia_student_t_nll'``.

:data:`DEFAULT_ESTIMATE` was chosen by the pre-registered calibration study
(docs/calibration.rst).
"""
import warnings
from dataclasses import replace

import numpy as np
from astropy import units as u
from scipy.stats import norm, t

from .fit import ZeropointFit, consistency_factor, fit_zeropoint
from .likelihood import as_likelihood, likelihood_for_loss

__all__ = ["DEFAULT_ESTIMATE", "ENSEMBLE_REFITS", "ESTIMATES", "REFIT_VARIANTS", "consistency_inflated",
           "ensemble_refits", "refits_from_parallaxes", "FAILED_SCATTER_RATIO", "combine_fits",
           "failed_members", "student_t_factor", "usable_members"]


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


def ensemble_refits(members, spectra, parallax, parallax_error, magnitude, batch_size=None, likelihood=None):
    """Every refit variant of :data:`REFIT_VARIANTS` for the members of an ensemble, one prediction per member.

    Members whose training failed (:func:`~astronn_gaiacal.zeropoint.estimates.usable_members`: a fitted
    scatter several times the best member's) are left out of every combined estimate, with a
    warning, as long as two members remain; otherwise all are kept and the spread between them
    carries the failure into the error.

    ``likelihood`` (default: the members' training likelihood,
    :func:`~astronn_gaiacal.zeropoint.likelihood.likelihood_for_loss` of their
    ``loss_name`` and ``loss_config``) is that of every refit.

    Returns
    -------
    fits : dict
        ``{estimate: (combined ZeropointFit, parts)}`` (:func:`~astronn_gaiacal.zeropoint.estimates.combine_fits`)
        for each of :data:`REFIT_VARIANTS` and ``'refit_consistency_ensemble'`` (whose parts add
        ``'consistency_factor'``), plus ``'members'``: every member's plain refit, and ``'failed'``:
        the indices of the members left out.
    model_parallax : ndarray, shape (K, N)
        Each member's MC-mean model parallaxes (mas), all members.
    """
    model_plx = np.array([m.predict_parallax(spectra, magnitude=magnitude, batch_size=batch_size)[0].to_value(u.mas)
                          for m in members])
    if likelihood is None:
        first = members[0]
        likelihood = likelihood_for_loss(getattr(first, "loss_name", None), getattr(first, "loss_config", None))
    return refits_from_parallaxes(model_plx, parallax, parallax_error, magnitude, likelihood), model_plx


def refits_from_parallaxes(model_plx, parallax, parallax_error, magnitude, likelihood=None):
    """The ``fits`` dict of :func:`ensemble_refits` from the members' model parallaxes ``(K, N)`` (mas).

    ``likelihood``: that of every refit (default Gaussian; :func:`~astronn_gaiacal.zeropoint.likelihood.as_likelihood`).
    """
    model_plx = np.atleast_2d(np.asarray(model_plx, dtype=float))
    likelihood = as_likelihood(likelihood)
    plain = [fit_zeropoint(parallax, parallax_error, p, likelihood=likelihood) for p in model_plx]
    keep = usable_members(plain)
    fits = {"members": plain, "failed": [i for i in range(len(plain)) if not keep[i]]}
    for name, kwargs in REFIT_VARIANTS.items():
        if kwargs:
            per_member = [fit_zeropoint(parallax, parallax_error, p, likelihood=likelihood, **kwargs)
                          for p in model_plx[keep]]
        else:
            per_member = [f for f, k in zip(plain, keep) if k]
        fits[name] = combine_fits(per_member)
    fits["refit_consistency_ensemble"] = consistency_inflated(fits["refit_ensemble"], parallax, parallax_error,
                                                              model_plx[keep], magnitude, likelihood)
    return fits


#: Quantile groups of model luminosity for ``refit_consistency_ensemble``.
CONSISTENCY_GROUPS = 4


def consistency_inflated(combined, parallax, parallax_error, model_parallax, magnitude, likelihood=None):
    """``refit_ensemble`` with its statistical term times the consistency factor of the luminosity groups.

    Parameters
    ----------
    combined : tuple
        ``(ZeropointFit, parts)`` of the ensemble's refits (:func:`~astronn_gaiacal.zeropoint.estimates.combine_fits`).
    parallax, parallax_error : Quantity or array_like [mas]
    model_parallax : ndarray (K, N)
        The members' model parallaxes (mas).
    magnitude : array_like
        Extinction-corrected magnitudes (the luminosity is ``model parallax * 10**(m/5)``).
    likelihood : None, str or Likelihood
        The groups' refit likelihood (default Gaussian).

    Returns
    -------
    (ZeropointFit, parts)
        Same value; error ``sqrt((S * statistical)^2 + ensemble^2)``; ``parts['consistency_factor']`` = S.
    """
    fit, parts = combined
    mean_plx = np.mean(np.atleast_2d(model_parallax), axis=0)
    luminosity = mean_plx * 10 ** (np.asarray(u.Quantity(magnitude).value, dtype=float) / 5)
    factor, _ = consistency_factor(parallax, parallax_error, mean_plx, luminosity, CONSISTENCY_GROUPS, likelihood)
    stat, ens = parts["statistical"].to_value(u.uas), parts["ensemble"].to_value(u.uas)
    error = np.hypot(factor * stat, ens) * u.uas
    return replace(fit, error=error), {**parts, "statistical": factor * stat * u.uas, "consistency_factor": factor}


def student_t_factor(k):
    """Half-width of the 68.27 % Student-t interval with ``k - 1`` degrees of freedom, in units of the standard error.

    The mean of ``k`` members divided by its *estimated* standard error
    (sample sd / sqrt(k)) follows Student's t with ``k - 1`` degrees of freedom,
    not a unit Gaussian.  Multiplying the standard error by this factor gives a
    1-sigma error whose interval covers the truth 68.27 % of the time: 1.84 for
    k = 2, 1.32 for 3, 1.14 for 5, 1.06 for 10, and 1 for k = 1 (no spread term).

    >>> round(student_t_factor(5), 3)
    1.142
    """
    k = int(k)
    return 1.0 if k < 2 else float(t.ppf(norm.cdf(1.0), k - 1))


#: An ensemble member whose fitted fractional scatter is this many times the ensemble's smallest has failed to train.
FAILED_SCATTER_RATIO = 3.0


def failed_members(fits, ratio=FAILED_SCATTER_RATIO):
    """Which members of an ensemble failed to learn luminosities, judged by their fits on the Gaia parallaxes.

    A member's fitted fractional scatter tau (``scatter`` of :class:`~astronn_gaiacal.zeropoint.fit.ZeropointFit`) is
    its distance precision on the stars it was fitted to.  Members trained the
    same way reach similar tau (within a factor of 2 in the calibration
    studies, docs/calibration.rst); a training that diverged or collapsed has
    tau several times larger and a zero-point that can be off by hundreds of
    uas.  Such a member is flagged when its tau exceeds ``ratio`` times the
    smallest tau of the ensemble.

    Parameters
    ----------
    fits : sequence of ZeropointFit
        The members' fits on the same stars (:func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint` with the scatter fitted).
    ratio : float
        Threshold on tau / min(tau) (> 1).

    Returns
    -------
    ndarray of bool, shape (K,)
        True for a failed member.

    Examples
    --------
    >>> import astropy.units as u
    >>> fits = [ZeropointFit(-52 * u.uas, 1 * u.uas, tau, 0.002, 3000) for tau in (0.07, 0.09, 0.54)]
    >>> failed_members(fits).tolist()
    [False, False, True]
    """
    fits = list(fits)
    if not fits:
        raise ValueError("fits is empty")
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}")
    tau = np.array([f.scatter for f in fits], dtype=float)
    if not np.all(np.isfinite(tau)) or np.any(tau <= 0):
        raise ValueError(f"every member needs a fitted scatter > 0, got {tau.tolist()}")
    return tau > ratio * tau.min()


def usable_members(fits):
    """Which ensemble members to combine: all but the failed ones (:func:`failed_members`).

    A ``RuntimeWarning`` names each member left out.  When fewer than two
    members would remain, all are kept (with a warning): the spread between
    them then carries the failure into the error.

    Parameters
    ----------
    fits : sequence of ZeropointFit

    Returns
    -------
    ndarray of bool, shape (K,)
        True for a member to combine.
    """
    failed = failed_members(fits)
    if not failed.any():
        return ~failed
    tau = ", ".join(f"member {i}: {f.scatter:.3f}" for i, f in enumerate(fits))
    if (~failed).sum() < 2:
        warnings.warn(f"fewer than two ensemble members trained well (fractional scatter {tau}); all are kept, "
                      "so the spread between them dominates the error", RuntimeWarning, stacklevel=3)
        return np.ones(len(fits), bool)
    warnings.warn(f"ensemble member(s) {np.flatnonzero(failed).tolist()} failed to train (fractional scatter over "
                  f"{FAILED_SCATTER_RATIO:g}x the best member's; {tau}) and are left out of the zero-point",
                  RuntimeWarning, stacklevel=3)
    return ~failed


def combine_fits(fits):
    """Combine the fits of ensemble members (independent trainings on the same stars).

    The value is the members' mean.  Its error is the members' mean statistical
    error (the same stars: it does not average down) in quadrature with the
    standard error of the mean of the members' values, ``sd / sqrt(K)`` (the
    training randomness, which does), scaled by :func:`student_t_factor` because
    that sd is itself estimated from only ``K`` values.

    Returns
    -------
    ZeropointFit, dict
        The combined fit and ``{'statistical': ..., 'ensemble': ..., 'member_spread': ...}``
        (Quantities in uas): the two terms of the error (``ensemble`` includes
        the Student-t factor) and the members' standard deviation.
    """
    fits = list(fits)
    if not fits:
        raise ValueError("fits is empty")
    k = len(fits)
    values = np.array([f.value.to_value(u.uas) for f in fits])
    stat_var = np.mean([f.error.to_value(u.uas) ** 2 for f in fits])
    spread = values.std(ddof=1) if k > 1 else 0.0
    ensemble = student_t_factor(k) * spread / np.sqrt(k)
    scat = np.array([f.scatter for f in fits])
    scales = np.array([f.scale for f in fits])
    scale_err = np.sqrt(np.mean([f.scale_error**2 for f in fits])
                        + (student_t_factor(k) * scales.std(ddof=1) / np.sqrt(k) if k > 1 else 0.0) ** 2)
    combined = ZeropointFit(values.mean() * u.uas, np.sqrt(stat_var + ensemble**2) * u.uas, float(scat.mean()),
                            float(scat.std(ddof=1)) if k > 1 else fits[0].scatter_error, fits[0].n_stars,
                            float(scales.mean()), float(scale_err), float(np.mean([f.curvature for f in fits])),
                            float(np.sqrt(np.mean([f.curvature_error**2 for f in fits]))), fits[0].likelihood)
    return combined, {"statistical": np.sqrt(stat_var) * u.uas, "ensemble": ensemble * u.uas,
                      "member_spread": spread * u.uas}
