"""APOGEE apStar spectra: reading, continuum normalisation and batch conversion to a dataset.

Follows Leung & Bovy (2019, Appendix A) and their data-reduction notebook: the
spectrum of a star is the *globally weighted* combined spectrum of its apStar
file (row 1 of a file with more than one visit; the one combined spectrum of a
single visit), continuum-normalised with astroNN's
``astroNN.apogee.apogee_continuum`` (Chebyshev fit per detector on the
DR's continuum mask, gaps between the detectors deleted: 8575 -> 7514 pixels),
with pixels flagged by APOGEE_PIXMASK bits 0-7 and 12 set to 1.  The 2MASS Ks
magnitude (``K``) and its targeting extinction (``AKTARG``) come from the
primary header.

Examples
--------
>>> from astronn_gaiacal.sources.spectra import load_apstar
>>> star = load_apstar("tests/data/apStar-dr17-2M19485057+5005279.fits")  # doctest: +SKIP
>>> star.spectrum.shape, round(star.mag, 3), round(star.mag_ext, 4)        # doctest: +SKIP
((7514,), 10.522, 0.0321)
"""
import dataclasses
import glob
import os
import re
import sys

import numpy as np
from tqdm.auto import tqdm

from ..constants import (
    APOGEE_DEFAULT_DR,
    APOGEE_PIXMASK_BITS,
    APOGEE_SPECTRUM_LENGTH,
    APSTAR_LENGTH,
    COLUMN_UNITS,
    DEFAULT_BAND,
    MAGIC_NUMBER,
)
from ..io.figures import new_figure, save_figure
from ..io.dataset import Dataset
from .apogee_columns import APOGEE_FIELDS, header_keywords

__all__ = [
    "SUPPORTED_DRS",
    "APSTAR_ROWS",
    "ApStarError",
    "ApStar",
    "ApStarSpectrum",
    "ApStarBatch",
    "apstar_dr",
    "continuum_normalise",
    "read_apstar",
    "load_apstar",
    "load_apstar_batch",
    "find_apstar_files",
    "plot_spectra",
]

#: APOGEE data releases whose apStar spectra have 8575 pixels and 7514 after gap deletion.
SUPPORTED_DRS = (13, 14, 16, 17)

#: apStar file-name tags of the data releases: apStar-<tag>-<APOGEE_ID>.fits.
_FILENAME_TAGS = {"r6": 13, "r8": 14, "r12": 16, "dr17": 17}

#: Named rows of an apStar file's HDUs 1-3 (NVISITS + 2 rows when NVISITS > 1: the two combinations, then
#: the visits): ``"global"``, the globally weighted combination that the paper's Appendix A recommends (the
#: default), and ``"pixel"``, the pixel-by-pixel weighted one.  A single-visit file has one combined spectrum
#: (row 0; DR17 adds an all-zero row 1), which every choice reads.
APSTAR_ROWS = {"global": 1, "pixel": 0}

#: Dataset columns of a batch, after ``apogee_id``: the header values (see ``apogee_columns.APOGEE_FIELDS``).
_BATCH_COLUMNS = ("ra", "dec", "mag", "mag_error", "mag_ext", "snr", "starflag", "vscatter", "nvisits")


class ApStarError(ValueError):
    """A file is not a usable apStar file (layout, empty spectrum, failed continuum fit)."""


def _check_dr(dr):
    if isinstance(dr, bool) or not isinstance(dr, (int, np.integer)):
        raise TypeError(f"dr must be an integer APOGEE data release; got {dr!r}")
    dr = int(dr)
    if dr == 15:
        raise ValueError("dr=15: APOGEE DR15 has the same spectra as DR14; use dr=14")
    if dr not in SUPPORTED_DRS:
        raise ValueError(f"dr={dr} is not supported; use one of {SUPPORTED_DRS}")
    return dr


def apstar_dr(path, default=APOGEE_DEFAULT_DR):
    """Data release of an apStar file from its name (``apStar-dr17-...``, ``apStar-r8-...``).

    >>> apstar_dr("apStar-dr17-2M19485057+5005279.fits"), apstar_dr("apStar-r8-2M00000002+7417074.fits")
    (17, 14)
    >>> apstar_dr("spectrum.fits")   # no tag: the default
    17
    """
    m = re.match(r"apStar-([a-z]+\d+)-", os.path.basename(os.fspath(path)))
    if m and m.group(1) in _FILENAME_TAGS:
        return _FILENAME_TAGS[m.group(1)]
    return _check_dr(default)


