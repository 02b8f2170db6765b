"""Per-star column validation for the dataset format: canonical units, masked values, errors.

:func:`as_column` turns one column (a list, array, masked array or Quantity)
into a validated 1-D array in the canonical unit of :data:`CANONICAL_UNITS`;
:func:`as_spectra` does the same for a 2-D ``spectra``/``spectra_err`` member.
:class:`~astronn_gaiacal.io.dataset.Dataset` is built from them.

Examples
--------
>>> from astronn_gaiacal.io.columns import as_column
>>> values, unit = as_column("parallax", [1000.0, 2500.0, -9999.0], "uas")
>>> values.tolist(), unit
([1.0, 2.5, -9999.0], Unit("mas"))
"""
import numpy as np
from astropy import units as u

from ..constants import COLUMN_UNITS, MAGIC_NUMBER, is_missing

__all__ = ["CANONICAL_UNITS", "DatasetError", "MissingColumnError", "as_column", "as_spectra", "canonical_unit"]

#: Canonical unit of every column with a physical unit (:data:`astronn_gaiacal.constants.COLUMN_UNITS`).
#: ``true_<name>`` (simulator truth) has the unit of ``<name>``.  Columns not listed keep the unit they come with.
CANONICAL_UNITS = COLUMN_UNITS


class DatasetError(ValueError):
    """Invalid dataset content; the message names the offending column or argument."""


