r"""Magnitude, fakemag, parallax and distance conversions.

The pseudo-luminosity of Leung & Bovy (2019) is

.. math:: L_{\rm fakemag} = \varpi\,10^{m/5} = 10^{M/5 + 2}

with :math:`\varpi` in mas and :math:`m` the extinction-corrected apparent
magnitude.  Functions take plain arrays (parallax in mas, distance in pc,
magnitudes in mag) or astropy Quantities, return Quantities for parallax and
distance, and propagate uncertainties to first order.  Missing values, the
magic number -9999 or NaN, are preserved: an output is -9999 where any input
is -9999 and NaN where any input is NaN.  The values agree with
``astroNN.gaia`` (tested); the uncertainties of :func:`mag_to_absmag` use the
correct :math:`5/\ln 10\,\sigma_\varpi/\varpi` (astroNN divides by the
absolute magnitude instead).

Examples
--------
>>> import astropy.units as u
>>> from astronn_gaiacal import conversions as conv
>>> L = conv.mag_to_fakemag(10.522, 6.067 * u.mas)
>>> round(float(L), 2)  # 6.067 * 10**(10.522 / 5)
771.57
>>> conv.fakemag_to_distance(L, 10.522).round(2)
<Quantity 164.83 pc>
"""
import numpy as np
from astropy import units as u

from .constants import LN10, MAGIC_NUMBER, is_missing

__all__ = [
    "mag_to_fakemag",
    "fakemag_to_parallax",
    "fakemag_to_distance",
    "fakemag_to_absmag",
    "absmag_to_fakemag",
    "mag_to_absmag",
    "absmag_to_distance",
    "parallax_to_distance",
    "fakemag_to_mag",
    "extinction_correction",
]

_UNITS = {"parallax": u.mas, "distance": u.pc, "mag": u.mag, "dimensionless": u.dimensionless_unscaled}


def _value(x, name, kind):
    """Float array of ``x`` in the canonical unit of ``kind``; reject wrong units."""
    unit = _UNITS[kind]
    if isinstance(x, u.Quantity):
        if kind == "mag" and x.unit in (u.dimensionless_unscaled,):
            return np.array(x.value, dtype=float)
        try:
            return np.array(x.to_value(unit), dtype=float)
        except u.UnitConversionError:
            raise u.UnitTypeError(
                f"{name} must be a Quantity in units of {unit} (or equivalent); got unit "
                f"'{x.unit}'. Did you pass a distance as a parallax, or vice versa?"
            ) from None
    arr = np.array(x, dtype=float)
    return arr


def _inputs(**named):
    """Validate and broadcast named inputs; returns (arrays, magic mask, nan mask)."""
    arrays = {name: _value(val, name, kind) for name, (val, kind) in named.items() if val is not None}
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in arrays.items())
        raise ValueError(f"input shapes do not broadcast together: {shapes}") from None
    arrays = {n: np.broadcast_to(a, shape) for n, a in arrays.items()}
    magic = np.zeros(shape, bool)
    nan = np.zeros(shape, bool)
    for a in arrays.values():
        magic |= a == MAGIC_NUMBER
        nan |= np.isnan(a)
    return arrays, magic, nan & ~magic


def _finish(out, magic, nan, unit=None):
    out = np.array(out, dtype=float)
    out[magic] = MAGIC_NUMBER
    out[nan] = np.nan
    if out.ndim == 0:
        out = out[()]
    return out * unit if unit is not None else out


def _require_positive_fakemag(fakemag, missing):
    bad = (fakemag <= 0) & ~missing
    if np.any(bad):
        idx = np.argwhere(bad)[0]
        raise ValueError(
            f"fakemag must be positive ({int(bad.sum())} value(s) <= 0, first at index "
            f"{tuple(int(i) for i in idx)}: {fakemag[tuple(idx)]!r}); a luminosity cannot be "
            f"negative. Mark missing values with -9999 or NaN."
        )


def mag_to_fakemag(mag, parallax, parallax_error=None):
    r"""Apparent magnitude and parallax to fakemag :math:`\varpi 10^{m/5}`.

    Negative parallaxes give negative fakemag, valid as training labels.

    Parameters
    ----------
    mag : array_like or Quantity
        Extinction-corrected apparent magnitude.
    parallax, parallax_error : array_like or Quantity
        In mas if plain numbers.

    Returns
    -------
    fakemag : ndarray
    fakemag_error : ndarray
        :math:`\sigma_\varpi 10^{m/5}`; only if ``parallax_error`` is given.
    """
    a, magic, nan = _inputs(mag=(mag, "mag"), parallax=(parallax, "parallax"), parallax_error=(parallax_error, "parallax"))
    with np.errstate(all="ignore"):
        factor = 10.0 ** (0.2 * a["mag"])
        fakemag = _finish(a["parallax"] * factor, magic, nan)
        if parallax_error is None:
            return fakemag
        return fakemag, _finish(np.abs(a["parallax_error"]) * factor, magic, nan)


