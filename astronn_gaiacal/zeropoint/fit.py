r"""Maximum-likelihood zero-point with the luminosity network held fixed.

During joint training every prediction carries dropout noise, and the
offset is learned against those noisy, shrunken parallaxes.  In a
magnitude-limited sample the luminosity residual correlates with parallax
(Malmquist), so the jointly learned constant absorbs part of it: on the
built-in mock survey the constant model lands tens of uas from the injected
value at demo size (docs/calibration.rst).

This module re-estimates the constant zero-point from the *deterministic*
model parallaxes (the MC-dropout mean)
:math:`\hat\varpi_i = L_i 10^{-m_i/5}` by maximising

.. math::

    \ln\mathcal{L}(\varpi_0, \tau) = -\frac12\sum_i\left[
        \frac{(\varpi_i - \hat\varpi_i - \varpi_0)^2}{v_i} + \ln v_i\right],
    \qquad v_i = \sigma_{\varpi,i}^2 + \tau^2\hat\varpi_i^2,

with :math:`\tau` the fractional scatter of the model parallaxes, fitted
(or fixed).  For fixed :math:`\tau` the best :math:`\varpi_0` is the inverse-
variance weighted mean of :math:`\varpi_i - \hat\varpi_i`; :math:`\tau` is
found by a bounded 1-D search of the profile likelihood.  Errors come from
the observed information (the inverse Hessian of both parameters).

``likelihood='student_t'`` fits the robust Student-t of
``loss='gaia_student_t_nll'`` instead, the same way
(:mod:`~astronn_gaiacal.zeropoint.likelihood`); a model's refits use the
likelihood it was trained with.

Examples
--------
>>> import numpy as np, astropy.units as u
>>> from astronn_gaiacal.zeropoint.fit import fit_zeropoint
>>> rng = np.random.default_rng(1)
>>> model = rng.uniform(0.2, 3.0, 20000)          # conditional-mean predictions (mas)
>>> true = model * (1 + rng.normal(0, 0.05, model.size))  # 5 % scatter about them
>>> gaia = true - 0.0523 + rng.normal(0, 0.04, model.size)
>>> fit = fit_zeropoint(gaia * u.mas, 0.04 * u.mas, model * u.mas)
>>> bool(abs(fit.value.to_value(u.uas) + 52.3) < 3 * fit.error.to_value(u.uas))
True
>>> round(fit.scatter, 2)
0.05
"""
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from scipy.optimize import minimize_scalar

from ..conversions import mas_values as parallax_values
from ..constants import is_missing
from .likelihood import as_likelihood, student_t_profile_fit

__all__ = ["SCATTER_BOUNDS", "ZeropointFit", "checked_stars", "consistency_factor", "fit_zeropoint", "profile_fit"]

#: Search range of the fractional scatter tau.
SCATTER_BOUNDS = (1e-4, 3.0)


@dataclass(frozen=True)
class ZeropointFit:
    """Result of :func:`fit_zeropoint`.

    Attributes
    ----------
    value, error : Quantity [uas]
        Zero-point (``parallax_gaia = parallax_true + value``) and its 1-sigma
        statistical error.
    scatter, scatter_error : float
        Fitted fractional scatter tau of the model parallaxes (``scatter_error``
        is 0 when tau was fixed).
    n_stars : int
    scale, scale_error : float
        Fitted luminosity scale (``parallax = scale * model + zero-point``);
        1 and 0 when the scale was not fitted.
    curvature, curvature_error : float
        Fitted ``model^2`` coefficient (1/mas) with ``fit_curvature``; else 0.
    likelihood : str
        The likelihood fitted: ``'gaussian'`` or ``'student_t(nu=...)'``
        (:mod:`~astronn_gaiacal.zeropoint.likelihood`).
    """

    value: u.Quantity
    error: u.Quantity
    scatter: float
    scatter_error: float
    n_stars: int
    scale: float = 1.0
    scale_error: float = 0.0
    curvature: float = 0.0
    curvature_error: float = 0.0
    likelihood: str = "gaussian"

    def to_dict(self):
        """Plain numbers for JSON: ``value_uas``, ``error_uas``, ``scatter``, ``scatter_error``, ``n_stars``, ``scale``,
        ``scale_error``, ``curvature``, ``curvature_error`` and ``likelihood`` (its name)."""
        return {
            "value_uas": float(self.value.to_value(u.uas)),
            "error_uas": float(self.error.to_value(u.uas)),
            "scatter": float(self.scatter),
            "scatter_error": float(self.scatter_error),
            "n_stars": int(self.n_stars),
            "scale": float(self.scale),
            "scale_error": float(self.scale_error),
            "curvature": float(self.curvature),
            "curvature_error": float(self.curvature_error),
            "likelihood": str(self.likelihood),
        }


