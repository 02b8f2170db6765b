r"""Zero-point trends: quadratics in the features, as the paper's eqs. 7-9.

The paper summarises its multivariate offset by one quadratic per feature,
:math:`\varpi_0(x) = a (x - x_0)^2 + b (x - x_0) + c` in micro-arcsec, each
valid over a stated range.  :func:`paper_trend` evaluates the published
summaries (from :data:`astronn_gaiacal.constants.PAPER_QUADRATIC_TRENDS`).
One fitter serves both uses of the form: :func:`fit_zeropoint_trend` fits it
by maximum likelihood to Gaia parallaxes with a network's luminosities held
fixed, and :func:`fit_quadratic_trend` summarises a model's per-star
zero-points by it (the same weighted fit with no model parallax and no scatter).

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.zeropoint.trends import paper_trend
>>> paper_trend("teff", [4500.0]).round(2)
<Quantity [-53.17] uas>
"""
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u

from ..constants import PAPER_QUADRATIC_TRENDS, RED_CLUMP_ABSMAG_KS, RED_CLUMP_ABSMAG_KS_SPREAD, is_missing
from ..conversions import absmag_to_fakemag, mas_values
from .fit import checked_stars, profile_fit
from .likelihood import as_likelihood

__all__ = ["QuadraticTrend", "ZeropointTrendFit", "feature_column", "fit_quadratic_trend", "fit_zeropoint_trend",
           "paper_trend", "quadratic", "red_clump_anchors"]


#: The error of anchors given without their 1-sigma errors (also raised before a model's prediction).
MISSING_ANCHOR_ERROR = "anchor_fakemag needs anchor_fakemag_error (1-sigma, fakemag units)"
#: Why a constant model takes no red-clump anchors (the API's ValueError and the CLI's usage error).
CONSTANT_NEEDS_NO_ANCHOR = ("red-clump anchors pin the trend refit of a multivariate model; a constant zero-point "
                            "cannot take up an additive luminosity error and needs no anchor")


def quadratic(x, coeffs, pivot=0.0):
    """Evaluate ``a (x - pivot)^2 + b (x - pivot) + c`` for ``coeffs = (a, b, c)``."""
    a, b, c = coeffs
    dx = np.asarray(x, dtype=float) - pivot
    return a * dx**2 + b * dx + c


def paper_trend(feature, x):
    """The paper's quadratic zero-point summary for ``feature`` at ``x``, in micro-arcsec.

    Parameters
    ----------
    feature : {'phot_g_mean_mag', 'bp_rp', 'teff'}
    x : array_like
        Feature values (mag, mag, K).

    Returns
    -------
    Quantity [uas]
        NaN outside the published validity range.
    """
    if feature not in PAPER_QUADRATIC_TRENDS:
        raise KeyError(f"no published trend for {feature!r}; known: {sorted(PAPER_QUADRATIC_TRENDS)}")
    spec = PAPER_QUADRATIC_TRENDS[feature]
    x = np.asarray(x, dtype=float)
    lo, hi = spec["range"]
    values = quadratic(x, spec["coeffs"], spec["pivot"])
    return np.where((x >= lo) & (x <= hi), values, np.nan) * u.uas


@dataclass
class QuadraticTrend:
    """A fitted zero-point summary ``a (x - pivot)^2 + b (x - pivot) + c`` (uas)."""

    feature: str
    coeffs: tuple
    coeffs_err: tuple
    pivot: float
    valid_range: tuple
    n_stars: int
    extra: dict = field(default_factory=dict)

    def __call__(self, x):
        x = np.asarray(x, dtype=float)
        lo, hi = self.valid_range
        return np.where((x >= lo) & (x <= hi), quadratic(x, self.coeffs, self.pivot), np.nan) * u.uas

    def to_dict(self):
        return {
            "feature": self.feature,
            "form": "a*(x-pivot)**2 + b*(x-pivot) + c  [uas]",
            "a": self.coeffs[0],
            "b": self.coeffs[1],
            "c": self.coeffs[2],
            "a_err": self.coeffs_err[0],
            "b_err": self.coeffs_err[1],
            "c_err": self.coeffs_err[2],
            "pivot": self.pivot,
            "valid_range": list(self.valid_range),
            "n_stars": self.n_stars,
        }

    def __str__(self):
        a, b, c = self.coeffs
        lo, hi = self.valid_range
        return (
            f"{self.feature}: {a:.4g}(x-{self.pivot:g})^2 + {b:.4g}(x-{self.pivot:g}) + {c:.4g} uas, "
            f"valid {lo:.4g} <= x <= {hi:.4g} ({self.n_stars} stars)"
        )