def continuum_normalise(flux, flux_err, bitmask=None, dr=APOGEE_DEFAULT_DR, target_bits=APOGEE_PIXMASK_BITS,
                        mask_value=1.0):
    """Continuum-normalise APOGEE spectra with astroNN's ``apogee_continuum``.

    Parameters
    ----------
    flux, flux_err : array_like, shape (8575,) or (N, 8575)
        apStar flux and its uncertainty (or spectra with the gaps already
        deleted, 7514 pixels).
    bitmask : array_like of int, optional
        APOGEE_PIXMASK of the same shape; pixels with any of ``target_bits``
        set get ``mask_value`` (flux and error), as in the paper.
    dr : int
        APOGEE data release of the continuum mask and detector gaps.
    target_bits : sequence of int
        APOGEE_PIXMASK bits to mask (default: bits 0-7 and 12, the paper's).

    Returns
    -------
    spectrum, spectrum_err : ndarray, shape (7514,) or (N, 7514)
        Same leading shape as ``flux``.  astroNN sets non-finite normalised
        fluxes to ``mask_value`` and negative ones to 0.

    Raises
    ------
    ValueError
        Wrong number of pixels, or shapes that differ.
    """
    from astroNN.apogee.chips import apogee_continuum

    dr = _check_dr(dr)
    flux = np.asarray(flux, dtype=float)
    flux_err = np.asarray(flux_err, dtype=float)
    if flux.ndim not in (1, 2) or flux.shape[-1] not in (APSTAR_LENGTH, APOGEE_SPECTRUM_LENGTH):
        raise ValueError(
            f"flux must have {APSTAR_LENGTH} (apStar) or {APOGEE_SPECTRUM_LENGTH} pixels per spectrum, "
            f"shape (P,) or (N, P); got shape {flux.shape}"
        )
    if flux_err.shape != flux.shape:
        raise ValueError(f"flux_err has shape {flux_err.shape} but flux has shape {flux.shape}")
    if bitmask is not None:
        bitmask = np.asarray(bitmask)
        if bitmask.shape != flux.shape:
            raise ValueError(f"bitmask has shape {bitmask.shape} but flux has shape {flux.shape}")
        if bitmask.dtype.kind not in "iu":
            raise TypeError(f"bitmask must hold integers (APOGEE_PIXMASK); got dtype {bitmask.dtype}")
        bitmask = bitmask.astype(np.int64)
    spec, spec_err = apogee_continuum(flux, flux_err, dr=dr, bitmask=bitmask, target_bit=list(target_bits),
                                      mask_value=mask_value)
    if flux.ndim == 1:
        return spec[0], spec_err[0]
    return spec, spec_err


def _header_float(header, key):
    value = header.get(key, MAGIC_NUMBER)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return MAGIC_NUMBER
    # apStar headers write missing values as -9999.99
    return MAGIC_NUMBER if (value <= MAGIC_NUMBER + 0.5 or not np.isfinite(value)) else value


def _header_int(header, key):
    value = header.get(key, None)
    if value is None or isinstance(value, bool):
        return int(MAGIC_NUMBER)
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(MAGIC_NUMBER)


@dataclasses.dataclass(frozen=True)
class ApStar:
    """One raw spectrum of an apStar file (row ``row`` of HDUs 1-3: :func:`read_apstar`) and its header metadata.

    ``flux``, ``flux_err`` and ``bitmask`` have 8575 pixels; ``meta`` maps the
    dataset columns (``apogee_id``, ``ra``, ``dec``, ``mag`` = K,
    ``mag_error`` = K_ERR, ``mag_ext`` = AKTARG, ``snr``, ``vscatter``,
    ``starflag``, ``nvisits``) to header values, -9999 where missing.
    """

    path: str
    row: int
    flux: np.ndarray
    flux_err: np.ndarray
    bitmask: np.ndarray
    meta: dict


@dataclasses.dataclass(frozen=True)
class ApStarSpectrum:
    """A continuum-normalised apStar spectrum (7514 pixels) with its metadata."""

    path: str
    dr: int
    spectrum: np.ndarray
    spectrum_err: np.ndarray
    meta: dict

    def __getattr__(self, name):
        meta = self.__dict__.get("meta", {})
        if name in meta:
            return meta[name]
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")


