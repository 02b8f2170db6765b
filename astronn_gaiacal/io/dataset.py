"""The dataset format: one file per training or test set, with a validating reader.

A :class:`Dataset` holds N stars: optional continuum-normalised spectra
(``spectra``, ``spectra_err``, N x P) and named 1-D columns following Gaia and
APOGEE names (``mag``, ``mag_ext``, ``parallax``, ``parallax_error``,
``phot_g_mean_mag``, ``bp_rp``, ``teff``, ``apogee_id``, ``source_id``, ...).
Columns with a physical unit are held in the unit of :data:`CANONICAL_UNITS`.
Missing values are -9999 or NaN and are kept as they are.

On disk the format is HDF5 (see ``docs/dataset_format.rst``); an astropy
Table, or a FITS/ECSV/CSV/Parquet table file with the same column names, is
accepted too.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from astronn_gaiacal.io.dataset import Dataset, read_dataset
>>> ds = Dataset(spectra=np.ones((3, 5)), columns={"mag": [10.5, 11.0, -9999.0],
...              "parallax": [1.0, 0.5, np.nan], "apogee_id": ["a", "b", "c"]},
...              units={"parallax": "uas"}, attrs={"band": "Ks", "gaia_release": "dr2"})
>>> ds["parallax"]                      # converted to the canonical unit, mas
array([0.001 , 0.0005,    nan])
>>> path = os.path.join(tempfile.mkdtemp(), "train.h5")
>>> ds.write(path)
>>> back = read_dataset(path, require=("spectra", "mag"))
>>> len(back), back.names, back.attrs["gaia_release"]
(3, ['mag', 'parallax', 'apogee_id'], 'dr2')
"""
import json
import os
import warnings
import weakref

import numpy as np
from astropy import units as u

from .atomic import atomic_path
from ..constants import MAGIC_NUMBER, is_missing

__all__ = [
    "CANONICAL_UNITS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SPECTRA_NAMES",
    "Dataset",
    "DatasetError",
    "MissingColumnError",
    "canonical_unit",
    "read_dataset",
    "write_dataset",
]

#: Canonical unit of every column with a physical unit.  ``true_<name>`` (simulator
#: truth) has the unit of ``<name>``.  Columns not listed keep the unit they come with.
CANONICAL_UNITS = {
    "mag": "mag",
    "mag_error": "mag",
    "mag_ext": "mag",
    "parallax": "mas",
    "parallax_error": "mas",
    "zeropoint": "mas",
    "ra": "deg",
    "dec": "deg",
    "ecl_lat": "deg",
    "pmra": "mas / yr",
    "pmra_error": "mas / yr",
    "pmdec": "mas / yr",
    "pmdec_error": "mas / yr",
    "phot_g_mean_mag": "mag",
    "phot_bp_mean_mag": "mag",
    "phot_rp_mean_mag": "mag",
    "bp_rp": "mag",
    "teff": "K",
    "vscatter": "km / s",
    "nu_eff_used_in_astrometry": "1 / um",
    "pseudocolour": "1 / um",
    "distance": "pc",
    "mass": "solMass",
}

#: The two 2-D members of a dataset.
SPECTRA_NAMES = ("spectra", "spectra_err")

#: Value of the HDF5 file attribute ``format`` that marks the dataset format.
FORMAT_NAME = "astronn_gaiacal dataset"
#: Version of the layout, file attribute ``format_version``.
FORMAT_VERSION = 1
#: File endings read and written as the HDF5 dataset format.
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")

_FORMAT_ATTR = "format"
_VERSION_ATTR = "format_version"
_ORDER_ATTR = "column_order"
_JSON_ATTR = "json_attributes"
_RESERVED_ATTRS = (_FORMAT_ATTR, _VERSION_ATTR, _ORDER_ATTR, _JSON_ATTR)


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


def _as_column(name, values, unit, n=None):
    """Validate one column: 1-D, length n, numbers or strings; convert to canonical unit."""
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


#: The read-only spectra arrays datasets own, by id: a new dataset made from another's shares them.
_OWNED = weakref.WeakValueDictionary()


def _as_spectra(name, values):
    if _OWNED.get(id(values)) is values:
        return values
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


def _readonly(arr):
    arr.setflags(write=False)
    _OWNED[id(arr)] = arr
    return arr


