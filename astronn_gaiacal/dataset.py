"""The dataset format: one HDF5 file per training or test set.

Layout (see ``docs/dataset_format.rst``):

* ``/spectra`` ``(N, P)`` float32, continuum-normalised; ``/spectra_err`` optional;
* one 1-D dataset of length ``N`` per column, named as in Gaia/APOGEE:
  ``mag`` (2MASS Ks, not extinction corrected), ``mag_ext`` (A_Ks, e.g. AKTARG),
  ``parallax``, ``parallax_error`` (Gaia catalogue values in mas, not corrected
  for any zero-point), offset features (``phot_g_mean_mag``, ``bp_rp``,
  ``teff``, ...), ids (``apogee_id``, ``source_id``) and positions (``ra``,
  ``dec``); each dataset's ``unit`` attribute gives its unit;
* file attributes ``format = "astronn_gaiacal dataset"``, ``format_version``,
  ``band`` and ``gaia_release`` (plus any others).

Missing values are -9999 or NaN.  FITS/ECSV/CSV/Parquet tables with the same
column names (spectra as a 2-D column) are read the same way.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from astronn_gaiacal.dataset import Dataset, read_dataset
>>> ds = Dataset(spectra=np.ones((2, 5)), columns={"mag": [9.0, 10.0], "parallax": [1.0, -9999.0]},
...              units={"mag": "mag", "parallax": "mas"}, attrs={"band": "Ks"})
>>> path = os.path.join(tempfile.mkdtemp(), "train.h5")
>>> ds.write(path)
>>> read_dataset(path, require=["spectra", "mag"]).quantity("parallax")
<Quantity [    1., -9999.] mas>
"""
import json
import os

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from ._io import atomic_path
from .constants import MAGIC_NUMBER
from .conversions import extinction_correction

FORMAT_NAME = "astronn_gaiacal dataset"
FORMAT_VERSION = 1
SPECTRA_NAMES = ("spectra", "spectra_err")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")

#: Units every reader converts known columns to.
CANONICAL_UNITS = {
    "mag": "mag",
    "mag_ext": "mag",
    "parallax": "mas",
    "parallax_error": "mas",
    "ra": "deg",
    "dec": "deg",
    "teff": "K",
    "phot_g_mean_mag": "mag",
    "bp_rp": "mag",
    "ecl_lat": "deg",
    "nu_eff_used_in_astrometry": "1/um",
    "pseudocolour": "1/um",
    "vscatter": "km/s",
    "true_parallax": "mas",
    "true_zeropoint": "mas",
    "true_distance": "pc",
    "zeropoint": "mas",
    "zeropoint_error": "mas",
}


class DatasetError(ValueError):
    """A dataset is missing a column, has a wrong shape or unit, or an unusable column."""


def _unit_string(unit):
    return None if unit is None else u.Unit(unit).to_string()


def _convert(values, unit, name):
    """Values in the canonical unit of ``name`` (plain numbers are taken to be in it already)."""
    canonical = CANONICAL_UNITS.get(name)
    if unit is None:
        return values, canonical
    if canonical is None:
        return values, _unit_string(unit)
    unit, target = u.Unit(unit), u.Unit(canonical)
    if unit == target:
        return values, canonical
    try:
        factor = unit.to(target)
    except u.UnitConversionError:
        raise DatasetError(
            f"column '{name}' has unit '{unit}', which cannot be converted to '{canonical}'"
        ) from None
    values = np.asarray(values, dtype=float)
    missing = (values == MAGIC_NUMBER) | np.isnan(values)
    return np.where(missing, values, values * factor), canonical