def _apstar_row(row, nvisits, nrows):
    """Index into HDUs 1-3 of the spectrum that ``row`` names, in a file with ``nrows`` rows and NVISITS ``nvisits``
    (-9999 when the header lacks it; then only a file with 3 rows or more is taken to have several visits)."""
    if isinstance(row, str):
        if row not in APSTAR_ROWS:
            raise ValueError(f"row must be one of {', '.join(map(repr, APSTAR_ROWS))} or a row number; got {row!r}")
        index = APSTAR_ROWS[row]
    elif isinstance(row, (int, np.integer)) and not isinstance(row, bool):
        index = int(row)
        if index < 0:
            raise ValueError(f"row must be >= 0; got {row}")
    else:
        raise TypeError(f"row must be one of {', '.join(map(repr, APSTAR_ROWS))} or a row number; got {row!r}")
    single = nvisits == 1 or nrows == 1 or (nvisits < 1 and nrows < 3)
    return 0 if single else index


def read_apstar(path, row="global"):
    """Read the combined spectrum, uncertainty and APOGEE_PIXMASK of an apStar file.

    Parameters
    ----------
    path : str or os.PathLike
    row : {'global', 'pixel'} or int
        Which spectrum of a file with more than one visit (HDUs 1-3 have
        NVISITS + 2 rows: row 0 the pixel-by-pixel weighted combination, row 1
        the globally weighted one, then one row per visit).  ``'global'`` (row
        1, the default) is the combination that the paper's Appendix A
        recommends and its data reduction used; ``'pixel'`` is row 0; a number
        is that row.  A single-visit file has one combined spectrum (row 0; in
        DR17 files row 1 is all zeros), read whatever ``row``
        (:data:`APSTAR_ROWS`).

    Returns
    -------
    ApStar
        Its ``row`` is the row read.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ApStarError
        Not an apStar file (missing HDUs, wrong number of pixels), a row out of
        range, or an empty (all-zero or all-NaN) spectrum.
    ValueError, TypeError
        A ``row`` that is neither a name of :data:`APSTAR_ROWS` nor a row number >= 0.
    """
    from astropy.io import fits

    _apstar_row(row, 2, 3)  # a bad ``row`` is refused before the file is read
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"apStar file '{path}' does not exist")
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 4:
            raise ApStarError(f"'{path}' has {len(hdul)} HDUs; an apStar file has flux, error and bitmask in HDUs 1-3")
        header = hdul[0].header
        arrays = []
        for hdu, what in ((1, "flux"), (2, "flux error"), (3, "bitmask")):
            data = hdul[hdu].data
            if data is None:
                raise ApStarError(f"'{path}' HDU {hdu} ({what}) is empty")
            data = np.asarray(data)
            if data.ndim not in (1, 2) or data.shape[-1] != APSTAR_LENGTH:
                raise ApStarError(
                    f"'{path}' HDU {hdu} ({what}) has shape {data.shape}; expected {APSTAR_LENGTH} pixels per row"
                )
            arrays.append(data)
        flux, flux_err, bitmask = arrays
        if not (flux.shape == flux_err.shape == bitmask.shape):
            raise ApStarError(
                f"'{path}': flux {flux.shape}, error {flux_err.shape} and bitmask {bitmask.shape} differ in shape"
            )
        nvisits = _header_int(header, APOGEE_FIELDS["nvisits"].header)
        if flux.ndim == 2:
            use = _apstar_row(row, nvisits, flux.shape[0])
            if not 0 <= use < flux.shape[0]:
                raise ApStarError(f"row={row} is out of range for '{path}' with {flux.shape[0]} rows")
            flux, flux_err, bitmask = flux[use], flux_err[use], bitmask[use]
        else:
            use = 0
        flux = flux.astype(float)
        flux_err = flux_err.astype(float)
        if bitmask.dtype.kind not in "iu":
            raise ApStarError(f"'{path}' HDU 3 (bitmask) holds {bitmask.dtype}, not integers")
        bitmask = bitmask.astype(np.int64)
        finite = np.isfinite(flux)
        if not np.any(finite & (flux != 0)):
            raise ApStarError(f"'{path}' row {use} is an empty spectrum (all zero or non-finite)")
        meta = {"apogee_id": _apogee_id(header, path)}
        meta.update({col: _header_float(header, key) for col, key in header_keywords("f").items()})
        meta.update({col: _header_int(header, key) for col, key in header_keywords("i").items()})
    return ApStar(path=path, row=use, flux=flux, flux_err=flux_err, bitmask=bitmask, meta=meta)


def _apogee_id(header, path):
    objid = header.get(APOGEE_FIELDS["apogee_id"].header)
    if isinstance(objid, str) and objid.strip():
        return objid.strip()
    m = re.match(r"apStar-[^-]+-(.+?)\.fits", os.path.basename(path))
    if m:
        return m.group(1)
    raise ApStarError(f"'{path}' has no OBJID header keyword and its name does not give the APOGEE ID")


