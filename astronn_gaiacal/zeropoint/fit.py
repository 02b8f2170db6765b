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

__all__ = ["ZeropointFit", "ZeropointTrendFit", "fit_zeropoint", "fit_zeropoint_trend", "combine_fits", "failed_members",
           "usable_members", "student_t_factor", "consistency_factor"]

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

    def to_dict(self):
        """Plain numbers for JSON: ``value_uas``, ``error_uas``, ``scatter``, ``scatter_error``, ``n_stars``, ``scale``, ``scale_error``."""
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


def _profile_fit(target, design, model, err, scatter):
    """Gaussian ML of ``target = design @ coef`` with variances ``err^2 + (tau model)^2``, tau profiled.

    Returns the coefficients, their covariance, tau and its error (0 when fixed or at a bound).
    """
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


def _checked_stars(parallax, parallax_error, model_parallax, n_min, what):
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


def fit_zeropoint(parallax, parallax_error, model_parallax, scatter=None, fit_scale=False, fit_curvature=False):
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
    plx, err, model = _checked_stars(parallax, parallax_error, model_parallax, 3 + terms, what + " and a scatter")
    n = plx.size
    design = np.stack([model**k for k in range(terms + 1)], axis=1)
    coef, cov, tau, tau_err = _profile_fit(plx if terms else plx - model, design, model, err, scatter)
    scale, scale_err = (coef[1], np.sqrt(cov[1, 1])) if terms else (1.0, 0.0)
    curv, curv_err = (coef[2], np.sqrt(cov[2, 2])) if terms == 2 else (0.0, 0.0)
    return ZeropointFit(coef[0] * 1000 * u.uas, 1000 * np.sqrt(cov[0, 0]) * u.uas, tau, tau_err, n,
                        float(scale), float(scale_err), float(curv), float(curv_err))


@dataclass(frozen=True)
class ZeropointTrendFit:
    """Result of :func:`fit_zeropoint_trend`: ``zero-point = c + sum_j b_j dx_j + a_j dx_j^2``, ``dx_j = x_j - pivot_j``.

    Attributes
    ----------
    features : tuple of str
    pivots : tuple of float
    valid_ranges : dict
        ``{feature: (lo, hi)}``: the central 98 % of the fitted stars.
    coefficients : ndarray [uas]
        ``(c, b_1, a_1, b_2, a_2, ...)``.
    covariance : ndarray [uas^2]
    scale, scale_error, scatter, scatter_error : float
    n_stars : int
    """

    features: tuple
    pivots: tuple
    valid_ranges: dict
    coefficients: np.ndarray
    covariance: np.ndarray
    scale: float
    scale_error: float
    scatter: float
    scatter_error: float
    n_stars: int

    def _design(self, features, n=None):
        cols = [_feature_column(features, name, n) for name in self.features]
        n = cols[0].size
        design = [np.ones(n)]
        for x, pivot in zip(cols, self.pivots):
            design += [x - pivot, (x - pivot) ** 2]
        inside = np.ones(n, bool)
        for x, name in zip(cols, self.features):
            lo, hi = self.valid_ranges[name]
            inside &= (x >= lo) & (x <= hi)
        return np.stack(design, axis=1), inside

    def __call__(self, features):
        """Zero-point and its 1-sigma error (uas) for stars with these feature columns; NaN outside the valid ranges."""
        design, inside = self._design(features)
        value = design @ self.coefficients
        error = np.sqrt(np.einsum("ij,jk,ik->i", design, self.covariance, design))
        return np.where(inside, value, np.nan) * u.uas, np.where(inside, error, np.nan) * u.uas

    def trend(self, feature):
        """The quadratic in one feature with the others at their pivots (:class:`~astronn_gaiacal.zeropoint.trends.QuadraticTrend`)."""
        from .trends import QuadraticTrend

        if feature not in self.features:
            raise KeyError(f"{feature!r} is not a fitted feature; fitted: {list(self.features)}")
        j = 1 + 2 * self.features.index(feature)
        idx = (j + 1, j, 0)  # a, b, c
        return QuadraticTrend(feature, tuple(float(self.coefficients[i]) for i in idx),
                              tuple(float(np.sqrt(self.covariance[i, i])) for i in idx),
                              float(self.pivots[self.features.index(feature)]),
                              tuple(float(v) for v in self.valid_ranges[feature]), int(self.n_stars))

    def to_dict(self):
        """Plain numbers for JSON: the per-feature quadratics, the scale and the scatter."""
        return {"trends": {f: self.trend(f).to_dict() for f in self.features}, "scale": float(self.scale),
                "scale_error": float(self.scale_error), "scatter": float(self.scatter),
                "scatter_error": float(self.scatter_error), "n_stars": int(self.n_stars)}