def fit_quadratic_trend(x, zeropoint, zeropoint_error=None, feature="x", pivot=None, coverage=0.98):
    """Fit ``a (x - pivot)^2 + b (x - pivot) + c`` to per-star zero-points.

    Parameters
    ----------
    x : array_like
        Feature values.
    zeropoint, zeropoint_error : Quantity or array_like
        Per-star zero-points (and errors); plain numbers are taken as mas.
    feature : str
        Name, used for the pivot default and reporting.
    pivot : float, optional
        Defaults to the paper's pivot for known features, else the median of ``x``.
    coverage : float
        Central fraction of the stars (in ``x``) over which the fit is stated valid.

    Returns
    -------
    QuadraticTrend
    """
    x = np.asarray(x, dtype=float)
    zp = mas_values(zeropoint, "zeropoint")
    err = np.full(zp.shape, 1e-3) if zeropoint_error is None else mas_values(zeropoint_error, "zeropoint_error")
    if not (x.shape == zp.shape == err.shape):
        raise ValueError(f"x {x.shape}, zeropoint {zp.shape} and zeropoint_error {err.shape} must match")
    good = ~is_missing(x) & ~is_missing(zp) & np.isfinite(err) & (err > 0)
    if good.sum() < 4:
        raise ValueError(f"need at least 4 stars with finite {feature} and zero-point to fit a quadratic")
    lo, hi = np.quantile(x[good], [(1 - coverage) / 2, 1 - (1 - coverage) / 2])
    use = good & (x >= lo) & (x <= hi)
    if pivot is None:
        pivot = PAPER_QUADRATIC_TRENDS.get(feature, {}).get("pivot", float(np.median(x[use])))
    fit = _trend_fit(zp[use], err[use], np.zeros(int(use.sum())), {feature: x[use]}, (float(pivot),),
                     {feature: (float(lo), float(hi))}, fit_scale=False, scatter=0.0)
    return fit.trend(feature)


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
    likelihood : str
        ``'gaussian'`` or ``'student_t(nu=...)'``.
    luminosity_offset, luminosity_offset_error : float
        The additive fakemag term :math:`c` (fakemag units) when it was fitted
        (``magnitude`` given to :func:`fit_zeropoint_trend`), else NaN.
    n_anchors : int
        Stars of known fakemag that pinned it.
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
    likelihood: str = "gaussian"
    luminosity_offset: float = float("nan")
    luminosity_offset_error: float = float("nan")
    n_anchors: int = 0

    def _design(self, features, n=None):
        cols = [feature_column(features, name, n) for name in self.features]
        n = cols[0].size
        design = [np.ones(n)]
        for x, pivot in zip(cols, self.pivots):
            design += [x - pivot, (x - pivot) ** 2]
        inside = np.ones(n, bool)
        for x, name in zip(cols, self.features):
            lo, hi = self.valid_ranges[name]
            inside &= (x >= lo) & (x <= hi)
        return np.stack(design, axis=1), inside

    def __call__(self, features, extrapolate=False):
        """Zero-point and its 1-sigma error (uas) for stars with these feature columns.

        NaN outside the valid ranges, unless ``extrapolate`` (then only where a feature is missing).
        """
        design, inside = self._design(features)
        value = design @ self.coefficients
        error = np.sqrt(np.einsum("ij,jk,ik->i", design, self.covariance, design))
        if extrapolate:
            return value * u.uas, error * u.uas
        return np.where(inside, value, np.nan) * u.uas, np.where(inside, error, np.nan) * u.uas

    def trend(self, feature):
        """The quadratic in one feature with the others at their pivots (:class:`~astronn_gaiacal.zeropoint.trends.QuadraticTrend`)."""
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
        out = {"trends": {f: self.trend(f).to_dict() for f in self.features}, "scale": float(self.scale),
               "scale_error": float(self.scale_error), "scatter": float(self.scatter),
               "scatter_error": float(self.scatter_error), "n_stars": int(self.n_stars),
               "likelihood": str(self.likelihood)}
        if np.isfinite(self.luminosity_offset):  # the additive fakemag term was fitted
            out.update(luminosity_offset=float(self.luminosity_offset),
                       luminosity_offset_error=float(self.luminosity_offset_error), n_anchors=int(self.n_anchors))
        return out