def _mas(x, name, n=None):
    """Values in mas (plain numbers are mas), one per star; NaN/-9999 refused."""
    arr = parallax_values(x, name, n, scalar_ok=n is not None)
    bad = is_missing(arr)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN/-9999 value(s) (first at index {int(np.argmax(bad))}); "
                         "select the stars with a Gaia parallax first")
    return arr


def _information(d, design, p, sigma, tau):
    """Observed information of (linear coefficients of ``design``, ln tau) at the optimum (analytic).

    ``d`` are the residuals, ``p`` the model parallaxes that set the scatter term tau * p.
    """
    v = sigma**2 + (tau * p) ** 2
    a = 2.0 * (tau * p) ** 2  # dv / d ln tau
    h_bb = design.T @ (design / v[:, None])
    h_bt = design.T @ (d * a / v**2)
    h_tt = 0.5 * np.sum(d**2 * (2 * a**2 / v**3 - 2 * a / v**2) + 2 * a / v - a**2 / v**2)
    return np.block([[h_bb, h_bt[:, None]], [h_bt[None, :], np.array([[h_tt]])]])


def _hessian(r, p, sigma, c, tau):
    """Observed information of (zero-point, ln tau) for the constant fit; ``r`` = Gaia - model parallaxes."""
    return _information(r - c, np.ones((r.size, 1)), p, sigma, tau)


