r"""Accuracy metrics used for every figure the project reports.

The paper (eq. 10) quotes the robust scatter of fractional residuals
:math:`R = (x_{\rm NN} - x_{\rm ref}) / x_{\rm ref}`,

.. math:: \sigma_{\rm MAD} = 1.4826\,{\rm median}(|R - {\rm median}(R)|),

and the median bias :math:`{\rm median}(R)`.  All functions ignore -9999 and NaN.

Examples
--------
>>> from astronn_gaiacal.metrics import sigma_mad
>>> round(sigma_mad([0.9, 1.0, 1.1, 1.0, -9999.0]), 4)
0.0741
"""
import numpy as np
from astropy import units as u

from .constants import MAGIC_NUMBER

MAD_TO_SIGMA = 1.4826


def _clean(x):
    if isinstance(x, u.Quantity):
        x = x.value
    x = np.asarray(x, dtype=float)
    return np.where(x == MAGIC_NUMBER, np.nan, x)


def fractional_residual(predicted, reference):
    """``(predicted - reference) / reference``; NaN where either is missing or the reference is 0.

    Quantities are converted to the reference's unit first.
    """
    p, r = _clean(predicted), _clean(reference)
    if isinstance(predicted, u.Quantity) and isinstance(reference, u.Quantity):
        p = p * predicted.unit.to(reference.unit)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r != 0, (p - r) / r, np.nan)


def sigma_mad(x):
    """Robust scatter 1.4826 * median |x - median(x)| of the valid entries (NaN if none)."""
    x = _clean(x).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def median_bias(x):
    """Median of the valid entries (NaN if none)."""
    x = _clean(x).ravel()
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def accuracy(predicted, reference):
    """Fractional-residual summary: ``{'n', 'sigma_mad', 'bias'}``."""
    r = fractional_residual(predicted, reference)
    return {"n": int(np.isfinite(r).sum()), "sigma_mad": sigma_mad(r), "bias": median_bias(r)}