def feature_column(features, name, n=None, allow_missing=False):
    """Column ``name`` of ``features`` as a float array of ``n`` values, or an error naming the problem.

    NaN/-9999 entries are an error unless ``allow_missing``.
    """
    try:
        col = features[name]
    except (KeyError, ValueError, IndexError):
        raise KeyError(f"features has no column {name!r}") from None
    x = np.asarray(getattr(col, "value", col), dtype=float).ravel()
    if n is not None and x.size != n:
        raise ValueError(f"feature {name!r} has {x.size} values; parallax has {n}")
    bad = is_missing(x)
    if bad.any() and not allow_missing:
        raise ValueError(f"feature {name!r} has {int(bad.sum())} NaN/-9999 value(s) (first at index "
                         f"{int(np.argmax(bad))}); select the stars that have it first")
    return x


def fit_zeropoint_trend(parallax, parallax_error, model_parallax, features, names=None, fit_scale=True, scatter=None,
                        pivots=None, coverage=0.98, likelihood=None, magnitude=None, anchor_fakemag=None,
                        anchor_fakemag_error=None):
    r"""Fit a zero-point quadratic in each feature, with the luminosity network held fixed.

    Maximises the same likelihood as :func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint` with the constant
    replaced by :math:`c + \sum_j b_j (x_j - x_{0,j}) + a_j (x_j - x_{0,j})^2`
    (the additive form of the paper's eqs. 7-9) and, by default, a free
    luminosity scale.  The scale matters: a zero-point that varies with G and
    a luminosity scale error both move the parallaxes of bright (near) stars
    more; only the spread of the parallaxes at fixed G separates them, and a
    jointly trained network can settle on a wrong mixture
    (docs/calibration.rst).  The covariance carries that degeneracy.

    With ``magnitude`` the fit also frees an additive fakemag term :math:`c`,
    model parallax :math:`s (L + c) 10^{-m/5}`.  A network's additive luminosity
    error is exactly degenerate with a zero-point :math:`-c\,10^{-m/5}`, a
    smooth function of magnitude that G, BP−RP and Teff can mimic, so the
    likelihood alone hardly fixes :math:`c`: stars of known fakemag do
    (``anchor_fakemag``, e.g. red-clump stars,
    :data:`~astronn_gaiacal.constants.RED_CLUMP_ABSMAG_KS` through
    :func:`~astronn_gaiacal.conversions.absmag_to_fakemag`).  Each anchor adds
    the term :math:`s (L_i + c) = L_{{\rm anchor}, i} \pm \sigma_i` to the likelihood.

    Parameters
    ----------
    parallax, parallax_error, model_parallax : Quantity or array_like [mas]
        As :func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`.
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
    likelihood : None, str or Likelihood
        Gaussian (default) or ``'student_t'``, as :func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`.
    magnitude : array_like, optional
        The apparent magnitudes of the model parallaxes (:math:`L = \varpi_{\rm model} 10^{m/5}`):
        fit the additive fakemag term.
    anchor_fakemag : array_like, optional
        Known fakemag per star, NaN where unknown; needs ``magnitude``.
    anchor_fakemag_error : float or array_like, optional
        Their 1-sigma errors (fakemag units), required with ``anchor_fakemag``.

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

    An additive luminosity error (4 fakemag units, a tenth of a red-clump star's
    40) moves the parallaxes of bright (near) stars the most, and the trend takes
    it up; 300 red-clump stars of known fakemag give it back, and the trend with
    it (its slope at G = 12 is -10.4 uas/mag):

    >>> rng = np.random.default_rng(5)
    >>> m = rng.uniform(7.0, 12.5, 20000)
    >>> lum = 10 ** rng.uniform(1.0, 2.7, m.size)                 # true fakemag
    >>> lum[:300] = 40.0                                           # the first 300: red-clump stars
    >>> g = m + 2.0
    >>> zp = 0.001 * (-55.49 - 0.92 * (g - 16) + 1.18 * (g - 16) ** 2)
    >>> gaia = lum * 10 ** (-m / 5) + zp + rng.normal(0, 0.02, m.size)
    >>> model = (lum - 4.0) * 10 ** (-m / 5)
    >>> plain = fit_zeropoint_trend(gaia, 0.02, model, {"phot_g_mean_mag": g}, scatter=0.0,
    ...                             pivots={"phot_g_mean_mag": 12.0})
    >>> round(plain.trend("phot_g_mean_mag").coeffs[1])
    -32
    >>> anchors = np.where(np.arange(m.size) < 300, 40.0, np.nan)
    >>> fit = fit_zeropoint_trend(gaia, 0.02, model, {"phot_g_mean_mag": g}, scatter=0.0,
    ...                           pivots={"phot_g_mean_mag": 12.0}, magnitude=m,
    ...                           anchor_fakemag=anchors, anchor_fakemag_error=2.0)
    >>> round(fit.luminosity_offset, 1), round(fit.trend("phot_g_mean_mag").coeffs[1])
    (4.1, -10)
    """
    names = tuple(names) if names is not None else tuple(getattr(features, "colnames", None) or list(features))
    if not names:
        raise ValueError("features has no columns")
    n_coef = 1 + 2 * len(names) + bool(fit_scale) + (magnitude is not None)
    plx, err, model = checked_stars(parallax, parallax_error, model_parallax, n_coef + 2,
                                     f"{n_coef} coefficients and a scatter")
    anchors = _anchors(plx.size, magnitude, anchor_fakemag, anchor_fakemag_error)
    cols = {name: feature_column(features, name, plx.size) for name in names}
    pivots = dict(pivots or {})
    piv = tuple(float(pivots.get(n, PAPER_QUADRATIC_TRENDS.get(n, {}).get("pivot", np.median(cols[n]))))
                for n in names)
    ranges = {n: tuple(float(v) for v in np.quantile(cols[n], [(1 - coverage) / 2, 1 - (1 - coverage) / 2]))
              for n in names}
    return _trend_fit(plx, err, model, cols, piv, ranges, fit_scale, scatter, likelihood, anchors)