def fakemag_to_parallax(fakemag, mag, fakemag_error=None):
    r"""Fakemag and apparent magnitude to parallax :math:`L 10^{-m/5}`.

    Returns
    -------
    parallax : Quantity [mas]
    parallax_error : Quantity [mas]
        Only if ``fakemag_error`` is given.

    Raises
    ------
    ValueError
        If a non-missing fakemag is not positive.
    """
    a, magic, nan = _inputs(fakemag=(fakemag, "dimensionless"), mag=(mag, "mag"), fakemag_error=(fakemag_error, "dimensionless"))
    _require_positive_fakemag(a["fakemag"], magic | nan)
    with np.errstate(all="ignore"):
        factor = 10.0 ** (-0.2 * a["mag"])
        parallax = _finish(a["fakemag"] * factor, magic, nan, u.mas)
        if fakemag_error is None:
            return parallax
        return parallax, _finish(np.abs(a["fakemag_error"]) * factor, magic, nan, u.mas)


def fakemag_to_distance(fakemag, mag, fakemag_error=None):
    r"""Fakemag and apparent magnitude to distance :math:`1000\,10^{m/5}/L` pc.

    Returns
    -------
    distance : Quantity [pc]
    distance_error : Quantity [pc]
        :math:`d\,\sigma_L/L`; only if ``fakemag_error`` is given.
    """
    a, magic, nan = _inputs(fakemag=(fakemag, "dimensionless"), mag=(mag, "mag"), fakemag_error=(fakemag_error, "dimensionless"))
    _require_positive_fakemag(a["fakemag"], magic | nan)
    with np.errstate(all="ignore"):
        dist = 1000.0 * 10.0 ** (0.2 * a["mag"]) / a["fakemag"]
        out = _finish(dist, magic, nan, u.pc)
        if fakemag_error is None:
            return out
        return out, _finish(dist * np.abs(a["fakemag_error"]) / a["fakemag"], magic, nan, u.pc)


def fakemag_to_absmag(fakemag, fakemag_error=None):
    r"""Fakemag to absolute magnitude :math:`5\log_{10}L - 10`.

    Returns
    -------
    absmag : ndarray
    absmag_error : ndarray
        :math:`\tfrac{5}{\ln 10}\sigma_L/L`; only if ``fakemag_error`` is given.
    """
    a, magic, nan = _inputs(fakemag=(fakemag, "dimensionless"), fakemag_error=(fakemag_error, "dimensionless"))
    _require_positive_fakemag(a["fakemag"], magic | nan)
    with np.errstate(all="ignore"):
        absmag = _finish(5.0 * (np.log10(a["fakemag"]) - 2.0), magic, nan)
        if fakemag_error is None:
            return absmag
        return absmag, _finish(5.0 / LN10 * np.abs(a["fakemag_error"]) / a["fakemag"], magic, nan)


def absmag_to_fakemag(absmag, absmag_error=None):
    r"""Absolute magnitude to fakemag :math:`10^{M/5+2}`.

    Returns
    -------
    fakemag : ndarray
    fakemag_error : ndarray
        :math:`\tfrac{\ln 10}{5} L\,\sigma_M`; only if ``absmag_error`` is given.
    """
    a, magic, nan = _inputs(absmag=(absmag, "mag"), absmag_error=(absmag_error, "mag"))
    with np.errstate(all="ignore"):
        fakemag = 10.0 ** (0.2 * a["absmag"] + 2.0)
        out = _finish(fakemag, magic, nan)
        if absmag_error is None:
            return out
        return out, _finish(LN10 / 5.0 * fakemag * np.abs(a["absmag_error"]), magic, nan)


def mag_to_absmag(mag, parallax, parallax_error=None):
    r"""Apparent magnitude and parallax to absolute magnitude.

    Non-positive parallaxes have no absolute magnitude and give NaN.

    Returns
    -------
    absmag : ndarray
    absmag_error : ndarray
        :math:`\tfrac{5}{\ln 10}\sigma_\varpi/\varpi`; only if ``parallax_error`` is given.
    """
    a, magic, nan = _inputs(mag=(mag, "mag"), parallax=(parallax, "parallax"), parallax_error=(parallax_error, "parallax"))
    with np.errstate(all="ignore"):
        plx = np.where(a["parallax"] > 0, a["parallax"], np.nan)
        absmag = _finish(a["mag"] + 5.0 * (np.log10(plx) - 2.0), magic, nan)
        if parallax_error is None:
            return absmag
        return absmag, _finish(5.0 / LN10 * np.abs(a["parallax_error"] / plx), magic, nan)