def _check_attrs(attrs):
    out = {}
    for key, value in dict(attrs or {}).items():
        if not isinstance(key, str):
            raise DatasetError(f"attribute names must be strings; got {key!r}")
        if key in _RESERVED_ATTRS:
            raise DatasetError(f"attribute '{key}' is reserved by the file format")
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (list, tuple, dict)):
            try:  # structured metadata (e.g. a selection report) is kept as JSON
                value = json.loads(json.dumps(value))
            except (TypeError, ValueError):
                raise DatasetError(f"attribute '{key}' is not JSON-serialisable") from None
        elif not isinstance(value, (str, int, float, bool)):
            raise DatasetError(
                f"attribute '{key}' must be a string, a number, or a JSON-serialisable list/dict; "
                f"got {type(value).__name__}"
            )
        out[key] = value
    return out


class Dataset:
    """N stars: optional spectra and named per-star columns, with units and file attributes.

    Parameters
    ----------
    spectra, spectra_err : (N, P) array_like, optional
        Continuum-normalised spectra and their uncertainties; stored as float32.
    columns : mapping of str to 1-D array_like, optional
        Per-star values (numbers, or strings for ids).  A Quantity, or a name
        listed in ``units``, is converted to the canonical unit of
        :data:`CANONICAL_UNITS`; plain numbers are taken to be in it already.
        Masked entries become NaN (floats), -9999 (integers) or '' (strings).
    units : mapping of str to str or Unit, optional
        Units of plain-number columns.
    attrs : mapping, optional
        File-level metadata, e.g. ``{"band": "Ks", "gaia_release": "dr2"}``:
        strings, numbers, or JSON-serialisable lists/dicts.

    Raises
    ------
    DatasetError
        Wrong shapes or lengths, non-numeric spectra, a unit that does not
        convert to the canonical one, or a column name that is not a string.

    Notes
    -----
    The arrays are read-only; copy one to modify it and use
    :meth:`with_columns` to make a new dataset.
    """

    def __init__(self, spectra=None, spectra_err=None, columns=None, units=None, attrs=None):
        columns = dict(columns or {})
        units = dict(units or {})
        for key in units:
            if key not in columns:
                raise DatasetError(f"units given for '{key}', which is not a column")
        if spectra_err is not None and spectra is None:
            raise DatasetError("'spectra_err' given without 'spectra'")
        self._spectra = None if spectra is None else _readonly(_as_spectra("spectra", spectra))
        self._spectra_err = None
        if spectra_err is not None:
            err = _as_spectra("spectra_err", spectra_err)
            if err.shape != self._spectra.shape:
                raise DatasetError(
                    f"'spectra_err' has shape {err.shape} but 'spectra' has shape {self._spectra.shape}"
                )
            self._spectra_err = _readonly(err)
        n = None if self._spectra is None else self._spectra.shape[0]
        self._columns = {}
        self._units = {}
        for name, values in columns.items():
            if not isinstance(name, str) or not name:
                raise DatasetError(f"column names must be non-empty strings; got {name!r}")
            if name in SPECTRA_NAMES:
                raise DatasetError(f"'{name}' is passed as its own argument, not as a column")
            arr, unit = _as_column(name, values, units.get(name), n)
            n = arr.shape[0] if n is None else n
            self._columns[name] = _readonly(arr)
            if unit is not None:
                self._units[name] = unit
        if n is None:
            raise DatasetError("a dataset needs spectra or at least one column")
        self._n = n
        self.attrs = _check_attrs(attrs)

    # ----------------------------------------------------------------- access
    def __len__(self):
        return self._n

    def __contains__(self, name):
        if name == "spectra":
            return self._spectra is not None
        if name == "spectra_err":
            return self._spectra_err is not None
        return name in self._columns

    def __getitem__(self, name):
        if name == "spectra" and self._spectra is not None:
            return self._spectra
        if name == "spectra_err" and self._spectra_err is not None:
            return self._spectra_err
        if name in self._columns:
            return self._columns[name]
        raise MissingColumnError(f"the dataset has no column '{name}' (columns: {', '.join(self.names) or 'none'})")

    def __repr__(self):
        parts = [f"N={self._n}"]
        if self._spectra is not None:
            parts.append(f"spectra {self._spectra.shape}" + (" with errors" if self._spectra_err is not None else ""))
        parts.append(f"columns {self.names}")
        if self.attrs:
            parts.append(f"attrs {self.attrs}")
        return f"<Dataset {'; '.join(parts)}>"

    @property
    def names(self):
        """Column names in order (without ``spectra``/``spectra_err``)."""
        return list(self._columns)

    @property
    def units(self):
        """Units of the columns that have one, ``{name: astropy Unit}``."""
        return dict(self._units)

    def unit(self, name):
        """Unit of column ``name`` (None if it has none)."""
        self[name]
        return self._units.get(name)

    def quantity(self, name):
        """Column ``name`` as a Quantity in its unit (dimensionless if it has none).

        Missing values (-9999, NaN) are kept as they are.
        """
        values = self[name]
        if values.ndim != 1 or values.dtype.kind not in "fiub":
            raise TypeError(f"column '{name}' is not numeric (dtype {values.dtype}); it has no Quantity")
        return u.Quantity(values, self._units.get(name, u.dimensionless_unscaled), dtype=float)

    def corrected_mag(self):
        """Extinction-corrected magnitude ``mag - mag_ext`` (``mag_ext`` optional).

        Uses :func:`astronn_gaiacal.conversions.extinction_correction`: an
        extinction below -1 (e.g. -9999) means no correction; a missing
        ``mag`` stays -9999/NaN.
        """
        from ..conversions import extinction_correction

        mag = self["mag"]
        ext = self._columns.get("mag_ext", np.zeros(self._n))
        return np.asarray(extinction_correction(mag, ext), dtype=float)

    def feature_matrix(self, names):
        """Columns ``names`` stacked as an (N, len(names)) float array, in canonical units."""
        names = list(names)
        if not names:
            return np.zeros((self._n, 0))
        cols = []
        for name in names:
            values = self[name]
            if values.dtype.kind not in "fiub":
                raise DatasetError(f"feature '{name}' is not numeric (dtype {values.dtype})")
            cols.append(values.astype(float))
        return np.column_stack(cols)

    # --------------------------------------------------------------- new sets
    def _parts(self):
        return dict(spectra=self._spectra, spectra_err=self._spectra_err, columns=dict(self._columns),
                    units=dict(self._units), attrs=dict(self.attrs))

    def subset(self, index):
        """New dataset of the stars selected by a boolean mask or an integer index array.

        A boolean mask keeps the stars' order; an integer index gives them in its order.
        """
        index = np.asarray(index)
        if index.dtype.kind == "b":
            if index.shape != (self._n,):
                raise DatasetError(f"boolean index has shape {index.shape}; the dataset has {self._n} stars")
        elif index.dtype.kind in "iu" or index.size == 0:
            index = index.astype(np.intp)
            if index.ndim != 1:
                raise DatasetError(f"integer index must be 1-D; got shape {index.shape}")
            if index.size and (index.max() >= self._n or index.min() < -self._n):
                raise DatasetError(f"index out of range for a dataset of {self._n} stars")
        else:
            raise DatasetError(f"index must be boolean or integer; got dtype {index.dtype}")
        parts = self._parts()
        for key in SPECTRA_NAMES:
            if parts[key] is not None:
                parts[key] = parts[key][index]
        parts["columns"] = {k: v[index] for k, v in parts["columns"].items()}
        if not parts["columns"] and parts["spectra"] is None:
            raise DatasetError("cannot subset an empty dataset")
        return Dataset(**parts)

    def with_columns(self, units=None, **columns):
        """New dataset with ``columns`` added or replaced (``spectra``/``spectra_err`` too).

        >>> ds = Dataset(columns={"mag": [10.0, 11.0]})
        >>> ds.with_columns(parallax=[1.0, 2.0], units={"parallax": "mas"}).names
        ['mag', 'parallax']
        """
        parts = self._parts()
        units = dict(units or {})
        for key in SPECTRA_NAMES:
            if key in columns:
                parts[key] = columns.pop(key)
        for name, values in columns.items():
            parts["columns"][name] = values
            parts["units"].pop(name, None)
            if name in units:
                parts["units"][name] = units.pop(name)
        if units:
            raise DatasetError(f"units given for {sorted(units)}, which are not among the new columns")
        if parts["spectra"] is None and parts["spectra_err"] is not None:
            raise DatasetError("'spectra_err' given without 'spectra'")
        return Dataset(**parts)

    # ------------------------------------------------------------ conversion
    def to_table(self):
        """The dataset as an astropy QTable (spectra as 2-D columns, attrs in ``meta``)."""
        from astropy.table import QTable

        table = QTable(meta=dict(self.attrs))
        for key in SPECTRA_NAMES:
            if key in self:
                table[key] = self[key]
        for name in self.names:
            unit = self._units.get(name)
            table[name] = self[name] * unit if unit is not None else self[name]
        return table

    @classmethod
    def from_table(cls, table):
        """Dataset from an astropy Table/QTable with the dataset's column names."""
        spectra = {}
        columns = {}
        units = {}
        for name in table.colnames:
            col = table[name]
            if name in SPECTRA_NAMES:
                spectra[name] = col
                continue
            unit = getattr(col, "unit", None)
            if isinstance(col, u.Quantity):
                columns[name] = col
                continue
            values = col.data if hasattr(col, "data") else np.asarray(col)
            if hasattr(col, "mask") and np.any(col.mask):
                values = np.ma.MaskedArray(np.asarray(values), mask=np.asarray(col.mask))
            columns[name] = values
            if unit is not None:
                units[name] = unit
        meta = {}
        for key, value in (table.meta or {}).items():
            if key.lower() in ("comments", "history", "extname") or not isinstance(key, str):
                continue
            if isinstance(value, (str, bytes, int, float, bool, np.generic, list, dict)):
                meta[key.lower()] = value
        return cls(spectra=spectra.get("spectra"), spectra_err=spectra.get("spectra_err"),
                   columns=columns, units=units, attrs=meta)

    def write(self, path, overwrite=False):
        """Write atomically; see :func:`write_dataset`."""
        write_dataset(path, self, overwrite=overwrite)