def red_clump_anchors(is_red_clump, absmag=RED_CLUMP_ABSMAG_KS, spread=RED_CLUMP_ABSMAG_KS_SPREAD):
    """Anchors of :func:`fit_zeropoint_trend` from red-clump membership: the clump's fakemag, NaN elsewhere.

    Parameters
    ----------
    is_red_clump : array_like of bool
        Membership per star, e.g. from a cross-match with a red-clump catalogue
        (Bovy et al. 2014's APOGEE-RC); no missing values.
    absmag, spread : float
        The clump's Ks absolute magnitude and its intrinsic spread (mag), the per-star error.

    Returns
    -------
    anchor_fakemag, anchor_fakemag_error : ndarray
        Per star; NaN off the clump.

    Examples
    --------
    >>> from astronn_gaiacal.zeropoint.trends import red_clump_anchors
    >>> fakemag, error = red_clump_anchors([True, False])
    >>> [round(float(v), 2) for v in fakemag[:1]], bool(np.isnan(fakemag[1])), round(float(error[0]), 2)
    ([47.64], True, 3.73)
    """
    member = np.asarray(is_red_clump)
    if member.dtype != bool:
        try:
            values = np.asarray(member, dtype=float)
        except (TypeError, ValueError):
            values = np.full(member.shape, np.nan)
        if not np.all(np.isin(values, (0.0, 1.0))):
            raise ValueError("is_red_clump must be boolean (or 0/1) with no missing values")
        member = values == 1.0
    fakemag, error = absmag_to_fakemag(float(absmag), float(spread))
    return np.where(member, float(fakemag), np.nan), np.where(member, float(error), np.nan)


