"""The HDF5 layout of the dataset format (``docs/dataset_format.rst``).

One file per dataset: the 2-D members ``spectra`` and ``spectra_err`` (N x P
float32, chunked by 256 stars), one 1-D member per column (strings as UTF-8)
with its unit in the member attribute ``unit``, and file attributes: the
dataset's own, plus ``format``, ``format_version``, ``column_order`` and
``json_attributes`` (the attributes stored as JSON text), reserved by the format.

The functions here read and write the parts of a dataset as plain arrays and
dicts (the keyword arguments of :class:`~astronn_gaiacal.io.dataset.Dataset`);
:mod:`astronn_gaiacal.io.dataset` wraps them in a ``Dataset``.

Examples
--------
>>> import numpy as np, os, tempfile
>>> from astronn_gaiacal.io.hdf5 import read_hdf5, write_hdf5
>>> path = os.path.join(tempfile.mkdtemp(), "stars.h5")
>>> write_hdf5(path, spectra=np.ones((3, 4)), columns={"mag": np.array([10.0, 11.0, 12.0])},
...            units={"mag": "mag"}, attrs={"band": "Ks", "cuts": [1, 2]})
>>> parts = read_hdf5(path, rows=slice(1, 3))
>>> parts["spectra"].shape, parts["columns"]["mag"], parts["units"], parts["attrs"]
((2, 4), array([11., 12.]), {'mag': 'mag'}, {'band': 'Ks', 'cuts': [1, 2]})
"""
import contextlib
import json
import os

import h5py
import numpy as np

from ..constants import HDF5_EXTENSIONS
from .columns import DatasetError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RESERVED_ATTRS",
    "SPECTRA_NAMES",
    "is_dataset_file",
    "is_hdf5_path",
    "iter_hdf5",
    "read_hdf5",
    "spectra_writer",
    "write_hdf5",
]

#: The two 2-D members of a dataset.
SPECTRA_NAMES = ("spectra", "spectra_err")

#: Value of the HDF5 file attribute ``format`` that marks the dataset format.
FORMAT_NAME = "astronn_gaiacal dataset"
#: Version of the layout, file attribute ``format_version``.
FORMAT_VERSION = 1

_FORMAT_ATTR = "format"
_VERSION_ATTR = "format_version"
_ORDER_ATTR = "column_order"
_JSON_ATTR = "json_attributes"
#: File attributes written by the format itself; a dataset's own attributes cannot take these names.
RESERVED_ATTRS = (_FORMAT_ATTR, _VERSION_ATTR, _ORDER_ATTR, _JSON_ATTR)

#: Stars per HDF5 chunk of the spectra members.
_CHUNK_STARS = 256


def is_hdf5_path(path):
    """Whether ``path`` ends in one of :data:`~astronn_gaiacal.constants.HDF5_EXTENSIONS` (any case)."""
    return os.fspath(path).lower().endswith(HDF5_EXTENSIONS)


def _text(value):
    """A stored attribute as a Python value: bytes decoded, NumPy scalars unwrapped."""
    return value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value