def _feature_column(features, name, n=None):
    try:
        col = features[name]
    except (KeyError, ValueError, IndexError):
        raise KeyError(f"features has no column {name!r}") from None
    x = np.asarray(getattr(col, "value", col), dtype=float).ravel()
    if n is not None and x.size != n:
        raise ValueError(f"feature {name!r} has {x.size} values; parallax has {n}")
    bad = is_missing(x)
    if bad.any():
        raise ValueError(f"feature {name!r} has {int(bad.sum())} NaN/-9999 value(s) (first at index "
                         f"{int(np.argmax(bad))}); select the stars that have it first")
    return x


def fit_zeropoint_trend(parallax, parallax_error, model_parallax, features, names=None, fit_scale=True, scatter=None,
                        pivots=None, coverage=0.98):
    r"""Fit a zero-point quadratic in each feature, with the luminosity network held fixed.

    Maximises the same likelihood as :func:`fit_zeropoint` with the constant
    replaced by :math:`c + \sum_j b_j (x_j - x_{0,j}) + a_j (x_j - x_{0,j})^2`
    (the additive form of the paper's eqs. 7-9) and, by default, a free
    luminosity scale.  The scale matters: a zero-point that varies with G and
    a luminosity scale error both move the parallaxes of bright (near) stars
    more; only the spread of the parallaxes at fixed G separates them, and a
    jointly trained network can settle on a wrong mixture
    (docs/calibration.rst).  The covariance carries that degeneracy.

    Parameters
    ----------
    parallax, parallax_error, model_parallax : Quantity or array_like [mas]
        As :func:`fit_zeropoint`.
    features : Table, dict or DataFrame
        Columns of the zero-point features, one value per star.
    names : sequence of str, optional
        Feature columns to use; default all of ``features``.
    fit_scale : bool
        Fit the luminosity scale too (default) or fix it at 1.
    scatter : float, optional
        Fix the fractional scatter tau.
    pivots : dict, optional
        Pivot per feature; default the paper's pivots where it has one, else the median.
    coverage : float
        Central fraction of the stars (per feature) over which the fit is stated valid.

    Returns
    -------
    ZeropointTrendFit

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> rng = np.random.default_rng(4)
    >>> true = rng.uniform(0.2, 3.0, 20000)
    >>> g = 14.0 - 2.5 * np.log10(true) + rng.normal(0, 0.8, true.size)   # brighter stars are nearer
    >>> zp = 0.001 * (-55.49 - 0.92 * (g - 16) + 1.18 * (g - 16) ** 2)   # the paper's eq. 7, mas
    >>> gaia = true + zp + rng.normal(0, 0.04, true.size)
    >>> model = 0.93 * true                         # luminosities 7 % low
    >>> fit = fit_zeropoint_trend(gaia, 0.04, model, {"phot_g_mean_mag": g}, scatter=0.0)
    >>> t = fit.trend("phot_g_mean_mag")
    >>> [bool(abs(v - ref) < 3 * e) for v, ref, e in zip(t.coeffs, (1.18, -0.92, -55.49), t.coeffs_err)]
    [True, True, True]
    >>> round(fit.scale, 3)                         # 1 / 0.93
    1.075

    With the scale fixed at 1 the luminosity error leaks into the trend:

    >>> fixed = fit_zeropoint_trend(gaia, 0.04, model, {"phot_g_mean_mag": g}, scatter=0.0, fit_scale=False)
    >>> round(fixed.trend("phot_g_mean_mag").coeffs[1])   # uas/mag at G = 16, against -0.92
    -41
    """
    from ..constants import PAPER_QUADRATIC_TRENDS

    names = tuple(names) if names is not None else tuple(getattr(features, "colnames", None) or list(features))
    if not names:
        raise ValueError("features has no columns")
    n_coef = 1 + 2 * len(names) + bool(fit_scale)
    plx, err, model = _checked_stars(parallax, parallax_error, model_parallax, n_coef + 2,
                                     f"{n_coef} coefficients and a scatter")
    cols = {name: _feature_column(features, name, plx.size) for name in names}
    pivots = dict(pivots or {})
    piv = tuple(float(pivots.get(n, PAPER_QUADRATIC_TRENDS.get(n, {}).get("pivot", np.median(cols[n]))))
                for n in names)
    ranges = {n: tuple(float(v) for v in np.quantile(cols[n], [(1 - coverage) / 2, 1 - (1 - coverage) / 2]))
              for n in names}
    shell = ZeropointTrendFit(names, piv, ranges, np.zeros(n_coef), np.eye(n_coef), 1.0, 0.0, 0.0, 0.0, plx.size)
    design, _ = shell._design(cols)
    if fit_scale:
        design = np.concatenate([design, model[:, None]], axis=1)
    coef, cov, tau, tau_err = _profile_fit(plx if fit_scale else plx - model, design, model, err, scatter)
    k = n_coef - bool(fit_scale)
    return ZeropointTrendFit(names, piv, ranges, coef[:k] * 1000, cov[:k, :k] * 1e6,
                             float(coef[k]) if fit_scale else 1.0, float(np.sqrt(cov[k, k])) if fit_scale else 0.0,
                             tau, tau_err, plx.size)