def _anchors(n, magnitude, anchor_fakemag, anchor_fakemag_error):
    """``(p, rows, fakemag, error)`` of the additive term (``p = 10^(-m/5)``), or None without ``magnitude``."""
    if magnitude is None:
        if anchor_fakemag is not None:
            raise ValueError("anchor_fakemag needs magnitude (the fakemag of the model parallaxes)")
        return None
    mag = np.asarray(getattr(magnitude, "value", magnitude), dtype=float).ravel()
    if mag.size != n or not np.all(np.isfinite(mag)):
        raise ValueError(f"magnitude must hold {n} finite values, one per star")
    p = 10.0 ** (-0.2 * mag)
    if anchor_fakemag is None:
        return p, np.zeros(0, int), np.zeros(0), np.zeros(0)
    if anchor_fakemag_error is None:
        raise ValueError(MISSING_ANCHOR_ERROR)
    known = np.asarray(anchor_fakemag, dtype=float).ravel()
    if known.size != n:
        raise ValueError(f"anchor_fakemag has {known.size} values; parallax has {n}")
    rows = np.flatnonzero(~is_missing(known))
    error = np.asarray(anchor_fakemag_error, dtype=float).ravel()
    if error.size == 1:
        error = np.full(n, error[0])
    if error.size != n:
        raise ValueError(f"anchor_fakemag_error has {error.size} values; parallax has {n}")
    error = error[rows]
    if np.any(known[rows] <= 0) or not np.all(np.isfinite(error) & (error > 0)):
        raise ValueError("anchor_fakemag must be positive and anchor_fakemag_error finite and positive")
    return p, rows, known[rows], error


def _trend_fit(target, err, model, cols, pivots, ranges, fit_scale, scatter, likelihood=None, anchors=None):
    """The one trend fitter: ``target = c + sum_j b_j dx_j + a_j dx_j^2 (+ s model) (+ s c p)``, by :func:`~astronn_gaiacal.zeropoint.fit.profile_fit`.

    Values in mas; ``fit_scale=False`` fits ``target - model``.  Coefficients come back in uas.
    ``anchors`` (:func:`_anchors`) adds the additive fakemag term and the rows of the stars of known fakemag.
    """
    names = tuple(cols)
    k = 1 + 2 * len(names)
    shell = ZeropointTrendFit(names, pivots, ranges, np.zeros(k), np.eye(k), 1.0, 0.0, 0.0, 0.0, target.size)
    design, _ = shell._design(cols)
    y = target if fit_scale else target - model
    noise, spread = err, model
    if fit_scale:
        design = np.concatenate([design, model[:, None]], axis=1)
    if anchors is not None:
        p, rows, known, error = anchors
        design = np.concatenate([design, p[:, None]], axis=1)
        lum = model[rows] / p[rows]
        extra = np.zeros((rows.size, design.shape[1]))
        extra[:, -1] = 1.0
        if fit_scale:
            extra[:, -2] = lum
        design = np.concatenate([design, extra])
        y = np.concatenate([y, known if fit_scale else known - lum])
        noise, spread = np.concatenate([err, error]), np.concatenate([model, np.zeros(rows.size)])
    likelihood = as_likelihood(likelihood)
    coef, cov, tau, tau_err = profile_fit(y, design, spread, noise, scatter, likelihood)
    scale, scale_err = (float(coef[k]), float(np.sqrt(cov[k, k]))) if fit_scale else (1.0, 0.0)
    offset = offset_err = float("nan")
    if anchors is not None:  # c = (s c) / s, to first order
        j = design.shape[1] - 1
        offset = float(coef[j] / scale)
        grad = np.zeros(design.shape[1])
        grad[j] = 1.0 / scale
        if fit_scale:
            grad[k] = -coef[j] / scale**2
        offset_err = float(np.sqrt(grad @ cov @ grad))
    return ZeropointTrendFit(names, pivots, ranges, coef[:k] * 1000, cov[:k, :k] * 1e6, scale, scale_err,
                             tau, tau_err, target.size, str(likelihood), offset, offset_err,
                             0 if anchors is None else int(anchors[1].size))