def load_apstar(path, dr=None, row="global", target_bits=APOGEE_PIXMASK_BITS):
    """Read an apStar file and continuum-normalise its combined spectrum as in the paper.

    Parameters
    ----------
    path : str or os.PathLike
    dr : int, optional
        Data release of the continuum mask; default from the file name
        (:func:`apstar_dr`), else ``APOGEE_DEFAULT_DR``.  The paper used DR14
        spectra with ``dr=14``.
    row : {'global', 'pixel'} or int
        Which combined spectrum (or visit); default the globally weighted
        combination, as the paper's Appendix A recommends.  See :func:`read_apstar`.
    target_bits : sequence of int
        APOGEE_PIXMASK bits set to 1 (default: the paper's, bits 0-7 and 12).

    Returns
    -------
    ApStarSpectrum
        ``spectrum`` and ``spectrum_err`` (7514 pixels, float64) and the header
        metadata as attributes (``apogee_id``, ``mag``, ``mag_ext``, ``ra``, ...,
        and ``apstar_row``, the row read).

    Raises
    ------
    FileNotFoundError, ApStarError
        As :func:`read_apstar`; also ApStarError when the continuum fit of a
        detector fails (a non-finite flux among its continuum pixels), which
        astroNN would turn silently into a detector of ones.
    """
    raw = read_apstar(path, row=row)
    dr = apstar_dr(raw.path) if dr is None else _check_dr(dr)
    spec, spec_err = continuum_normalise(raw.flux, raw.flux_err, raw.bitmask, dr=dr, target_bits=target_bits)
    _check_detectors(spec, dr, raw.path)
    return ApStarSpectrum(path=raw.path, dr=dr, spectrum=spec, spectrum_err=spec_err,
                          meta={**raw.meta, "apstar_row": raw.row})


def _check_detectors(spec, dr, path):
    """A non-finite flux among a detector's continuum pixels makes astroNN's fit NaN, and then the
    whole detector silently 1: refuse such a spectrum rather than pass it on."""
    from astroNN.apogee.chips import chips_pix_info

    info = chips_pix_info(dr=dr)
    start = 0
    for name, (lo, hi) in zip(("blue", "green", "red"), ((info[0], info[1]), (info[2], info[3]), (info[4], info[5]))):
        stop = start + hi - lo
        if np.all(spec[start:stop] == 1.0):
            raise ApStarError(
                f"'{path}': the continuum fit of the {name} detector failed (non-finite flux or error among its "
                f"continuum pixels); every pixel of it would be 1"
            )
        start = stop