class Dataset:
    """Spectra plus named per-star columns, in memory.

    Parameters
    ----------
    spectra, spectra_err : array_like, shape (N, P), optional
    columns : mapping
        ``name -> 1-D array of length N``.
    units : mapping, optional
        ``name -> unit string`` for columns with units.
    attrs : mapping, optional
        File-level metadata, e.g. ``{"band": "Ks", "gaia_release": "dr2"}``.

    Raises
    ------
    DatasetError
        If lengths or shapes disagree.
    """

    def __init__(self, spectra=None, spectra_err=None, columns=None, units=None, attrs=None):
        self._spectra = None if spectra is None else np.asarray(spectra, dtype=np.float32)
        self._spectra_err = None if spectra_err is None else np.asarray(spectra_err, dtype=np.float32)
        self._columns = {}
        self.units = {}
        self.attrs = dict(attrs or {})
        n = None
        if self._spectra is not None:
            if self._spectra.ndim != 2:
                raise DatasetError(f"spectra must be 2-D (N, P), got shape {self._spectra.shape}")
            n = self._spectra.shape[0]
            if self._spectra_err is not None and self._spectra_err.shape != self._spectra.shape:
                raise DatasetError(
                    f"spectra_err has shape {self._spectra_err.shape}; spectra has {self._spectra.shape}"
                )
        elif self._spectra_err is not None:
            raise DatasetError("spectra_err given without spectra")
        for name, values in (columns or {}).items():
            if name in SPECTRA_NAMES:
                raise DatasetError(f"'{name}' is not a column; pass it as the spectra argument")
            arr = np.asarray(values)
            if arr.ndim != 1:
                raise DatasetError(f"column '{name}' must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            if arr.shape[0] != n:
                raise DatasetError(f"column '{name}' has {arr.shape[0]} rows; the dataset has {n}")
            unit = (units or {}).get(name)
            if arr.dtype.kind in "fiu":
                arr, unit = _convert(arr, unit, name)
            self._columns[name] = arr
            if unit is not None:
                self.units[name] = unit
        self._n = 0 if n is None else int(n)

    def __len__(self):
        return self._n

    def __repr__(self):
        p = "no spectra" if self._spectra is None else f"{self._spectra.shape[1]}-pixel spectra"
        return f"<Dataset: {self._n} stars, {p}, columns {self.names}>"

    @property
    def names(self):
        """Column names (spectra excluded)."""
        return list(self._columns)

    def __contains__(self, name):
        if name == "spectra":
            return self._spectra is not None
        if name == "spectra_err":
            return self._spectra_err is not None
        return name in self._columns

    def __getitem__(self, name):
        if name == "spectra":
            if self._spectra is None:
                raise KeyError("the dataset has no spectra")
            return self._spectra
        if name == "spectra_err":
            if self._spectra_err is None:
                raise KeyError("the dataset has no spectra_err")
            return self._spectra_err
        if name not in self._columns:
            raise KeyError(f"column '{name}' not in the dataset (columns: {', '.join(self.names)})")
        return self._columns[name]

    def quantity(self, name):
        """Column ``name`` as a Quantity (dimensionless if it has no unit)."""
        return u.Quantity(self[name], self.units.get(name, u.dimensionless_unscaled))

    def corrected_mag(self):
        """Extinction-corrected magnitude ``mag - mag_ext`` (mag_ext < -1 or absent: no correction)."""
        if "mag_ext" not in self:
            return np.asarray(self["mag"], dtype=float)
        return extinction_correction(self["mag"], self["mag_ext"])

    def subset(self, index):
        """A new dataset with the rows selected by a boolean mask or integer index (order kept)."""
        index = np.asarray(index)
        if index.dtype == bool and index.shape != (self._n,):
            raise DatasetError(f"boolean index has shape {index.shape}; the dataset has {self._n} rows")
        return Dataset(
            spectra=None if self._spectra is None else self._spectra[index],
            spectra_err=None if self._spectra_err is None else self._spectra_err[index],
            columns={k: v[index] for k, v in self._columns.items()},
            units=self.units,
            attrs=self.attrs,
        )

    def with_columns(self, units=None, **columns):
        """A new dataset with columns added or replaced (Quantities keep their units)."""
        new_cols = dict(self._columns)
        new_units = dict(self.units)
        for name, values in columns.items():
            if isinstance(values, u.Quantity):
                new_units[name] = values.unit.to_string()
                values = values.value
            new_cols[name] = values
        new_units.update(units or {})
        return Dataset(self._spectra, self._spectra_err, new_cols, new_units, self.attrs)

    def to_table(self):
        """An astropy QTable (spectra as a 2-D column)."""
        t = QTable()
        if self._spectra is not None:
            t["spectra"] = self._spectra
        if self._spectra_err is not None:
            t["spectra_err"] = self._spectra_err
        for name, values in self._columns.items():
            t[name] = self.quantity(name) if name in self.units else values
        t.meta.update(self.attrs)
        return t

    def write(self, path, overwrite=False):
        """Write the HDF5 dataset format atomically."""
        write_dataset(path, self, overwrite=overwrite)


def write_dataset(path, dataset, overwrite=False):
    """Write ``dataset`` to ``path`` in the HDF5 dataset format (atomically).

    Parameters
    ----------
    path : str
    dataset : Dataset
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.
    """
    import h5py

    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in dataset.attrs.items():
                f.attrs[key] = value if isinstance(value, (str, int, float, np.number)) else json.dumps(value)
            for name in SPECTRA_NAMES:
                if name in dataset:
                    arr = dataset[name]
                    f.create_dataset(name, data=arr, chunks=(max(1, min(len(arr), 256)), arr.shape[1]))
            for name in dataset.names:
                values = dataset[name]
                if values.dtype.kind == "U":
                    values = np.char.encode(values, "utf-8")
                elif values.dtype.kind == "O":
                    values = np.array([str(v).encode("utf-8") for v in values])
                ds = f.create_dataset(name, data=values)
                if name in dataset.units:
                    ds.attrs["unit"] = dataset.units[name]


def _read_hdf5(path):
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") not in (FORMAT_NAME, None):
            raise DatasetError(f"{path} is an HDF5 file but not an astronn_gaiacal dataset")
        attrs = {}
        for key, value in f.attrs.items():
            if key in ("format", "format_version"):
                continue
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            attrs[key] = value.item() if isinstance(value, np.generic) else value
        spectra = f["spectra"][...] if "spectra" in f else None
        spectra_err = f["spectra_err"][...] if "spectra_err" in f else None
        columns, units = {}, {}
        for name, obj in f.items():
            if name in SPECTRA_NAMES or not isinstance(obj, h5py.Dataset):
                continue
            values = obj[...]
            if values.ndim != 1:
                raise DatasetError(f"{path}: dataset '{name}' must be 1-D, has shape {values.shape}")
            if values.dtype.kind == "S":
                values = np.char.decode(values, "utf-8")
            columns[name] = values
            unit = obj.attrs.get("unit")
            if unit is not None:
                units[name] = unit.decode() if isinstance(unit, bytes) else str(unit)
    return Dataset(spectra, spectra_err, columns, units, attrs)


def _from_table(table):
    spectra = spectra_err = None
    columns, units = {}, {}
    for name in table.colnames:
        col = table[name]
        values = col.value if isinstance(col, u.Quantity) else np.asarray(col)
        if hasattr(col, "mask") and np.any(getattr(col, "mask", False)):
            if values.dtype.kind in "fiu":
                values = np.where(np.asarray(col.mask), np.nan, np.asarray(col.filled(0), dtype=float))
            else:
                values = np.asarray(col.filled(""))
        if name == "spectra":
            spectra = values
            continue
        if name == "spectra_err":
            spectra_err = values
            continue
        if values.ndim != 1:
            raise DatasetError(f"table column '{name}' must be 1-D, has shape {values.shape}")
        columns[name] = values
        if col.unit is not None and str(col.unit) != "":
            units[name] = col.unit.to_string()
    attrs = {k: v for k, v in table.meta.items() if isinstance(v, (str, int, float))}
    return Dataset(spectra, spectra_err, columns, units, attrs)


def _check(ds, require, features, source):
    missing = [c for c in list(require) + list(features) if c not in ds]
    if missing:
        raise DatasetError(
            f"{source}: missing column(s) {missing}; it has {(['spectra'] if 'spectra' in ds else []) + ds.names}"
        )
    for name in list(require) + list(features):
        values = ds[name]
        if values.dtype.kind in "fiu":
            arr = np.asarray(values, dtype=float)
            if np.all((arr == MAGIC_NUMBER) | np.isnan(arr)):
                raise DatasetError(f"{source}: column '{name}' has no valid value (all -9999/NaN)")


def read_dataset(source, require=(), features=()):
    """Read and validate a dataset.

    Parameters
    ----------
    source : str, astropy Table or Dataset
        An HDF5 dataset file (.h5/.hdf5), a FITS/ECSV/CSV/Parquet table with
        the same column names, or a Table.
    require : sequence of str
        Columns (or ``'spectra'``) that must be present and not all missing.
    features : sequence of str
        Offset-feature columns that must be present and not all missing.

    Returns
    -------
    Dataset
        Known columns converted to :data:`CANONICAL_UNITS`.

    Raises
    ------
    DatasetError
        Naming the missing/bad column, a shape mismatch or an unconvertible unit.
    FileNotFoundError
        If ``source`` is a path that does not exist.
    """
    if isinstance(source, Dataset):
        ds, label = source, "dataset"
    elif isinstance(source, Table):
        ds, label = _from_table(source), "table"
    else:
        path = os.fspath(source)
        label = path
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if path.lower().endswith(HDF5_EXTENSIONS):
            ds = _read_hdf5(path)
        else:
            from .tableio import read_table

            ds = _from_table(read_table(path))
    _check(ds, require, features, label)
    return ds