def absmag_to_distance(absmag, mag):
    r"""Distance modulus to distance :math:`10^{(m-M)/5+1}` pc."""
    a, magic, nan = _inputs(absmag=(absmag, "mag"), mag=(mag, "mag"))
    with np.errstate(all="ignore"):
        return _finish(10.0 ** ((a["mag"] - a["absmag"]) / 5.0 + 1.0), magic, nan, u.pc)


def parallax_to_distance(parallax, parallax_error=None):
    r"""Inverse parallax, :math:`1000/\varpi` pc (NaN where :math:`\varpi \le 0`).

    Returns
    -------
    distance : Quantity [pc]
    distance_error : Quantity [pc]
        :math:`d\,\sigma_\varpi/\varpi`; only if ``parallax_error`` is given.
    """
    a, magic, nan = _inputs(parallax=(parallax, "parallax"), parallax_error=(parallax_error, "parallax"))
    with np.errstate(all="ignore"):
        plx = np.where(a["parallax"] > 0, a["parallax"], np.nan)
        dist = 1000.0 / plx
        out = _finish(dist, magic, nan, u.pc)
        if parallax_error is None:
            return out
        return out, _finish(dist * np.abs(a["parallax_error"]) / plx, magic, nan, u.pc)


def fakemag_to_mag(fakemag, distance):
    r"""Fakemag and distance to apparent magnitude :math:`5\log_{10}(L d / 1000\,{\rm pc})`."""
    a, magic, nan = _inputs(fakemag=(fakemag, "dimensionless"), distance=(distance, "distance"))
    _require_positive_fakemag(a["fakemag"], magic | nan)
    with np.errstate(all="ignore"):
        return _finish(5.0 * np.log10(a["fakemag"] * a["distance"] / 1000.0), magic, nan)


def extinction_correction(mag, extinction):
    """Extinction-corrected magnitude ``mag - extinction``.

    As in the paper (and astroNN), an extinction below -1 (e.g. -9999, a
    missing AKTARG) means no extinction correction, not a missing star.
    """
    a, magic, nan = _inputs(mag=(mag, "mag"), extinction=(extinction, "mag"))
    ext = a["extinction"]
    magic = a["mag"] == MAGIC_NUMBER
    nan = np.isnan(a["mag"]) | np.isnan(ext)
    return _finish(a["mag"] - np.where(ext < -1.0, 0.0, ext), magic, nan & ~magic)


def mas_values(x, name, n=None, scalar_ok=False):
    """Per-star float array in mas from a parallax-like Quantity or plain numbers (taken as mas).

    The magic number stays the magic number in any unit.  ``scalar_ok`` broadcasts a scalar to ``n`` stars.
    """
    if isinstance(x, u.Quantity):
        try:
            converted = x.to_value(u.mas)
        except u.UnitConversionError:
            raise u.UnitTypeError(f"{name} must be a parallax-like Quantity (mas); got unit '{x.unit}'") from None
        raw = np.asarray(x.value, dtype=float)
        arr = np.where(is_missing(raw), raw, converted)  # -9999 stays -9999 in any unit
    else:
        arr = plain_values(x, name)
    return per_star(arr, name, n, scalar_ok)


def plain_values(x, name):
    """Float array from numbers, a dimensionless/mag Quantity or a masked column (masked -> NaN)."""
    if isinstance(x, u.Quantity):
        if x.unit.physical_type != "dimensionless" and x.unit != u.mag:
            raise u.UnitTypeError(f"{name} must be dimensionless or in mag; got unit '{x.unit}'")
        x = x.value
    if np.ma.isMaskedArray(x) or hasattr(x, "mask"):
        x = np.ma.filled(np.ma.asarray(x, dtype=float), np.nan)
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric") from None


def per_star(arr, name, n, scalar_ok=False):
    """``arr`` checked to be 1-D with ``n`` values (a scalar broadcast with ``scalar_ok``)."""
    if arr.ndim == 0 and scalar_ok and n is not None:
        return np.full(n, float(arr))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per star){' or a scalar' if scalar_ok else ''}; "
                         f"got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values; expected {n} (one per star)")
    return arr
