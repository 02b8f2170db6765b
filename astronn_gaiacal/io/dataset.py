"""The dataset format: one file per training or test set, with a validating reader.

A :class:`Dataset` holds N stars: optional continuum-normalised spectra
(``spectra``, ``spectra_err``, N x P) and named 1-D columns following Gaia and
APOGEE names (``mag``, ``mag_ext``, ``parallax``, ``parallax_error``,
``phot_g_mean_mag``, ``bp_rp``, ``teff``, ``apogee_id``, ``source_id``, ...).
Columns with a physical unit are held in the unit of :data:`~astronn_gaiacal.io.columns.CANONICAL_UNITS`.
Missing values are -9999 or NaN and are kept as they are.

On disk the format is HDF5 (:mod:`astronn_gaiacal.io.hdf5`,
``docs/dataset_format.rst``); an astropy Table, or a FITS/ECSV/CSV/Parquet
table file with the same column names, is accepted too.  Column validation
and units are in :mod:`astronn_gaiacal.io.columns`.

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
from astropy.table import QTable, Table

from ..constants import is_missing
from ..conversions import extinction_correction
from .atomic import atomic_path
from .columns import CANONICAL_UNITS, DatasetError, MissingColumnError, as_column, as_spectra, canonical_unit
from .hdf5 import (
    FORMAT_NAME,
    FORMAT_VERSION,
    RESERVED_ATTRS,
    SPECTRA_NAMES,
    is_dataset_file,
    is_hdf5_path,
    iter_hdf5,
    read_hdf5,
    write_hdf5,
)
from .tables import TableFormatError, read_table, table_format, write_table

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
    "read_dataset_chunks",
    "read_dataset_table",
    "write_dataset",
]

#: The read-only spectra arrays datasets own, by id: a new dataset made from another's shares them.
_OWNED = weakref.WeakValueDictionary()


def _spectra_member(name, values):
    if _OWNED.get(id(values)) is values:
        return values
    return _readonly(as_spectra(name, values))


def _readonly(arr):
    arr.setflags(write=False)
    _OWNED[id(arr)] = arr
    return arr


def _check_attrs(attrs):
    out = {}
    for key, value in dict(attrs or {}).items():
        if not isinstance(key, str):
            raise DatasetError(f"attribute names must be strings; got {key!r}")
        if key in RESERVED_ATTRS:
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
        :data:`~astronn_gaiacal.io.columns.CANONICAL_UNITS`; plain numbers are taken to be in it already.
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
        self._spectra = None if spectra is None else _spectra_member("spectra", spectra)
        self._spectra_err = None
        if spectra_err is not None:
            err = _spectra_member("spectra_err", spectra_err)
            if err.shape != self._spectra.shape:
                raise DatasetError(
                    f"'spectra_err' has shape {err.shape} but 'spectra' has shape {self._spectra.shape}"
                )
            self._spectra_err = err
        n = None if self._spectra is None else self._spectra.shape[0]
        self._columns = {}
        self._units = {}
        for name, values in columns.items():
            if not isinstance(name, str) or not name:
                raise DatasetError(f"column names must be non-empty strings; got {name!r}")
            if name in SPECTRA_NAMES:
                raise DatasetError(f"'{name}' is passed as its own argument, not as a column")
            arr, unit = as_column(name, values, units.get(name), n)
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
def write_dataset(path, dataset, overwrite=False):
    """Write ``dataset`` to ``path`` atomically.

    ``.h5``/``.hdf5`` gives the HDF5 dataset format
    (:func:`astronn_gaiacal.io.hdf5.write_hdf5`); a table ending (``.fits``,
    ``.ecsv``, ``.vot``, ``.parquet``, ...; see :mod:`astronn_gaiacal.io.tables`)
    gives a table with the same columns (via :meth:`~astronn_gaiacal.io.dataset.Dataset.to_table`).

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    TypeError
        If ``dataset`` is not a :class:`~astronn_gaiacal.io.dataset.Dataset`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset; got {type(dataset).__name__}")
    path = os.fspath(path)
    if is_hdf5_path(path):
        with atomic_path(path, overwrite=overwrite) as tmp:
            write_hdf5(tmp, **dataset._parts())
        return
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


def _read_table_file(path):
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
        table file with the same column names (read by
        :func:`astronn_gaiacal.io.tables.read_table`), an astropy Table/QTable,
        or a :class:`~astronn_gaiacal.io.dataset.Dataset` (validated again).
    require : iterable of str
        Columns that must be present and not all missing (``"spectra"`` included).
    features : iterable of str
        Offset-model features: required as well, and numeric.

    Returns
    -------
    Dataset
        Columns with units converted to :data:`~astronn_gaiacal.io.columns.CANONICAL_UNITS`; missing
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
    if isinstance(source, Dataset):
        dataset = source
    elif isinstance(source, Table):
        dataset = Dataset.from_table(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset file '{path}' does not exist")
        dataset = Dataset(**read_hdf5(path)) if is_hdf5_path(path) else _read_table_file(path)
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
            numeric = role == "offset feature" or not name.endswith("_id")
            if numeric and values.dtype.kind not in "fiub":
                raise DatasetError(f"{role} '{name}' is not numeric (dtype {values.dtype}); write missing values "
                                   "as empty cells, NaN or -9999")
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


def read_dataset_chunks(path, chunk_rows):
    """Datasets of at most ``chunk_rows`` consecutive stars of a dataset file, in order.

    An HDF5 dataset file is read chunk by chunk (:func:`astronn_gaiacal.io.hdf5.iter_hdf5`:
    the columns once, the ``spectra`` rows of one chunk at a time,
    ``spectra_err`` not at all), so memory holds one chunk of spectra; other
    formats are read whole (:func:`read_dataset`) and cut.

    Parameters
    ----------
    path : str or os.PathLike
    chunk_rows : int

    Yields
    ------
    Dataset

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stars.h5")
    >>> Dataset(spectra=np.zeros((5, 3)), columns={"mag": np.arange(5.0)}).write(path)
    >>> [chunk["mag"].tolist() for chunk in read_dataset_chunks(path, 2)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    path = os.fspath(path)
    if not is_hdf5_path(path):
        dataset = read_dataset(path)
        for start in range(0, len(dataset), chunk_rows):
            yield dataset.subset(np.arange(start, min(start + chunk_rows, len(dataset))))
        return
    for parts in iter_hdf5(path, chunk_rows):
        yield Dataset(**parts)


def read_dataset_table(path, hdf5_path=None):
    """The per-star columns of a table file, or of an HDF5 dataset file, as an astropy Table.

    A dataset file (:func:`astronn_gaiacal.io.hdf5.is_dataset_file`) gives its
    1-D columns in their canonical units, with its attributes in ``meta``,
    and without reading its spectra; any other file is read by
    :func:`astronn_gaiacal.io.tables.read_table`.

    Parameters
    ----------
    path : str or os.PathLike
    hdf5_path : str, optional
        Group of a generic HDF5 file holding the columns (see ``read_table``).

    Raises
    ------
    FileNotFoundError
    DatasetError
        An invalid dataset file.
    TableFormatError
        Any other file that cannot be read as a table.
    """
    if not is_dataset_file(path):
        return read_table(path, hdf5_path)
    parts = read_hdf5(path, spectra=())
    if not parts["columns"]:
        return Table(meta=_check_attrs(parts["attrs"]))
    return Table(Dataset(**parts).to_table())