def _name(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def is_dataset_file(path):
    """Whether ``path`` is an HDF5 file whose ``format`` attribute marks it as the dataset format."""
    path = os.fspath(path)
    if not is_hdf5_path(path) or not os.path.isfile(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return _text(f.attrs.get(_FORMAT_ATTR)) == FORMAT_NAME
    except OSError:
        return False


# ---------------------------------------------------------------------- writing
def _spectra_chunks(n_stars, n_pixels):
    return (min(n_stars, _CHUNK_STARS), n_pixels) if n_stars * n_pixels else None


def write_hdf5(path, spectra=None, spectra_err=None, columns=None, units=None, attrs=None):
    """Write the parts of a dataset into a new HDF5 file.

    The file is written in place: write to a temporary name and rename
    (:func:`astronn_gaiacal.io.atomic.atomic_path`) for an atomic write, as
    :func:`astronn_gaiacal.io.dataset.write_dataset` does.

    Parameters
    ----------
    path : str or os.PathLike
        New file (an existing one is replaced).
    spectra, spectra_err : (N, P) ndarray, optional
    columns : mapping of str to 1-D ndarray
        Validated columns, in order; strings are stored as UTF-8.
    units : mapping of str to str or astropy Unit, optional
        Units of the columns that have one.
    attrs : mapping, optional
        Strings, numbers, or JSON-serialisable lists/dicts (stored as JSON text).
    """
    columns = dict(columns or {})
    units = dict(units or {})
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs[_FORMAT_ATTR] = FORMAT_NAME
        f.attrs[_VERSION_ATTR] = FORMAT_VERSION
        f.attrs[_ORDER_ATTR] = np.array(list(columns), dtype=h5py.string_dtype())
        json_attrs = []
        for key, value in dict(attrs or {}).items():
            if isinstance(value, (list, dict)):
                value = json.dumps(value)
                json_attrs.append(key)
            f.attrs[key] = value
        if json_attrs:
            f.attrs[_JSON_ATTR] = np.array(json_attrs, dtype=h5py.string_dtype())
        for key, data in zip(SPECTRA_NAMES, (spectra, spectra_err)):
            if data is not None:
                f.create_dataset(key, data=data, chunks=_spectra_chunks(*data.shape))
        for name, values in columns.items():
            if values.dtype.kind == "U":
                member = f.create_dataset(name, data=values.astype(object), dtype=h5py.string_dtype())
            else:
                member = f.create_dataset(name, data=values)
            unit = units.get(name)
            if unit is not None:
                member.attrs["unit"] = unit if isinstance(unit, str) else unit.to_string()


@contextlib.contextmanager
def spectra_writer(path, n_stars, n_pixels):
    """Add empty ``spectra`` and ``spectra_err`` members to a dataset file, to be filled in chunks.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset file written without spectra (:func:`write_hdf5`) with ``n_stars`` stars.
    n_stars, n_pixels : int

    Yields
    ------
    spectra, spectra_err : h5py.Dataset
        Writable (``n_stars``, ``n_pixels``) float32 members, e.g. ``spectra[start:stop] = block``.
    """
    with h5py.File(path, "a") as f:
        shape, chunks = (n_stars, n_pixels), _spectra_chunks(n_stars, n_pixels)
        yield tuple(f.create_dataset(key, shape=shape, dtype=np.float32, chunks=chunks) for key in SPECTRA_NAMES)


# ---------------------------------------------------------------------- reading
@contextlib.contextmanager
def _open(path):
    if os.path.isdir(path):
        raise DatasetError(f"'{path}' is a folder, not an HDF5 dataset file")
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        raise DatasetError(f"cannot read '{path}' as HDF5: {' '.join(str(err).split())}") from None
    with f:
        yield f


def _header(f, path):
    """The attributes and column order of an open dataset file, after checking its layout."""
    fmt = _text(f.attrs.get(_FORMAT_ATTR))
    if fmt is not None and fmt != FORMAT_NAME:
        raise DatasetError(f"'{path}' is an HDF5 file of format {fmt!r}, not an {FORMAT_NAME}")
    attrs = {k: _text(v) for k, v in f.attrs.items() if k not in RESERVED_ATTRS}
    for key in f.attrs.get(_JSON_ATTR, []):
        key = _name(key)
        try:
            attrs[key] = json.loads(attrs[key])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"'{path}': attribute '{key}' is listed as JSON but is not") from None
    if _ORDER_ATTR in f.attrs:
        order = [_name(o) for o in f.attrs[_ORDER_ATTR]]
        missing = [n for n in order if n not in f]
        if missing:
            raise DatasetError(f"'{path}' lists column(s) {missing} that it does not contain")
    else:
        order = [k for k in f.keys() if k not in SPECTRA_NAMES]
    for name in list(SPECTRA_NAMES) + order:
        if name not in f:
            continue
        node = f[name]
        if not isinstance(node, h5py.Dataset):
            raise DatasetError(f"'{name}' in '{path}' is a group, not a dataset")
        if name not in SPECTRA_NAMES and node.ndim != 1:
            raise DatasetError(
                f"column '{name}' in '{path}' must be 1-D; got shape {node.shape} (only {SPECTRA_NAMES} are 2-D)"
            )
    extra = [k for k in f.keys() if k not in SPECTRA_NAMES and k not in order]
    if extra:
        raise DatasetError(f"'{path}' has member(s) {extra} missing from its column order")
    return attrs, order


def _read(node, rows):
    if h5py.check_string_dtype(node.dtype) is not None:
        return np.array(node.asstr()[rows], dtype=str)
    return node[rows]


def _columns(f, order, rows):
    columns, units = {}, {}
    for name in order:
        columns[name] = _read(f[name], rows)
        if "unit" in f[name].attrs:
            units[name] = _name(f[name].attrs["unit"])
    return columns, units


def read_hdf5(path, rows=None, spectra=SPECTRA_NAMES):
    """Read the parts of a dataset file, after checking its layout.

    Parameters
    ----------
    path : str or os.PathLike
    rows : slice, optional
        The stars to read (default: all); only these rows are read from disk.
    spectra : tuple of str
        Which of :data:`SPECTRA_NAMES` to read (``()``: none).

    Returns
    -------
    dict
        ``spectra``, ``spectra_err`` (None when absent or not read),
        ``columns`` (``{name: 1-D array}`` in the file's column order),
        ``units`` (``{name: unit string}``) and ``attrs`` (JSON attributes decoded):
        the keyword arguments of :class:`~astronn_gaiacal.io.dataset.Dataset`.

    Raises
    ------
    FileNotFoundError
    DatasetError
        Not an HDF5 file, another HDF5 format, a group or a 2-D column, or
        members and ``column_order`` that disagree.
    """
    rows = slice(None) if rows is None else rows
    with _open(path) as f:
        attrs, order = _header(f, path)
        columns, units = _columns(f, order, rows)
        members = {k: _read(f[k], rows) if k in spectra and k in f else None for k in SPECTRA_NAMES}
    return dict(members, columns=columns, units=units, attrs=attrs)


def iter_hdf5(path, chunk_rows, spectra=("spectra",)):
    """The parts of a dataset file in chunks of at most ``chunk_rows`` consecutive stars.

    The file is opened and checked once and its columns read once; the
    ``spectra`` members are read one chunk at a time, so memory holds one
    chunk of them.

    Parameters
    ----------
    path : str or os.PathLike
    chunk_rows : int
    spectra : tuple of str
        Which of :data:`SPECTRA_NAMES` to read (default: ``spectra`` only).

    Yields
    ------
    dict
        As :func:`read_hdf5`, for rows ``start:start + chunk_rows``.
    """
    with _open(path) as f:
        attrs, order = _header(f, path)
        columns, units = _columns(f, order, slice(None))
        present = [k for k in SPECTRA_NAMES if k in f]
        n = f[present[0]].shape[0] if present else len(next(iter(columns.values()), ()))
        for start in range(0, n, int(chunk_rows)):
            rows = slice(start, min(start + int(chunk_rows), n))
            members = {k: f[k][rows] if k in spectra and k in f else None for k in SPECTRA_NAMES}
            yield dict(members, columns={k: v[rows] for k, v in columns.items()}, units=units, attrs=attrs)
