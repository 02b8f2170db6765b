"""APOGEE apStar files to continuum-normalised spectra, as in the paper's Appendix A.

An apStar file holds the flux (HDU 1), its error (HDU 2) and the
APOGEE_PIXMASK bitmask (HDU 3), each ``(rows, 8575)``: row 0 of a multi-visit
file is the combined spectrum, a single-visit file has one row.  The spectrum
is continuum-normalised with astroNN's own ``apogee_continuum`` (chip-wise
Chebyshev fit on the DR's continuum pixels, gap deletion 8575 -> 7514 pixels),
with the pixels flagged by APOGEE_PIXMASK bits 0-7 and 12 set to 1.  The
primary header gives 2MASS ``K`` and the targeting extinction ``AKTARG``.

Examples
--------
>>> from astronn_gaiacal.spectra import read_apstar
>>> star = read_apstar("apStar-dr17-2M19485057+5005279.fits")   # doctest: +SKIP
>>> star["spectrum"].shape, star["k"], star["aktarg"]            # doctest: +SKIP
((7514,), 10.522, 0.0321)
"""
import os
import re
from collections import OrderedDict

import numpy as np
from astropy.io import fits
from tqdm.auto import tqdm

from .constants import APOGEE_PIXMASK_BITS, APOGEE_SPECTRUM_LENGTH, APSTAR_LENGTH, MAGIC_NUMBER

DEFAULT_DR = 17


class ApStarError(ValueError):
    """An apStar file is missing, unreadable or not in the apStar layout."""


def _dr_from_name(path, dr):
    if dr is not None:
        return int(dr)
    match = re.search(r"dr(\d+)", os.path.basename(os.fspath(path)).lower())
    return int(match.group(1)) if match else DEFAULT_DR


def _row0(hdu, path, what):
    data = hdu.data
    if data is None:
        raise ApStarError(f"{path}: HDU '{what}' is empty")
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] != APSTAR_LENGTH:
        raise ApStarError(f"{path}: {what} has shape {data.shape}; an apStar row has {APSTAR_LENGTH} pixels")
    return data[0]


def _header_float(header, key):
    value = header.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return MAGIC_NUMBER
    return value if np.isfinite(value) else MAGIC_NUMBER


