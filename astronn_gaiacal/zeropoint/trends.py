r"""Quadratic summaries of the zero-point, as the paper's eqs. 7-9.

The paper summarises its multivariate offset by one quadratic per feature,
:math:`\varpi_0(x) = a (x - x_0)^2 + b (x - x_0) + c` in micro-arcsec, each
valid over a stated range.  :func:`paper_trend` evaluates the published
summaries (from :data:`astronn_gaiacal.constants.PAPER_QUADRATIC_TRENDS`);
:func:`fit_quadratic_trend` fits the same form to a model's per-star
zero-points.

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

from ..constants import MAGIC_NUMBER, PAPER_QUADRATIC_TRENDS


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
    zp = zeropoint.to_value(u.uas) if isinstance(zeropoint, u.Quantity) else np.asarray(zeropoint, float) * 1e3
    if zeropoint_error is None:
        err = np.ones_like(zp)
    elif isinstance(zeropoint_error, u.Quantity):
        err = zeropoint_error.to_value(u.uas)
    else:
        err = np.asarray(zeropoint_error, float) * 1e3
    if not (x.shape == zp.shape == err.shape):
        raise ValueError(f"x {x.shape}, zeropoint {zp.shape} and zeropoint_error {err.shape} must match")
    good = np.isfinite(x) & (x != MAGIC_NUMBER) & np.isfinite(zp) & np.isfinite(err) & (err > 0)
    if good.sum() < 4:
        raise ValueError(f"need at least 4 stars with finite {feature} and zero-point to fit a quadratic")
    lo, hi = np.quantile(x[good], [(1 - coverage) / 2, 1 - (1 - coverage) / 2])
    use = good & (x >= lo) & (x <= hi)
    if pivot is None:
        pivot = PAPER_QUADRATIC_TRENDS.get(feature, {}).get("pivot", float(np.median(x[use])))
    coeffs, cov = np.polyfit(x[use] - pivot, zp[use], 2, w=1.0 / err[use], cov="unscaled")
    return QuadraticTrend(
        feature=feature,
        coeffs=tuple(float(c) for c in coeffs),
        coeffs_err=tuple(float(np.sqrt(v)) for v in np.diag(cov)),
        pivot=float(pivot),
        valid_range=(float(lo), float(hi)),
        n_stars=int(use.sum()),
    )