def consistency_factor(parallax, parallax_error, model_parallax, groups, n_groups=4):
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
    plx, err, model = _checked_stars(parallax, parallax_error, model_parallax, 2 * int(n_groups), "groups")
    key = np.asarray(groups, dtype=float).ravel()
    if key.size != plx.size or not np.all(np.isfinite(key)):
        raise ValueError(f"groups must have one finite value per star ({plx.size}), got {key.size} values")
    if int(n_groups) != n_groups or n_groups < 2:
        raise ValueError(f"n_groups must be an integer >= 2, got {n_groups!r}")
    parts = np.array_split(np.argsort(key, kind="stable"), int(n_groups))
    fits = [fit_zeropoint(plx[i], err[i], model[i]) for i in parts]
    values = np.array([f.value.to_value(u.uas) for f in fits])
    errors = np.array([f.error.to_value(u.uas) for f in fits])
    w = 1.0 / errors**2
    mean = np.sum(w * values) / np.sum(w)
    chi2 = float(np.sum(w * (values - mean) ** 2))
    return float(np.sqrt(max(1.0, chi2 / (len(fits) - 1)))), fits


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
    from scipy.stats import norm, t

    k = int(k)
    return 1.0 if k < 2 else float(t.ppf(norm.cdf(1.0), k - 1))


#: An ensemble member whose fitted fractional scatter is this many times the ensemble's smallest has failed to train.
FAILED_SCATTER_RATIO = 3.0


def failed_members(fits, ratio=FAILED_SCATTER_RATIO):
    """Which members of an ensemble failed to learn luminosities, judged by their fits on the Gaia parallaxes.

    A member's fitted fractional scatter tau (:attr:`ZeropointFit.scatter`) is
    its distance precision on the stars it was fitted to.  Members trained the
    same way reach similar tau (within a factor of 2 in the calibration
    studies, docs/calibration.rst); a training that diverged or collapsed has
    tau several times larger and a zero-point that can be off by hundreds of
    uas.  Such a member is flagged when its tau exceeds ``ratio`` times the
    smallest tau of the ensemble.

    Parameters
    ----------
    fits : sequence of ZeropointFit
        The members' fits on the same stars (:func:`fit_zeropoint` with the scatter fitted).
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
    import warnings

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
                            float(np.sqrt(np.mean([f.curvature_error**2 for f in fits]))))
    return combined, {"statistical": np.sqrt(stat_var) * u.uas, "ensemble": ensemble * u.uas,
                      "member_spread": spread * u.uas}