def read_apstar_raw(path):
    """Row 0 (the combined spectrum) of an apStar file, before normalisation.

    Returns
    -------
    flux, flux_err, bitmask : ndarray, shape (8575,)
    header : astropy.io.fits.Header
        The primary header.

    Raises
    ------
    ApStarError
        Missing or unreadable file, or not the apStar layout.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ApStarError(f"{path}: no such file")
    try:
        with fits.open(path, memmap=False) as hdul:
            if len(hdul) < 4:
                raise ApStarError(f"{path}: {len(hdul)} HDUs; an apStar file has flux, error and bitmask HDUs 1-3")
            flux = _row0(hdul[1], path, "flux").astype(np.float64)
            err = _row0(hdul[2], path, "error").astype(np.float64)
            mask = _row0(hdul[3], path, "bitmask").astype(np.int64)
            header = hdul[0].header.copy()
    except ApStarError:
        raise
    except Exception as exc:  # astropy raises OSError, TypeError, ... for corrupt files
        raise ApStarError(f"{path}: cannot read as FITS ({exc})") from exc
    return flux, err, mask, header


def continuum_normalise(flux, flux_err, bitmask, dr=DEFAULT_DR):
    """astroNN's ``apogee_continuum`` with the paper's masked bits set to 1.

    Parameters
    ----------
    flux, flux_err, bitmask : ndarray, shape (8575,) or (N, 8575)
    dr : int
        APOGEE data release (gap positions and continuum mask).

    Returns
    -------
    spectrum, spectrum_err : ndarray, shape (7514,) or (N, 7514)
    """
    from astroNN.apogee import apogee_continuum

    squeeze = np.ndim(flux) == 1
    spec, spec_err = apogee_continuum(
        np.atleast_2d(flux), np.atleast_2d(flux_err), dr=dr, bitmask=np.atleast_2d(bitmask),
        target_bit=list(APOGEE_PIXMASK_BITS), mask_value=1.0,
    )
    if spec.shape[-1] != APOGEE_SPECTRUM_LENGTH:  # pragma: no cover - astroNN contract
        raise ApStarError(f"continuum normalisation gave {spec.shape[-1]} pixels, not {APOGEE_SPECTRUM_LENGTH}")
    return (spec[0], spec_err[0]) if squeeze else (spec, spec_err)


def read_apstar(path, dr=None):
    """Read one apStar file and continuum-normalise its combined spectrum.

    Parameters
    ----------
    path : str
    dr : int, optional
        Data release; taken from the file name (``apStar-dr17-...``) if omitted, else 17.

    Returns
    -------
    dict
        ``spectrum``, ``spectrum_err`` (7514,), ``apogee_id``, ``ra``, ``dec``
        (deg), ``k`` (2MASS Ks), ``aktarg`` (targeting A_Ks), ``snr``, ``nvisits``, ``dr``.
        Missing header values are -9999.
    """
    flux, err, mask, header = read_apstar_raw(path)
    dr = _dr_from_name(path, dr)
    spec, spec_err = continuum_normalise(flux, err, mask, dr=dr)
    apogee_id = header.get("OBJID") or header.get("APOGEE_ID") or os.path.basename(os.fspath(path))
    return {
        "spectrum": spec.astype(np.float32),
        "spectrum_err": spec_err.astype(np.float32),
        "apogee_id": str(apogee_id).strip(),
        "ra": _header_float(header, "RA"),
        "dec": _header_float(header, "DEC"),
        "k": _header_float(header, "K"),
        "aktarg": _header_float(header, "AKTARG"),
        "snr": _header_float(header, "SNR"),
        "nvisits": int(header.get("NVISITS", 0) or 0),
        "dr": dr,
    }


def _expand(paths):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            files.extend(sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith((".fits", ".fits.gz"))))
        else:
            files.append(p)
    return files


def read_apstar_files(paths, dr=None, progress=True):
    """Read many apStar files (or every ``*.fits`` in folders) into a dataset.

    A missing or corrupt file is reported and skipped; it never aborts the batch.

    Parameters
    ----------
    paths : str or sequence of str
        Files and/or folders.
    dr : int, optional
    progress : bool

    Returns
    -------
    dataset : astronn_gaiacal.dataset.Dataset or None
        ``spectra``, ``spectra_err``, ``mag`` (K), ``mag_ext`` (AKTARG),
        ``snr``, ``apogee_id``, ``ra``, ``dec``, in input order; ``None`` if no
        file could be read.
    report : OrderedDict
        ``{'read': n, 'failed': {path: reason}}``.
    """
    from .dataset import Dataset

    files = _expand(paths)
    stars, failed = [], OrderedDict()
    for path in tqdm(files, desc="apStar files", unit="file", disable=not progress):
        try:
            stars.append(read_apstar(path, dr=dr))
        except ApStarError as err:
            failed[path] = str(err)
    report = OrderedDict(read=len(stars), failed=failed)
    if not stars:
        return None, report
    columns = {
        "mag": np.array([s["k"] for s in stars]),
        "mag_ext": np.array([s["aktarg"] for s in stars]),
        "snr": np.array([s["snr"] for s in stars]),
        "apogee_id": np.array([s["apogee_id"] for s in stars]),
        "ra": np.array([s["ra"] for s in stars]),
        "dec": np.array([s["dec"] for s in stars]),
    }
    ds = Dataset(
        spectra=np.stack([s["spectrum"] for s in stars]),
        spectra_err=np.stack([s["spectrum_err"] for s in stars]),
        columns=columns,
        units={"mag": "mag", "mag_ext": "mag", "ra": "deg", "dec": "deg"},
        attrs={"band": "Ks", "source": "apStar", "apogee_dr": stars[0]["dr"]},
    )
    return ds, report
