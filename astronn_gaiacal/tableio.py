"""Reading and writing the table formats the command line accepts.

FITS, ECSV, CSV and Parquet go through ``astropy.table``; ``.h5``/``.hdf5``
files in the dataset format are read through :mod:`astronn_gaiacal.dataset`
(spectra dropped).  Writing is atomic.
"""
import os

from astropy.table import Table

from ._io import atomic_path

#: file extension -> astropy format name
FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".ecsv": "ascii.ecsv",
    ".csv": "ascii.csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "dataset",
    ".hdf5": "dataset",
}


class TableFormatError(ValueError):
    """The file's extension is not a supported table format."""


def table_format(path):
    """The format name for ``path`` from its extension."""
    name = os.fspath(path).lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return FORMATS[ext]
    raise TableFormatError(
        f"unsupported table format for {path!r}; use one of {', '.join(sorted(set(FORMATS)))}"
    )


def read_table(path):
    """Read a FITS/ECSV/CSV/Parquet table, or the columns of an HDF5 dataset file.

    Raises
    ------
    FileNotFoundError, TableFormatError
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    fmt = table_format(path)
    if fmt == "dataset":
        from .dataset import read_dataset

        ds = read_dataset(path)
        table = ds.to_table()
        for name in ("spectra", "spectra_err"):
            if name in table.colnames:
                del table[name]
        return Table(table)
    try:
        return Table.read(path, format=fmt)
    except Exception as err:  # astropy raises many types for corrupt files
        raise TableFormatError(f"cannot read {path} as {fmt}: {err}") from err


def write_table(table, path, overwrite=False):
    """Write ``table`` atomically in the format given by the extension of ``path``."""
    fmt = table_format(path)
    if fmt == "dataset":
        raise TableFormatError("write HDF5 datasets with astronn_gaiacal.dataset.write_dataset")
    with atomic_path(path, overwrite=overwrite) as tmp:
        table.write(tmp, format=fmt)
    return os.fspath(path)