# --------------------------------------------------------------------- files
def _is_hdf5(path):
    return os.fspath(path).lower().endswith(HDF5_EXTENSIONS)


def write_dataset(path, dataset, overwrite=False):
    """Write ``dataset`` to ``path`` atomically.

    ``.h5``/``.hdf5`` gives the HDF5 dataset format; a table ending
    (``.fits``, ``.ecsv``, ``.vot``, ``.parquet``, ...; see
    :mod:`astronn_gaiacal.io.tables`) gives a table with the same columns (via
    :meth:`Dataset.to_table`).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    TypeError
        If ``dataset`` is not a :class:`Dataset`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset; got {type(dataset).__name__}")
    path = os.fspath(path)
    if not _is_hdf5(path):
        from .tables import TableFormatError, table_format, write_table

        try:
            fmt = table_format(path)
        except TableFormatError as err:
            raise DatasetError(str(err)) from None
        if fmt == "ascii.csv" and "spectra" in dataset:
            raise DatasetError("a CSV file cannot hold 'spectra'; use .h5, .fits or .ecsv")
        table = dataset.to_table()
        if fmt == "fits":  # a FITS header holds no structured value: keep those as JSON text
            for key, value in table.meta.items():
                if isinstance(value, (list, dict)):
                    table.meta[key] = json.dumps(value)
        elif fmt in ("votable", "ascii.csv") and dataset.attrs:
            warnings.warn(f"{fmt} files do not keep the dataset attributes {sorted(dataset.attrs)}; "
                          f"write .h5, .fits, .ecsv or .parquet to keep them", UserWarning, stacklevel=2)
        write_table(table, path, overwrite=overwrite)
        return

    import h5py

    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs[_FORMAT_ATTR] = FORMAT_NAME
            f.attrs[_VERSION_ATTR] = FORMAT_VERSION
            f.attrs[_ORDER_ATTR] = np.array(dataset.names, dtype=h5py.string_dtype())
            json_attrs = []
            for key, value in dataset.attrs.items():
                if isinstance(value, (list, dict)):
                    value = json.dumps(value)
                    json_attrs.append(key)
                f.attrs[key] = value
            if json_attrs:
                f.attrs[_JSON_ATTR] = np.array(json_attrs, dtype=h5py.string_dtype())
            for key in SPECTRA_NAMES:
                if key in dataset:
                    data = dataset[key]
                    f.create_dataset(key, data=data, chunks=(min(len(data), 256), data.shape[1]) if data.size else None)
            for name in dataset.names:
                values = dataset[name]
                if values.dtype.kind == "U":
                    ds = f.create_dataset(name, data=values.astype(object), dtype=h5py.string_dtype())
                else:
                    ds = f.create_dataset(name, data=values)
                unit = dataset.unit(name)
                if unit is not None:
                    ds.attrs["unit"] = unit.to_string()


def _read_hdf5(path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        raise DatasetError(f"cannot read '{path}' as HDF5: {err}") from None
    with f:
        fmt = f.attrs.get(_FORMAT_ATTR)
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt is not None and fmt != FORMAT_NAME:
            raise DatasetError(f"'{path}' is an HDF5 file of format {fmt!r}, not an {FORMAT_NAME}")
        attrs = {k: v for k, v in f.attrs.items() if k not in _RESERVED_ATTRS}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v)
                 for k, v in attrs.items()}
        for key in f.attrs.get(_JSON_ATTR, []):
            key = key.decode() if isinstance(key, bytes) else str(key)
            try:
                attrs[key] = json.loads(attrs[key])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"'{path}': attribute '{key}' is listed as JSON but is not") from None
        if _ORDER_ATTR in f.attrs:
            order = [o.decode() if isinstance(o, bytes) else str(o) for o in f.attrs[_ORDER_ATTR]]
            missing = [n for n in order if n not in f]
            if missing:
                raise DatasetError(f"'{path}' lists column(s) {missing} that it does not contain")
        else:
            order = [k for k in f.keys() if k not in SPECTRA_NAMES]
        arrays = {}
        units = {}
        for name in list(SPECTRA_NAMES) + order:
            if name not in f:
                continue
            node = f[name]
            if not isinstance(node, h5py.Dataset):
                raise DatasetError(f"'{name}' in '{path}' is a group, not a dataset")
            if name not in SPECTRA_NAMES and node.ndim != 1:
                raise DatasetError(
                    f"column '{name}' in '{path}' must be 1-D; got shape {node.shape} "
                    f"(only {SPECTRA_NAMES} are 2-D)"
                )
            if h5py.check_string_dtype(node.dtype) is not None:
                arrays[name] = np.array(node.asstr()[()], dtype=str)
            else:
                arrays[name] = node[()]
            if "unit" in node.attrs:
                unit = node.attrs["unit"]
                units[name] = unit.decode() if isinstance(unit, bytes) else str(unit)
        extra = [k for k in f.keys() if k not in arrays]
        if extra:
            raise DatasetError(f"'{path}' has member(s) {extra} missing from its column order")
    spectra = arrays.pop("spectra", None)
    spectra_err = arrays.pop("spectra_err", None)
    for key in SPECTRA_NAMES:
        units.pop(key, None)
    return Dataset(spectra=spectra, spectra_err=spectra_err, columns=arrays, units=units, attrs=attrs)


def _read_table_file(path):
    from .tables import TableFormatError, read_table

    try:
        table = read_table(path)
    except TableFormatError as err:
        raise DatasetError(f"cannot read '{path}' as a table: {err}") from None
    return Dataset.from_table(table)


def read_dataset(source, require=(), features=()):
    """Read and validate a dataset.

    Parameters
    ----------
    source : str, os.PathLike, astropy Table or Dataset
        An HDF5 dataset file (``.h5``/``.hdf5``), a FITS/ECSV/CSV/VOTable/Parquet
        table file with the same column names (read by :func:`astronn_gaiacal.io.tables.read_table`), an astropy Table/QTable, or a
        :class:`Dataset` (validated again).
    require : iterable of str
        Columns that must be present and not all missing (``"spectra"`` included).
    features : iterable of str
        Offset-model features: required as well, and numeric.

    Returns
    -------
    Dataset
        Columns with units converted to :data:`CANONICAL_UNITS`; missing
        values (-9999, NaN) kept.

    Raises
    ------
    FileNotFoundError
        If ``source`` is a path that does not exist.
    MissingColumnError
        A required column or feature is absent.
    DatasetError
        Shape mismatch, unconvertible unit, a required column with no valid
        value, or an unreadable file; the message names the column or file.
    """
    from astropy.table import Table

    if isinstance(source, Dataset):
        dataset = source
    elif isinstance(source, Table):
        dataset = Dataset.from_table(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset file '{path}' does not exist")
        dataset = _read_hdf5(path) if _is_hdf5(path) else _read_table_file(path)
    else:
        raise TypeError(f"source must be a path, an astropy Table or a Dataset; got {type(source).__name__}")
    if isinstance(require, str) or isinstance(features, str):
        raise TypeError("require and features must be sequences of column names, not a single string")
    for role, names in (("required column", require), ("offset feature", features)):
        for name in names:
            if name not in dataset:
                raise MissingColumnError(
                    f"{role} '{name}' is missing (columns: {', '.join(dataset.names) or 'none'}"
                    f"{'; no spectra' if 'spectra' not in dataset else ''})"
                )
            values = dataset[name]
            if role == "offset feature" and values.dtype.kind not in "fiub":
                raise DatasetError(f"offset feature '{name}' is not numeric (dtype {values.dtype})")
            if len(dataset) == 0:
                continue
            if values.dtype.kind == "U":
                all_missing = bool(np.all(values == ""))
            elif values.ndim == 2:
                all_missing = not np.any(np.isfinite(values))
            else:
                all_missing = bool(np.all(is_missing(values)))
            if all_missing:
                raise DatasetError(f"{role} '{name}' has no valid value: every entry is missing (-9999 or NaN)")
    return dataset