def find_apstar_files(sources):
    """Expand files and folders into a list of apStar paths, in the order given.

    A folder contributes its ``apStar*.fits`` and ``apStar*.fits.gz`` files,
    sorted by name.  Files are kept whether or not they exist (a missing one is
    reported when read).

    Returns
    -------
    paths : list of str
    empty_folders : list of str
        Folders with no apStar file.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths, empty = [], []
    for src in sources:
        src = os.fspath(src)
        if os.path.isdir(src):
            found = sorted(glob.glob(os.path.join(src, "apStar*.fits")) + glob.glob(os.path.join(src, "apStar*.fits.gz")))
            if not found:
                empty.append(src)
            paths.extend(found)
        else:
            paths.append(src)
    return paths, empty


@dataclasses.dataclass
class ApStarBatch:
    """Result of :func:`load_apstar_batch`.

    Attributes
    ----------
    dataset : Dataset or None
        One row per file read, in input order (None if none could be read).
    failed : list of (str, str)
        ``(path, reason)`` of each file or folder that was skipped.
    n_input : int
        Number of files (and empty folders) considered.
    """

    dataset: object
    failed: list
    n_input: int

    @property
    def n_read(self):
        return 0 if self.dataset is None else len(self.dataset)

    def summary(self):
        """One-line summary."""
        text = f"read {self.n_read} of {self.n_input} apStar input(s)"
        if self.failed:
            text += f"; skipped {len(self.failed)} (see .failed, or the 'skipped' lines above)"
        return text


def load_apstar_batch(sources, dr=None, row="global", target_bits=APOGEE_PIXMASK_BITS, progress=True, verbose=True):
    """Continuum-normalise many apStar files into one :class:`~astronn_gaiacal.io.dataset.Dataset`.

    Parameters
    ----------
    sources : path, or sequence of paths
        apStar files and/or folders of them (see :func:`find_apstar_files`).
    dr, row, target_bits
        As in :func:`load_apstar` (``dr=None``: from each file name).
    progress : bool
        Show a tqdm progress bar.
    verbose : bool
        Print each skipped file as it happens and a summary at the end (stderr).

    Returns
    -------
    ApStarBatch
        Its dataset has ``spectra``, ``spectra_err``, ``mag`` (K), ``mag_ext``
        (AKTARG), ``apogee_id``, ``ra``, ``dec`` and also ``mag_error``, ``snr``,
        ``starflag``, ``vscatter``, ``nvisits``, ``apstar_file`` (file name) and
        ``apstar_row`` (the row of HDUs 1-3 read: 1 for the default of a
        multi-visit file, 0 for a single visit);
        attributes ``band`` and ``continuum_dr``.  A missing or unreadable file
        is reported and skipped, never silently dropped.

    Raises
    ------
    ValueError
        If ``sources`` is empty.
    """
    paths, empty = find_apstar_files(sources)
    if not paths and not empty:
        raise ValueError("sources is empty: give apStar files or folders")
    failed = [(d, "folder has no apStar*.fits file") for d in empty]
    if verbose:
        for d, reason in failed:
            print(f"skipped {d}: {reason}", file=sys.stderr)
    stars = []
    for path in tqdm(paths, desc="apStar", unit="file", disable=not progress):
        try:
            stars.append(load_apstar(path, dr=dr, row=row, target_bits=target_bits))
        except Exception as err:  # per-file: report and go on
            reason = f"{type(err).__name__}: {err}"
            failed.append((path, reason))
            if verbose:
                tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)
    n_input = len(paths) + len(empty)
    dataset = None
    if stars:
        columns = {"apogee_id": [s.meta["apogee_id"] for s in stars]}
        for col in _BATCH_COLUMNS:
            columns[col] = np.array([s.meta[col] for s in stars])
        columns["apstar_file"] = [os.path.basename(s.path) for s in stars]
        columns["apstar_row"] = np.array([s.meta["apstar_row"] for s in stars], dtype=np.int64)
        drs = sorted({s.dr for s in stars})
        attrs = {"band": DEFAULT_BAND}
        if len(drs) == 1:
            attrs["continuum_dr"] = drs[0]
        else:
            columns["continuum_dr"] = np.array([s.dr for s in stars])
        dataset = Dataset(
            spectra=np.stack([s.spectrum for s in stars]),
            spectra_err=np.stack([s.spectrum_err for s in stars]),
            columns=columns,
            units={name: COLUMN_UNITS[name] for name in columns if name in COLUMN_UNITS},
            attrs=attrs,
        )
    batch = ApStarBatch(dataset=dataset, failed=failed, n_input=n_input)
    if verbose:
        print(batch.summary(), file=sys.stderr)
    return batch


def plot_spectra(spectra, path, labels=None, dr=APOGEE_DEFAULT_DR, max_spectra=5, overwrite=False):
    """Plot continuum-normalised spectra against wavelength into a PNG (atomically).

    Parameters
    ----------
    spectra : (N, 7514) or (7514,) array_like, or Dataset
        A Dataset contributes its ``spectra`` and ``apogee_id`` labels.
    path : str
        PNG file to write.
    labels : sequence of str, optional
    dr : int
        Data release of the wavelength grid's detector gaps.
    max_spectra : int
        Plot at most this many (offset vertically by 1 each).
    """
    from astroNN.apogee.chips import wavelength_solution

    if isinstance(spectra, Dataset):
        if labels is None and "apogee_id" in spectra:
            labels = list(spectra["apogee_id"])
        spectra = spectra["spectra"]
    spectra = np.atleast_2d(np.asarray(spectra, dtype=float))
    if spectra.shape[1] != APOGEE_SPECTRUM_LENGTH:
        raise ValueError(f"spectra must have {APOGEE_SPECTRUM_LENGTH} pixels; got shape {spectra.shape}")
    chips = wavelength_solution(dr=_check_dr(dr))
    edges = np.cumsum([0] + [len(c) for c in chips])
    fig = new_figure(figsize=(12, 2 + 1.2 * min(len(spectra), max_spectra)))
    ax = fig.subplots()
    for i, spec in enumerate(spectra[:max_spectra]):
        label = labels[i] if labels is not None else f"spectrum {i}"
        color = f"C{i % 10}"
        for j, wave in enumerate(chips):  # one line per detector: no line across the gaps
            ax.plot(wave, spec[edges[j]:edges[j + 1]] + i, lw=0.4, color=color, label=label if j == 0 else None)
    ax.set_xlabel("wavelength (Angstrom, vacuum)")
    ax.set_ylabel("normalised flux (+ offset)")
    ax.set_title(f"continuum-normalised APOGEE spectra ({min(len(spectra), max_spectra)} of {len(spectra)})")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, overwrite=overwrite)
