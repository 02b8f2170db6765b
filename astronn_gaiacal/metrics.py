r"""Accuracy metrics of the paper: fractional residuals, :math:`\sigma_{\rm MAD}` and median bias.

Leung & Bovy (2019, eq. 10) summarise a comparison by the robust scatter

.. math:: \sigma_{\rm MAD} = 1.4826\ {\rm median}\left(|R - {\rm median}(R)|\right)

of the fractional residuals :math:`R = (x_{\rm pred} - x_{\rm ref}) / x_{\rm ref}`,
and by the median bias :math:`{\rm median}(R)`.  Every function ignores missing
entries: -9999, NaN, masked, and (for residuals) a zero reference.

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.metrics import accuracy
>>> ref = np.array([1.0, 2.0, 4.0, -9999.0, 5.0])
>>> pred = np.array([1.1, 1.8, 4.0, 3.0, np.nan])
>>> acc = accuracy(pred, ref)
>>> acc["n"], round(acc["median_bias"], 3), round(acc["sigma_mad"], 4)
(3, 0.0, 0.1483)
"""
import numpy as np
from astropy import units as u
from astropy.stats import median_absolute_deviation

from .constants import SIGMA_MAD_SCALE, is_missing
from .io.figures import new_figure, save_figure

__all__ = ["fractional_residuals", "sigma_mad", "median_bias", "accuracy", "plot_fractional_residuals"]


def _values(x, name):
    """Float array with NaN for masked and -9999 entries."""
    if isinstance(x, u.Quantity):
        x = x.value
    if np.ma.isMaskedArray(x) or hasattr(x, "mask"):
        x = np.ma.filled(np.ma.asarray(x, dtype=float), np.nan)
    try:
        arr = np.array(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric") from None
    arr[is_missing(arr)] = np.nan
    return arr


def fractional_residuals(predicted, reference):
    """Fractional residuals ``(predicted - reference) / reference``.

    Parameters
    ----------
    predicted, reference : array_like or Quantity
        Same shape (or broadcastable); two Quantities must have convertible
        units; a plain array is taken to be in the other one's unit.

    Returns
    -------
    ndarray
        NaN where either input is missing (-9999, NaN, masked) or the reference is 0.

    Raises
    ------
    astropy.units.UnitTypeError
        If the two Quantities' units do not convert.
    """
    if isinstance(predicted, u.Quantity) and isinstance(reference, u.Quantity):
        try:
            predicted = predicted.to(reference.unit)
        except u.UnitConversionError:
            raise u.UnitTypeError(
                f"predicted ('{predicted.unit}') and reference ('{reference.unit}') are not in convertible units"
            ) from None
    pred = _values(predicted, "predicted")
    ref = _values(reference, "reference")
    try:
        np.broadcast_shapes(pred.shape, ref.shape)
    except ValueError:
        raise ValueError(f"predicted {pred.shape} and reference {ref.shape} do not have matching shapes") from None
    with np.errstate(all="ignore"):
        out = (pred - ref) / ref
    out[~np.isfinite(out)] = np.nan
    return out


def _valid(residuals, name="residuals"):
    r = _values(residuals, name).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise ValueError(f"{name} has no valid (finite, non-missing) value")
    return r


def sigma_mad(residuals):
    """:math:`1.4826\\,{\\rm median}|R - {\\rm median}R|`, ignoring missing values.

    >>> round(sigma_mad([0.1, -0.1, 0.0, -9999.0]), 4)
    0.1483

    Raises
    ------
    ValueError
        If no residual is valid.
    """
    return float(SIGMA_MAD_SCALE * median_absolute_deviation(_valid(residuals)))


def median_bias(residuals):
    """Median of the residuals, ignoring missing values.

    Raises
    ------
    ValueError
        If no residual is valid.
    """
    return float(np.median(_valid(residuals)))


def accuracy(predicted, reference):
    """``{"n", "median_bias", "sigma_mad"}`` of the fractional residuals of ``predicted`` against ``reference``."""
    r = _valid(fractional_residuals(predicted, reference), "fractional residuals")
    return {"n": int(r.size), "median_bias": median_bias(r), "sigma_mad": sigma_mad(r)}


def plot_fractional_residuals(x, predicted, reference, path, xlabel="x", ylabel=None, title=None,
                              overwrite=False):
    """Scatter of fractional residuals against ``x``, with median bias and sigma_MAD, into a PNG.

    Parameters
    ----------
    x : array_like or Quantity
        Abscissa per star (e.g. SNR, G, distance).
    predicted, reference : array_like or Quantity
    path : str
        PNG file, written atomically.

    Returns
    -------
    dict
        :func:`accuracy` of the plotted residuals.
    """
    resid = fractional_residuals(predicted, reference)
    xv = _values(x, "x")
    if xv.shape != resid.shape:
        raise ValueError(f"x has shape {xv.shape} but the residuals have shape {resid.shape}")
    acc = accuracy(predicted, reference)
    ok = np.isfinite(resid) & np.isfinite(xv)
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.scatter(xv[ok], resid[ok], s=4, alpha=0.5, lw=0)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.axhline(acc["median_bias"], color="C3", lw=1.0, label=f"median bias {acc['median_bias']:+.4f}")
    for sign in (-1, 1):
        ax.axhline(acc["median_bias"] + sign * acc["sigma_mad"], color="C3", ls="--", lw=0.8,
                   label=r"$\pm\sigma_{\rm MAD}$" + f" = {acc['sigma_mad']:.4f}" if sign > 0 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or "fractional residual (pred - ref) / ref")
    ax.set_title(title or f"{acc['n']} stars")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, overwrite=overwrite)
    return acc