class MissingColumnError(DatasetError, KeyError):
    """A required column is absent (both a :class:`DatasetError` and a ``KeyError``)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def canonical_unit(name):
    """Canonical unit of column ``name`` as an astropy unit, or None if it has none.

    >>> canonical_unit("parallax"), canonical_unit("true_parallax"), canonical_unit("snr")
    (Unit("mas"), Unit("mas"), None)
    """
    if name not in CANONICAL_UNITS and name.startswith("true_"):
        name = name[len("true_"):]
    if name not in CANONICAL_UNITS:
        return None
    return u.Unit(CANONICAL_UNITS[name])


def _fill_masked(name, values):
    """Masked entries become NaN (floats), -9999 (integers) or '' (strings)."""
    mask = np.ma.getmaskarray(values)
    data = np.ma.getdata(values)
    if not mask.any():
        return np.asarray(data)
    kind = data.dtype.kind
    if kind == "f":
        fill = np.nan
    elif kind in "iu":
        if kind == "u" or np.iinfo(data.dtype).min > MAGIC_NUMBER:
            data = data.astype(np.int64)
        fill = int(MAGIC_NUMBER)
    elif kind in "US":
        fill = ""
    elif kind == "b":
        raise DatasetError(f"column '{name}' is boolean with masked entries; a boolean cannot be missing")
    else:
        data = data.astype(float)
        fill = np.nan
    out = np.array(data, copy=True)
    out[mask] = fill
    return out


def _convert(name, values, unit):
    """Values in ``unit`` to the canonical unit of ``name``; missing entries untouched."""
    target = canonical_unit(name)
    if unit is None or target is None:
        return values, (None if unit is None else unit)
    try:
        scale = unit.to(target)
    except u.UnitConversionError:
        raise DatasetError(
            f"column '{name}' has unit '{unit}', which cannot be converted to its canonical unit '{target}'"
        ) from None
    if scale == 1.0:
        return values, target
    if values.dtype.kind not in "fiu":
        raise DatasetError(f"column '{name}' has a unit but is not numeric (dtype {values.dtype})")
    out = values.astype(float)
    keep = is_missing(out)
    out = np.where(keep, out, out * scale)
    return out, target


def _parse_unit(name, unit):
    """An astropy unit, or None for no/dimensionless unit.  A unit astropy does not know is
    kept as it is (UnrecognizedUnit) on columns without a canonical unit, and an error on the others."""
    if unit is None or unit == "":
        return None
    if isinstance(unit, bytes):
        unit = unit.decode()
    try:
        parsed = u.Unit(unit, parse_strict="silent") if isinstance(unit, str) else u.Unit(unit)
    except (ValueError, TypeError):
        raise DatasetError(f"column '{name}' has an unknown unit {unit!r}") from None
    if isinstance(parsed, u.UnrecognizedUnit) and canonical_unit(name) is not None:
        raise DatasetError(
            f"column '{name}' has an unknown unit {unit!r}; expected one convertible to '{canonical_unit(name)}'"
        )
    if parsed == u.dimensionless_unscaled:
        return None
    return parsed


def as_column(name, values, unit=None, n=None):
    """Validate one column and convert it to the canonical unit of ``name``.

    Parameters
    ----------
    name : str
        Column name (its canonical unit comes from :func:`canonical_unit`).
    values : array_like, masked array or Quantity
        One value per star: numbers or strings.  Masked entries become NaN
        (floats), -9999 (integers) or '' (strings).
    unit : str or astropy Unit, optional
        Unit of plain numbers (a Quantity carries its own).
    n : int, optional
        Number of stars the column must have.

    Returns
    -------
    values : ndarray
        1-D float64, int64, bool or str array (a new copy); missing entries
        (-9999, NaN) are not converted.
    unit : astropy Unit or None
        The canonical unit (or the given one for a column without a canonical unit).

    Raises
    ------
    DatasetError
        Not 1-D, wrong length, Python objects, a unit on strings, or a unit
        that does not convert to the canonical one.
    """
    if isinstance(values, u.Quantity):
        if unit is not None and _parse_unit(name, unit) != _parse_unit(name, values.unit):
            raise DatasetError(f"column '{name}' is a Quantity in '{values.unit}' but units gives '{unit}'")
        unit = values.unit
        values = values.value
    unit = _parse_unit(name, unit)
    if isinstance(values, np.ma.MaskedArray) or hasattr(values, "mask"):
        values = _fill_masked(name, np.ma.asarray(values))
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        try:
            arr = np.array([v.decode() if isinstance(v, bytes) else v for v in arr.ravel()]).reshape(arr.shape)
        except (AttributeError, UnicodeDecodeError):
            pass
        if arr.dtype.kind == "O":
            raise DatasetError(f"column '{name}' must hold numbers or strings, not Python objects")
    if arr.ndim != 1:
        raise DatasetError(f"column '{name}' must be 1-D (one value per star); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DatasetError(f"column '{name}' has {arr.shape[0]} values but the dataset has {n} stars")
    kind = arr.dtype.kind
    if kind == "S":
        arr = np.char.decode(arr, "utf-8")
        kind = "U"
    if kind == "U":
        if unit is not None:
            raise DatasetError(f"column '{name}' holds strings but has unit '{unit}'")
        return np.array(arr, copy=True), None
    if kind == "f":
        arr = arr.astype(np.float64)
    elif kind in "iu":
        arr = arr.astype(np.int64)
    elif kind != "b":
        raise DatasetError(f"column '{name}' must hold numbers or strings; got dtype {arr.dtype}")
    arr, unit = _convert(name, np.array(arr, copy=True), unit)
    if unit is None and canonical_unit(name) is not None:
        unit = canonical_unit(name)
    return arr, unit


def as_spectra(name, values):
    """A new float32 (N, P) array of ``spectra`` or ``spectra_err``; masked entries become NaN.

    Raises
    ------
    DatasetError
        Not numeric or not 2-D.
    """
    if isinstance(values, u.Quantity):
        values = values.value
    if hasattr(values, "mask"):
        values = np.ma.filled(np.ma.asarray(values, dtype=np.float32), np.nan)
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"'{name}' must be a numeric (N, P) array; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DatasetError(f"'{name}' must be 2-D (N stars, P pixels); got shape {arr.shape}")
    return np.array(arr, dtype=np.float32, copy=True)