def profile_fit(target, design, model, err, scatter, likelihood=None):
    """ML of ``target = design @ coef`` with variances ``err^2 + (tau model)^2``, tau profiled.

    Gaussian by default; ``likelihood`` (:func:`~astronn_gaiacal.zeropoint.likelihood.as_likelihood`)
    may name the Student-t, fitted from the Gaussian solution
    (:func:`~astronn_gaiacal.zeropoint.likelihood.student_t_profile_fit`).
    Returns the coefficients, their covariance, tau and its error (0 when fixed or at a bound).
    """
    likelihood = as_likelihood(likelihood)
    if not likelihood.gaussian:
        start = profile_fit(target, design, model, err, scatter)[0]
        return student_t_profile_fit(target, design, model, err, scatter, likelihood.nu, SCATTER_BOUNDS, start)

    def best(tau):
        w = 1.0 / (err**2 + (tau * model) ** 2)
        normal = design.T @ (w[:, None] * design)
        return np.linalg.solve(normal, design.T @ (w * target)), w, normal

    if scatter is not None:
        tau = float(scatter)
        if not np.isfinite(tau) or tau < 0:
            raise ValueError(f"scatter must be a finite number >= 0, got {scatter!r}")
        coef, _, normal = best(tau)
        return coef, np.linalg.inv(normal), tau, 0.0

    def profile_nll(log_tau):
        coef, w, _ = best(np.exp(log_tau))
        return 0.5 * np.sum(w * (target - design @ coef) ** 2 - np.log(w))

    lo, hi = np.log(SCATTER_BOUNDS)
    sol = minimize_scalar(profile_nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    tau = float(np.exp(sol.x))
    coef, _, normal = best(tau)
    try:
        cov = np.linalg.inv(_information(target - design @ coef, design, model, err, tau))
    except np.linalg.LinAlgError:
        cov = None
    if cov is None or not np.all(np.isfinite(np.diag(cov))) or np.any(np.diag(cov) <= 0):
        return coef, np.linalg.inv(normal), tau, 0.0  # tau at its bound: the fixed-tau errors
    return coef[:], cov[:-1, :-1], tau, tau * np.sqrt(cov[-1, -1])


def checked_stars(parallax, parallax_error, model_parallax, n_min, what):
    """Parallaxes, errors and model parallaxes in mas, checked: no missing value, errors and model > 0, ``n_min`` stars."""
    plx = _mas(parallax, "parallax")
    n = plx.size
    if n < n_min:
        raise ValueError(f"parallax needs at least {n_min} stars to fit {what}, got {n}")
    err = _mas(parallax_error, "parallax_error", n)
    model = _mas(model_parallax, "model_parallax", n)
    if np.any(err <= 0):
        raise ValueError("parallax_error must be > 0 for every star")
    if np.any(model <= 0):
        raise ValueError("model_parallax must be > 0 for every star (L 10^(-m/5) of a positive luminosity)")
    return plx, err, model


def fit_zeropoint(parallax, parallax_error, model_parallax, scatter=None, fit_scale=False, fit_curvature=False,
                  likelihood=None):
    """Fit a constant zero-point between Gaia and model parallaxes.

    Parameters
    ----------
    parallax, parallax_error : Quantity or array_like [mas]
        Gaia catalogue parallaxes (not zero-point corrected; negative values
        are valid data) and their errors; ``parallax_error`` may be a scalar.
    model_parallax : Quantity or array_like [mas]
        Parallaxes from the luminosity model alone, :math:`L\\,10^{-m/5}` (> 0).
    scatter : float, optional
        Fix the fractional scatter tau instead of fitting it.
    fit_scale : bool
        Also fit a luminosity scale: ``parallax = scale * model_parallax +
        zero-point`` (the zero-point is then the intercept at zero parallax,
        and a common fractional error of the network's luminosities, which a
        constant fit would turn into a zero-point bias, goes into ``scale``).
        The error of the zero-point grows by the correlation of the two.
    fit_curvature : bool
        Fit ``parallax = zero-point + scale * model + curvature * model^2``
        (implies a free scale): a luminosity error that changes smoothly with
        parallax, as a network's error on its most luminous giants does, stays
        out of the intercept.  Larger errors again.
    likelihood : None, str or Likelihood
        ``None``/``'gaussian'`` (default) or ``'student_t'`` (or a
        :class:`~astronn_gaiacal.zeropoint.likelihood.Likelihood` with its
        ``nu``): the robust likelihood of ``loss='gaia_student_t_nll'``, whose
        tails keep outliers (binaries, mis-matches) out of the zero-point;
        ``scatter`` is then the fractional scale of its core.

    Returns
    -------
    ZeropointFit

    Raises
    ------
    ValueError
        Shapes that differ, NaN/-9999 values, non-positive errors or model
        parallaxes, fewer than 3 (4 with ``fit_scale``, 5 with ``fit_curvature``) stars.
    astropy.units.UnitTypeError
        A Quantity that is not an angle.

    Examples
    --------
    A network whose luminosities are all 2 % too high biases a constant fit by
    about 2 % of the weighted mean parallax; the intercept of the scaled fit is not:

    >>> import numpy as np, astropy.units as u
    >>> rng = np.random.default_rng(2)
    >>> true = rng.uniform(0.2, 3.0, 20000)
    >>> gaia = true - 0.0523 + rng.normal(0, 0.04, true.size)
    >>> model = 1.02 * true                      # model parallax = L 10^(-m/5), L 2 % high
    >>> const = fit_zeropoint(gaia, 0.04, model, scatter=0.0)
    >>> scaled = fit_zeropoint(gaia, 0.04, model, scatter=0.0, fit_scale=True)
    >>> bool(const.value < -70 * u.uas)
    True
    >>> bool(abs(scaled.value.to_value(u.uas) + 52.3) < 3 * scaled.error.to_value(u.uas)), round(1 / scaled.scale, 3)
    (True, 1.02)
    """
    terms = 2 if fit_curvature else (1 if fit_scale else 0)  # luminosity terms fitted besides the zero-point
    what = ("a zero-point", "a zero-point and a scale", "a zero-point, a scale and a curvature")[terms]
    plx, err, model = checked_stars(parallax, parallax_error, model_parallax, 3 + terms, what + " and a scatter")
    n = plx.size
    design = np.stack([model**k for k in range(terms + 1)], axis=1)
    likelihood = as_likelihood(likelihood)
    coef, cov, tau, tau_err = profile_fit(plx if terms else plx - model, design, model, err, scatter, likelihood)
    scale, scale_err = (coef[1], np.sqrt(cov[1, 1])) if terms else (1.0, 0.0)
    curv, curv_err = (coef[2], np.sqrt(cov[2, 2])) if terms == 2 else (0.0, 0.0)
    return ZeropointFit(coef[0] * 1000 * u.uas, 1000 * np.sqrt(cov[0, 0]) * u.uas, tau, tau_err, n,
                        float(scale), float(scale_err), float(curv), float(curv_err), str(likelihood))


def consistency_factor(parallax, parallax_error, model_parallax, groups, n_groups=4, likelihood=None):
    r"""How much the zero-points of subsets of stars disagree beyond their errors (a PDG scale factor).

    The stars are split into ``n_groups`` quantiles of ``groups`` (e.g. the
    model luminosity, a proxy for the stellar population).  If the model
    parallaxes were right, one constant would fit every group; a luminosity
    error that differs between populations moves the groups' zero-points
    apart.  With :math:`\varpi_{0,g} \pm s_g` the constant refit of group
    :math:`g` (:func:`fit_zeropoint`) and :math:`\bar\varpi_0` their
    inverse-variance mean,

    .. math::

        S = \sqrt{\max\left(1, \frac{1}{G-1}\sum_g
            \frac{(\varpi_{0,g} - \bar\varpi_0)^2}{s_g^2}\right)},

    the factor by which the Particle Data Group inflates the error of an
    average of inconsistent measurements.

    Parameters
    ----------
    parallax, parallax_error, model_parallax : Quantity or array_like [mas]
        As for :func:`fit_zeropoint`.
    groups : array_like
        One value per star that orders the stars into groups.
    n_groups : int
        Number of quantile groups (>= 2).
    likelihood : None, str or Likelihood
        The groups' refit likelihood (:func:`fit_zeropoint`).

    Returns
    -------
    factor : float
        :math:`S \ge 1`.
    fits : list of ZeropointFit
        The groups' refits, lowest ``groups`` first.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> model = rng.uniform(0.2, 3.0, 8000)
    >>> gaia = model - 0.05 + rng.normal(0, 0.03, model.size)
    >>> round(consistency_factor(gaia, 0.03, model, model)[0], 2)   # one constant fits all: S = 1
    1.0
    >>> wrong = model * np.where(model > 1.6, 1.03, 1.0)          # a 3 % error for half the stars
    >>> consistency_factor(gaia, 0.03, wrong, wrong)[0] > 3
    True
    """
    plx, err, model = checked_stars(parallax, parallax_error, model_parallax, 2 * int(n_groups), "groups")
    key = np.asarray(groups, dtype=float).ravel()
    if key.size != plx.size or not np.all(np.isfinite(key)):
        raise ValueError(f"groups must have one finite value per star ({plx.size}), got {key.size} values")
    if int(n_groups) != n_groups or n_groups < 2:
        raise ValueError(f"n_groups must be an integer >= 2, got {n_groups!r}")
    parts = np.array_split(np.argsort(key, kind="stable"), int(n_groups))
    fits = [fit_zeropoint(plx[i], err[i], model[i], likelihood=likelihood) for i in parts]
    values = np.array([f.value.to_value(u.uas) for f in fits])
    errors = np.array([f.error.to_value(u.uas) for f in fits])
    w = 1.0 / errors**2
    mean = np.sum(w * values) / np.sum(w)
    chi2 = float(np.sum(w * (values - mean) ** 2))
    return float(np.sqrt(max(1.0, chi2 / (len(fits) - 1)))), fits
