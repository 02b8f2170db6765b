"""Reading and writing the table formats the package accepts.

FITS, ECSV, CSV, VOTable and Parquet go through ``astropy.table``.  An HDF5
file (:data:`~astronn_gaiacal.constants.HDF5_EXTENSIONS`) is read as an astropy
HDF5 table, else as one 1-D HDF5 dataset per column.  Writing is atomic.
(:func:`astronn_gaiacal.io.dataset.read_dataset_table` also reads the HDF5
dataset format as a table.)
"""
import os
import warnings

import h5py
import numpy as np
from astropy.table import Table

from ..constants import HDF5_EXTENSIONS
from .atomic import atomic_path

#: file ending -> astropy format name ('hdf5' = any HDF5 file)
FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".fz": "fits",
    ".ecsv": "ascii.ecsv",
    ".csv": "ascii.csv",
    ".vot": "votable",
    ".xml": "votable",
    ".parquet": "parquet",
    ".pq": "parquet",
    **{ending: "hdf5" for ending in HDF5_EXTENSIONS},
}


class TableFormatError(ValueError):
    """The file is not a readable table, or its extension is not a supported format."""


def table_format(path):
    """The astropy format name for ``path``, from its extension."""
    name = os.fspath(path).lower()
    for ending in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return FORMATS[ending]
    raise TableFormatError(
        f"unsupported table format for {os.fspath(path)!r}; use one of {', '.join(sorted(FORMATS))}"
    )


def _read_hdf5(path, hdf5_path=None):
    try:
        return Table.read(path, format="hdf5", path=hdf5_path) if hdf5_path else Table.read(path, format="hdf5")
    except (ValueError, OSError, TypeError, KeyError):
        pass
    with h5py.File(path, "r") as f:
        group = f[hdf5_path] if hdf5_path else f
        columns = {name: group[name][()] for name in group if getattr(group[name], "ndim", None) == 1}
        units = {name: group[name].attrs.get("unit") for name in columns}
    if not columns:
        raise TableFormatError(f"{path}: no 1-D datasets (columns) found")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise TableFormatError(f"{path}: 1-D datasets of different lengths {sorted(lengths)}")
    table = Table(columns)
    for name, unit in units.items():
        if unit is not None:
            table[name].unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    return table


def read_table(path, hdf5_path=None):
    """Read a FITS/ECSV/CSV/VOTable/Parquet/HDF5 table.

    Parameters
    ----------
    path : str
    hdf5_path : str, optional
        Group of a generic HDF5 file holding the columns (default: the root).

    Raises
    ------
    FileNotFoundError
    TableFormatError
        Unsupported extension, or a file that cannot be read in its format.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such table: {path}")
    fmt = table_format(path)
    try:
        if fmt == "hdf5":
            return _read_hdf5(path, hdf5_path)
        return Table.read(path, format=fmt)
    except (TableFormatError, FileNotFoundError):
        raise
    except Exception as err:  # astropy raises many types for corrupt files
        raise TableFormatError(f"cannot read {path} as {fmt}: {err}") from err


def write_table(table, path, overwrite=False):
    """Write ``table`` atomically, in the format given by the extension of ``path``.

    VOTables are written in BINARY2 serialisation: astropy's C TABLEDATA
    writer can overrun its buffer on rows whose length is a power of two.
    """
    fmt = table_format(path)
    if fmt == "hdf5":
        raise TableFormatError("write HDF5 files with astronn_gaiacal.io.dataset.write_dataset")
    extra = {"tabledata_format": "binary2"} if fmt == "votable" else {}
    strings = [name for name in table.colnames if table[name].dtype == object and all(
        isinstance(v, (str, bytes)) for v in table[name])]
    if strings and fmt in ("fits", "votable"):  # e.g. ids read from HDF5: fixed-width text, as FITS needs
        table = table.copy(copy_data=False)
        for name in strings:
            table[name] = np.asarray([v.decode() if isinstance(v, bytes) else v for v in table[name]], dtype=str)
    with atomic_path(path, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Keyword name .* is greater than 8 characters")
        table.write(tmp, format=fmt, **extra)
    return os.fspath(path)
