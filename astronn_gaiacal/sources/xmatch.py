"""Cross-match a table with Gaia DR2, EDR3 or DR3: through the ESA Gaia archive, or a local extract.

:func:`crossmatch` uploads the table in chunks to the Gaia archive (an ADQL
``CONTAINS``/``DISTANCE`` join by position, or a join on ``source_id``) with
``astroquery.gaia``; :func:`crossmatch_local` does the same against a Gaia
table on disk with :meth:`~astropy.coordinates.SkyCoord.match_to_catalog_sky`.
Both return an `~astropy.table.Table` aligned row for row with the input, the
same columns (:func:`gaia_columns`), and masked rows where there is no match.

Robustness of the archive path: every chunk's result is checked to be complete
(a sentinel row uploaded last must come back, so ``ROW_LIMIT``, ``MAXREC`` or
the synchronous 2000-row cap can never truncate silently); transient failures
are retried with exponential backoff; network operations time out; a failure
raises :class:`GaiaArchiveError` naming the chunk; finished chunks are cached
on disk (atomically, keyed by query and uploaded rows), so a re-run resumes.
``astroquery.gaia`` is imported only when the archive is used, because
importing it contacts the server.

Examples
--------
Offline, against a local extract (here two synthetic Gaia DR3 sources):

>>> import numpy as np
>>> from astropy.table import Table
>>> from astronn_gaiacal.sources.xmatch import crossmatch_local, gaia_columns
>>> gaia = Table({name: np.zeros(2) for name in gaia_columns("dr3", by="source_id")})
>>> gaia["source_id"] = [11, 22]
>>> gaia["ra"], gaia["dec"] = [10.0, 10.0], [20.0, 20.01]
>>> stars = Table({"ra": [10.0, 10.0, 50.0], "dec": [20.0 + 1.5 / 3600, 20.01, -5.0]})
>>> match = crossmatch_local(stars, gaia, release="dr3")
>>> match["source_id"].filled(-1).tolist()
[11, 22, -1]
>>> np.round(match["xmatch_sep"].filled(np.nan), 3).tolist()
[1.5, 0.0, nan]
"""
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import socket
import tempfile
import time
import urllib.parse
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning
from tqdm.auto import tqdm

from ..io.atomic import atomic_path
from ..io.tables import read_table, write_table
from ..constants import DR3_OFFSET_FEATURES, GAIA_REF_EPOCH, MAGIC_NUMBER, PAPER_XMATCH_RADIUS_ARCSEC

__all__ = [
    "RELEASES",
    "GAIA_ARCHIVE_URL",
    "GaiaArchiveError",
    "GaiaTruncatedResultError",
    "gaia_columns",
    "gaia_archive",
    "crossmatch",
    "crossmatch_local",
    "add_gaia_columns",
    "dataset_columns",
    "to_dataset",
    "APOGEE_COLUMNS",
    "read_table",
    "write_table",
    "plot_crossmatch",
]

log = logging.getLogger(__name__)

#: Root of the ESA Gaia archive (astroquery's default).
GAIA_ARCHIVE_URL = "https://gea.esac.esa.int/"

#: Environment variable overriding the default cache folder.
CACHE_ENV = "ASTRONN_GAIACAL_CACHE_DIR"

_UPLOAD_NAME = "xm_input"
_CACHE_VERSION = "xmatch-cache-1"
_SERVER_SLACK_DEG = 1e-3 / 3600.0  # server cuts 1 mas wide; the exact cut is made here
_STATUS_TIMEOUT = 5.0  # seconds for the status request astroquery makes when astroquery.gaia is imported
_SENTINEL_ROW = 2**62  # uploaded last in every chunk; sorts after every input row


@dataclass(frozen=True)
class Release:
    """Archive tables of one Gaia release."""

    name: str
    source_table: str
    ref_epoch: float
    ruwe_table: str  # "" when ruwe is a gaia_source column
    zeropoint_inputs: bool
    tmass_neighbour_table: str
    tmass_join: str  # ADQL ON-condition joining tm (2MASS) to xm (best neighbour)

    def __str__(self):
        return self.name


#: The supported releases: table names and what each one has.
RELEASES = {
    "dr2": Release(
        "dr2", "gaiadr2.gaia_source", GAIA_REF_EPOCH["dr2"], "gaiadr2.ruwe", False,
        "gaiadr2.tmass_best_neighbour", "tm.tmass_oid = xm.tmass_oid",
    ),
    "edr3": Release(
        "edr3", "gaiaedr3.gaia_source", GAIA_REF_EPOCH["edr3"], "", True,
        "gaiaedr3.tmass_psc_xsc_best_neighbour", "tm.designation = xm.original_ext_source_id",
    ),
    "dr3": Release(
        "dr3", "gaiadr3.gaia_source", GAIA_REF_EPOCH["dr3"], "", True,
        "gaiadr3.tmass_psc_xsc_best_neighbour", "tm.designation = xm.original_ext_source_id",
    ),
}
_TMASS_TABLE = "gaiadr1.tmass_original_valid"

# name: (dtype, unit, description)
_ASTROMETRY = {
    "source_id": ("i8", None, "Gaia source identifier"),
    "ra": ("f8", "deg", "Gaia right ascension at ref_epoch"),
    "dec": ("f8", "deg", "Gaia declination at ref_epoch"),
    "ref_epoch": ("f8", "yr", "Gaia reference epoch (Julian year)"),
    "parallax": ("f8", "mas", "Gaia parallax (catalogue value, no zero-point correction)"),
    "parallax_error": ("f8", "mas", "Gaia parallax standard error"),
    "pmra": ("f8", "mas / yr", "proper motion in RA * cos(dec)"),
    "pmra_error": ("f8", "mas / yr", "standard error of pmra"),
    "pmdec": ("f8", "mas / yr", "proper motion in Dec"),
    "pmdec_error": ("f8", "mas / yr", "standard error of pmdec"),
    "phot_g_mean_mag": ("f8", "mag", "Gaia G magnitude"),
    "bp_rp": ("f8", "mag", "Gaia BP - RP colour"),
    "visibility_periods_used": ("i4", None, "number of visibility periods used in the astrometry"),
}
_RUWE = {"ruwe": ("f8", None, "renormalised unit weight error")}
_ZP_UNITS = {"nu_eff_used_in_astrometry": "1 / um", "pseudocolour": "1 / um", "ecl_lat": "deg",
             "astrometric_params_solved": None}
_ZEROPOINT = {
    name: ("i4" if _ZP_UNITS[name] is None else "f8", _ZP_UNITS[name], "parallax zero-point input (Lindegren+2021)")
    for name in DR3_OFFSET_FEATURES
}
# output name: (dtype, unit, description, 2MASS column)
_TMASS = {
    "tmass_designation": ("U17", None, "2MASS designation of the Gaia best neighbour", "designation"),
    "ks_m": ("f8", "mag", "2MASS Ks magnitude (not extinction corrected)", "ks_m"),
    "ks_msigcom": ("f8", "mag", "2MASS Ks total uncertainty", "ks_msigcom"),
    "ph_qual": ("U3", None, "2MASS photometric quality flags (J, H, Ks)", "ph_qual"),
}
_SEP = ("xmatch_sep", "f8", "arcsec", "angular separation input - Gaia (Gaia propagated to the input epoch)")


class GaiaArchiveError(RuntimeError):
    """The Gaia archive could not be reached, or a query on it failed.

    Attributes
    ----------
    chunk : int or None
        1-based number of the chunk that failed (None if the failure was not
        in a chunk).
    n_chunks : int or None
        Number of chunks of the cross-match.
    rows : tuple of int or None
        First and last input row (0-based) of the failed chunk.
    attempts : int
        How many times the chunk was tried.
    completed : list of int
        1-based numbers of the chunks that finished (and are cached when the
        cache is on).
    partial : `~astropy.table.Table` or None
        The aligned result with the finished chunks filled in and the other
        rows masked.
    cause : Exception or None
        The underlying error.
    """

    def __init__(self, message, *, chunk=None, n_chunks=None, rows=None, attempts=0, completed=(), partial=None,
                 cause=None):
        super().__init__(message)
        self.chunk = chunk
        self.n_chunks = n_chunks
        self.rows = rows
        self.attempts = attempts
        self.completed = list(completed)
        self.partial = partial
        self.cause = cause


class GaiaTruncatedResultError(GaiaArchiveError):
    """The archive returned fewer rows than the query produces (a row limit cut the result)."""


class _JobFailed(Exception):
    """The archive ran the job and reported an error: retrying does not help."""


# ---------------------------------------------------------------------------------------------
# Schema


def _release(release):
    key = str(release).lower()
    if key not in RELEASES:
        raise ValueError(f"release must be one of {sorted(RELEASES)}, got {release!r}")
    return RELEASES[key]


def _schema(release, with_2mass):
    rel = _release(release)
    spec = {name: value[:3] for name, value in _ASTROMETRY.items()}
    spec.update(_RUWE)
    if rel.zeropoint_inputs:
        spec.update(_ZEROPOINT)
    if with_2mass:
        spec.update({name: value[:3] for name, value in _TMASS.items()})
    return spec


def gaia_columns(release="dr3", with_2mass=False, by="position"):
    """Names of the columns a cross-match returns, in order.

    Parameters
    ----------
    release : {'dr2', 'edr3', 'dr3'}
        Gaia release.  ``ruwe`` is in all three (DR2 through the archive's
        ``gaiadr2.ruwe`` table); EDR3 and DR3 add the parallax zero-point
        inputs of Lindegren et al. (2021).
    with_2mass : bool
        Add the 2MASS best neighbour's ``tmass_designation``, ``ks_m``,
        ``ks_msigcom`` and ``ph_qual``.
    by : {'position', 'source_id'}
        A positional match adds ``xmatch_sep`` (arcsec).

    Examples
    --------
    >>> from astronn_gaiacal.sources.xmatch import gaia_columns
    >>> gaia_columns("dr2")[-3:]
    ['visibility_periods_used', 'ruwe', 'xmatch_sep']
    >>> gaia_columns("dr3", by="source_id")[-4:]
    ['nu_eff_used_in_astrometry', 'pseudocolour', 'ecl_lat', 'astrometric_params_solved']
    """
    names = list(_schema(release, with_2mass))
    if _check_by(by) == "position":
        names.append(_SEP[0])
    return names


def _check_by(by):
    if by not in ("position", "source_id"):
        raise ValueError(f"by must be 'position' or 'source_id', got {by!r}")
    return by


# ---------------------------------------------------------------------------------------------
# Input


def _find_column(table, name, argument):
    if name in table.colnames:
        return name
    folded = [c for c in table.colnames if c.lower() == str(name).lower()]
    if len(folded) == 1:
        return folded[0]
    raise KeyError(f"{argument}: column {name!r} not in the table (columns: {', '.join(table.colnames[:20])})")


def _data_mask(col):
    """Plain ``(data, mask)`` arrays of a column, masked array, Quantity or array-like.

    Astropy columns are viewed as plain ndarrays before anything else: wrapping
    a MaskedColumn in ``np.ma.MaskedArray`` can crash numpy 2.4 with astropy 8.
    """
    if isinstance(col, u.Quantity):
        data = np.asarray(getattr(col, "unmasked", col).value)
    elif isinstance(col, np.ndarray):
        data = col.view(np.ndarray)
    else:
        data = np.asarray(col)
    mask = getattr(col, "mask", None)
    if mask is None or mask is np.ma.nomask:
        mask = np.zeros(data.shape, bool)
    else:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), data.shape).copy()
    return data, mask


def _unit_factor(src_unit, unit, name):
    """Factor from ``src_unit`` to ``unit``; 1 when either is missing or astropy cannot parse ``src_unit``."""
    if unit is None or src_unit is None:
        return 1.0
    try:
        return u.Unit(src_unit).to(unit)
    except u.UnitConversionError as err:
        raise u.UnitTypeError(f"column {name!r} has unit {src_unit}, not convertible to {unit}") from err
    except ValueError:  # unrecognised unit string (e.g. 'Julian years'): trust the column
        return 1.0


def _float_values(col, name, unit=None):
    """Column as a float array (in ``unit`` when given) with NaN where masked, NaN or -9999."""
    if isinstance(col, u.Quantity):
        mask = np.asarray(getattr(col, "mask", False))
        col = getattr(col, "unmasked", col)
        data = col.value * _unit_factor(col.unit, unit, name)
    else:
        raw, mask = _data_mask(col)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"column {name!r} must be numeric, got dtype {raw.dtype}")
        data = raw.astype(float) * _unit_factor(getattr(col, "unit", None), unit, name)
    data = np.array(data, dtype=float, ndmin=1)
    data[np.broadcast_to(mask, data.shape) | (data == MAGIC_NUMBER)] = np.nan
    return data


def _angle_values(col, name):
    if isinstance(col, u.Quantity) and not col.unit.is_equivalent(u.deg):
        raise u.UnitTypeError(f"column {name!r} must be an angle, got unit {col.unit}")
    return _float_values(col, name, u.deg)


def _epoch_values(epoch, table, n):
    """Input epochs as Julian years, or None."""
    if epoch is None:
        return None
    name = "epoch"
    if isinstance(epoch, str):
        name = _find_column(table, epoch, "epoch")
        epoch = table[name]
    if isinstance(epoch, Time):
        values = np.broadcast_to(np.atleast_1d(epoch.jyear).astype(float), (n,))
    else:
        values = _float_values(epoch if hasattr(epoch, "unit") else np.asarray(epoch, float), name, u.yr)
        values = np.broadcast_to(values, (n,)) if values.size == 1 else values
        if values.shape != (n,):
            raise ValueError(f"epoch has {values.size} values for {n} rows")
    finite = values[np.isfinite(values)]
    bad = finite[(finite < 1900) | (finite > 2200)]
    if bad.size:
        raise ValueError(f"{name!r} must be Julian years (e.g. 2014.5); values like {bad[0]:g} look like "
                         "MJD or JD: pass astropy.time.Time(..., format='mjd') instead")
    return np.array(values, dtype=float)


@dataclass
class _Input:
    n: int
    valid: np.ndarray  # rows that take part in the match
    ra: np.ndarray = None
    dec: np.ndarray = None
    epoch: np.ndarray = None
    source_id: np.ndarray = None


def _prepare_input(table, by, ra, dec, epoch, source_id):
    by = _check_by(by)
    if isinstance(table, SkyCoord):
        if by != "position":
            raise TypeError("a SkyCoord input needs by='position'")
        icrs = table.icrs
        if epoch is None and table.obstime is not None:
            epoch = table.obstime
        table = Table({"ra": np.atleast_1d(icrs.ra.deg), "dec": np.atleast_1d(icrs.dec.deg)})
        ra, dec = "ra", "dec"
    elif not isinstance(table, Table):
        if by == "source_id" and np.ndim(table) == 1:
            table = Table({"source_id": np.asarray(table)})
            source_id = "source_id"
        else:
            raise TypeError(f"table must be an astropy Table or SkyCoord, got {type(table).__name__}")
    n = len(table)
    if by == "position":
        ra_name, dec_name = _find_column(table, ra, "ra"), _find_column(table, dec, "dec")
        ra_deg = _angle_values(table[ra_name], ra_name)
        dec_deg = _angle_values(table[dec_name], dec_name)
        valid = np.isfinite(ra_deg) & np.isfinite(dec_deg)
        if np.any((ra_deg[valid] < -360) | (ra_deg[valid] > 360)):
            raise ValueError(f"column {ra_name!r} is outside [-360, 360] deg: is it in radians or hours?")
        if np.any(np.abs(dec_deg[valid]) > 90):
            raise ValueError(f"column {dec_name!r} is outside [-90, 90] deg")
        epochs = _epoch_values(epoch, table, n)
        if epochs is not None and not np.all(np.isfinite(epochs[valid])):
            raise ValueError(f"epoch is missing (NaN/-9999) for {np.sum(~np.isfinite(epochs[valid]))} rows "
                             "with a position")
        if not np.all(valid):
            warnings.warn(f"{np.sum(~valid)} of {n} rows have no position ({ra_name!r}/{dec_name!r} NaN, -9999 or "
                          "masked); they are returned unmatched", AstropyUserWarning, stacklevel=3)
        return _Input(n, valid, ra=np.mod(ra_deg, 360.0), dec=dec_deg, epoch=epochs)
    if epoch is not None:
        raise ValueError("epoch only applies to by='position'")
    name = _find_column(table, source_id, "source_id")
    col = table[name]
    data, mask = _data_mask(col)
    kind = data.dtype.kind
    if kind == "f":
        raise TypeError(f"column {name!r} is floating point: Gaia source_ids need 64-bit integers "
                        "(float64 loses digits); read it as int64 or string")
    if kind in "USO":
        ids = np.array([0 if m else _parse_id(v) for v, m in zip(data, mask)], dtype=np.int64)
    elif kind in "iu":
        ids = np.where(mask, 0, data).astype(np.int64)
    else:
        raise TypeError(f"column {name!r} must hold integer source_ids, got dtype {data.dtype}")
    valid = ids > 0
    if not np.all(valid):
        warnings.warn(f"{np.sum(~valid)} of {n} rows have no source_id in {name!r} (masked, 0, negative or "
                      "-9999); they are returned unmatched", AstropyUserWarning, stacklevel=3)
    return _Input(n, valid, source_id=ids)


def _parse_id(value):
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip().split()[-1] if text.strip() else ""  # accepts "Gaia DR3 123"
    try:
        return int(text)
    except ValueError:
        return 0


def _radius_deg(radius):
    if radius is None:
        radius = PAPER_XMATCH_RADIUS_ARCSEC * u.arcsec
    if not isinstance(radius, u.Quantity):
        radius = float(radius) * u.arcsec
    if not radius.unit.is_equivalent(u.deg):
        raise u.UnitTypeError(f"radius must be an angle, got unit {radius.unit}")
    value = radius.to_value(u.deg)
    if not (np.isscalar(value) and np.isfinite(value) and value > 0):
        raise ValueError(f"radius must be a positive finite angle, got {radius}")
    return float(value)


def _max_pm_mas(max_pm):
    if not isinstance(max_pm, u.Quantity):
        max_pm = float(max_pm) * u.mas / u.yr
    try:
        value = max_pm.to_value(u.mas / u.yr)
    except u.UnitConversionError as err:
        raise u.UnitTypeError(f"max_pm must be an angular speed, got unit {max_pm.unit}") from err
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"max_pm must be finite and >= 0, got {max_pm}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Shared matching logic (archive and local)


def _normalize(raw, spec, rows, origin):
    """Candidate table (``xm_row`` + ``spec`` columns) with fixed dtypes, units and masks."""
    missing = [name for name in spec if name not in raw.colnames]
    if missing:
        raise KeyError(f"{origin} lacks column(s) {', '.join(missing)}")
    out = Table()
    out["xm_row"] = np.asarray(rows, dtype=np.int64)
    for name, (dtype, unit, description) in spec.items():
        col = raw[name]
        if dtype[0] in "fi":
            data, mask = _data_mask(col)
            if dtype[0] == "i" and data.dtype.kind in "iu":
                mask = mask | (data == MAGIC_NUMBER)
                values = np.where(mask, 0, data).astype(dtype)
            else:
                values = _float_values(col, f"{name}' of '{origin}", unit)
                mask = np.isnan(values)
                if dtype[0] == "i":
                    values = np.where(mask, 0, values).astype(dtype)
        else:
            data, mask = _data_mask(col)
            values = np.array(["" if m else (v.decode() if isinstance(v, bytes) else str(v)).strip()
                               for v, m in zip(data, mask)], dtype=dtype)
            mask = mask | (values == "")
        out[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    return out


def _filled(col, fill):
    data, mask = _data_mask(col)
    if not mask.any():
        return data
    out = data.astype(np.result_type(data.dtype, np.asarray(fill).dtype))
    out[mask] = fill
    return out


def _propagate(ra, dec, pmra, pmdec, dt):
    """Linear proper-motion propagation (the ADQL expression sent to the archive), degrees."""
    pmra = np.where(np.isfinite(pmra), pmra, 0.0)
    pmdec = np.where(np.isfinite(pmdec), pmdec, 0.0)
    return ra + pmra * dt / (3.6e6 * np.cos(np.radians(dec))), dec + pmdec * dt / 3.6e6


def _candidate_separations(inp, cand):
    """Separation (arcsec) of each candidate from its input row, Gaia moved to the input epoch."""
    rows = np.asarray(cand["xm_row"])
    g_ra, g_dec = _filled(cand["ra"], np.nan), _filled(cand["dec"], np.nan)
    if inp.epoch is not None:
        dt = inp.epoch[rows] - _filled(cand["ref_epoch"], np.nan)
        g_ra, g_dec = _propagate(g_ra, g_dec, _filled(cand["pmra"], np.nan), _filled(cand["pmdec"], np.nan), dt)
    sep = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg").separation(SkyCoord(g_ra, g_dec, unit="deg"))
    return sep.to_value(u.arcsec)


def _assemble(inp, cand, spec, by, radius_deg, meta):
    """Pick the nearest candidate within the radius per input row and align with the input."""
    n = inp.n
    rows = np.asarray(cand["xm_row"], dtype=np.int64)
    has_match = ~_data_mask(cand["source_id"])[1]
    sep = None
    if by == "position":
        sep = np.full(len(cand), np.inf)
        if np.any(has_match):
            sep[has_match] = _candidate_separations(inp, cand[has_match])
        keep = has_match & (sep <= radius_deg * 3600.0)
    else:
        keep = has_match
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((sep[idx], rows[idx]))] if sep is not None else idx[np.argsort(rows[idx], kind="stable")]
    chosen_rows, first = np.unique(rows[order], return_index=True)
    chosen = order[first]
    out = Table(meta=meta)
    matched = np.zeros(n, bool)
    matched[chosen_rows] = True
    for name, (dtype, unit, description) in spec.items():
        values = np.zeros(n, dtype=dtype)
        mask = np.ones(n, bool)
        if len(chosen):
            data, cmask = _data_mask(cand[name])
            values[chosen_rows] = data[chosen]
            mask[chosen_rows] = cmask[chosen]
        if dtype.startswith("f"):
            values[mask] = np.nan
        out[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    if by == "position":
        values = np.full(n, np.nan)
        values[chosen_rows] = sep[chosen]
        out[_SEP[0]] = MaskedColumn(values, mask=~matched, unit=_SEP[2], description=_SEP[3])
    out.meta["n_matched"] = int(matched.sum())
    return out


def _meta(rel, by, radius_deg, with_2mass, source):
    meta = {"gaia_release": rel.name, "gaia_table": rel.source_table, "xmatch_by": by, "xmatch_source": source,
            "xmatch_2mass": bool(with_2mass)}
    if by == "position":
        meta["xmatch_radius_arcsec"] = radius_deg * 3600.0
    return meta


# ---------------------------------------------------------------------------------------------
# Archive access


class _TimeoutConnection:
    """Mix-in: connect with ``timeout``, then wait at most ``read_timeout`` per read."""

    def __init__(self, *args, read_timeout=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self):
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _HTTPConnection(_TimeoutConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_TimeoutConnection, http.client.HTTPSConnection):
    pass


def _timeouts(timeout):
    if np.isscalar(timeout):
        timeout = (timeout, timeout)
    connect, read = (float(t) for t in timeout)
    if not (connect > 0 and read > 0):
        raise ValueError(f"timeout must be positive seconds (connect, read), got {timeout}")
    return connect, read


@contextlib.contextmanager
def _quiet_network(connect_timeout):
    """Socket default timeout for code that opens connections without one; astroquery chatter to the log."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(connect_timeout)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            from astroquery import log as aq_log

            level = aq_log.level
            aq_log.setLevel("WARNING")
            try:
                yield
            finally:
                aq_log.setLevel(level)
    finally:
        socket.setdefaulttimeout(old)
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.info("astroquery: %s", line.strip())


def _import_gaia(connect_timeout):
    # Importing astroquery.gaia creates astroquery's module-level Gaia object, which asks the
    # server for status messages: do it once, with a short timeout.
    with _quiet_network(min(connect_timeout, _STATUS_TIMEOUT)):
        from astroquery.gaia import GaiaClass
    return GaiaClass


def gaia_archive(url=GAIA_ARCHIVE_URL, timeout=(10.0, 60.0)):
    """An ``astroquery.gaia.GaiaClass`` whose connections time out.

    astroquery opens connections without a timeout, so an unreachable archive
    can block for minutes; this client waits at most ``timeout[0]`` seconds to
    connect and ``timeout[1]`` seconds for each read.

    Parameters
    ----------
    url : str
        Archive root (the TAP service is ``<url>tap-server/tap``).
    timeout : float or (float, float)
        Connect and read timeouts in seconds.

    Returns
    -------
    astroquery.gaia.GaiaClass
    """
    connect, read = _timeouts(timeout)
    GaiaClass = _import_gaia(connect)
    from astroquery.utils.tap.conn.tapconn import ConnectionHandler, TapConn

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be http(s)://host[:port]/, got {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)

    class _Handler(ConnectionHandler):
        def get_connection(self, *, ishttps=False, cookie=None, verbose=False):
            if ishttps or cookie is not None:
                return self.get_connection_secure(verbose)
            return _HTTPConnection(parts.hostname, port, timeout=connect, read_timeout=read)

        def get_connection_secure(self, verbose):
            return _HTTPSConnection(parts.hostname, port, timeout=connect, read_timeout=read)

    base = parts.path.strip("/")
    tap = TapConn(ishttps=https, host=parts.hostname, server_context=f"{base}/tap-server".strip("/"),
                  tap_context="tap", upload_context="Upload", table_edit_context="TableTool",
                  data_context="data", datalink_context="datalink", port=port, sslport=port,
                  connhandler=_Handler(parts.hostname, port, port))
    archive = GaiaClass(tap_plus_conn_handler=tap, gaia_tap_server=url, gaia_data_server=url,
                        show_server_messages=False)
    archive._astronn_gaiacal_url = url
    return archive


def _adql(rel, by, with_2mass, radius_deg=None, search_deg=None, epoch=False):
    spec = _schema(rel.name, with_2mass)
    select = ["u.xm_row"]
    for name in spec:
        if name == "ruwe" and rel.ruwe_table:
            select.append("r.ruwe")
        elif name in _TMASS:
            column = _TMASS[name][3]
            select.append(f"tm.{column}" if column == name else f"tm.{column} AS {name}")
        else:
            select.append(f"g.{name}")
    if by == "source_id":
        on = "g.source_id = u.xm_source_id"
    else:
        r = radius_deg + _SERVER_SLACK_DEG
        here = "POINT('ICRS', u.xm_ra, u.xm_dec)"
        if not epoch:
            on = f"1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.xm_ra, u.xm_dec, {r:.12g}))"
        else:
            dt = "(u.xm_epoch - g.ref_epoch)"
            moved = (f"POINT('ICRS', g.ra + g.pmra * {dt} / (3600000.0 * COS(RADIANS(g.dec))), "
                     f"g.dec + g.pmdec * {dt} / 3600000.0)")
            on = (f"1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.xm_ra, u.xm_dec, {search_deg:.12g})) "
                  f"AND (DISTANCE({here}, {moved}) < {r:.12g} "
                  f"OR (g.pmra IS NULL AND DISTANCE({here}, POINT('ICRS', g.ra, g.dec)) < {r:.12g}))")
    lines = [f"SELECT {', '.join(select)}",
             f"FROM tap_upload.{_UPLOAD_NAME} AS u",
             f"LEFT OUTER JOIN {rel.source_table} AS g ON {on}"]
    if "ruwe" in spec and rel.ruwe_table:
        lines.append(f"LEFT OUTER JOIN {rel.ruwe_table} AS r ON r.source_id = g.source_id")
    if with_2mass:
        lines.append(f"LEFT OUTER JOIN {rel.tmass_neighbour_table} AS xm ON xm.source_id = g.source_id")
        lines.append(f"LEFT OUTER JOIN {_TMASS_TABLE} AS tm ON {rel.tmass_join}")
    lines.append("ORDER BY u.xm_row")
    return "\n".join(lines)


def _upload_table(inp, rows, by):
    """Upload for one chunk, plus a sentinel row (a copy of the last, numbered to sort last)."""
    rows = np.append(rows, rows[-1])
    upload = Table()
    upload["xm_row"] = np.append(rows[:-1], _SENTINEL_ROW).astype(np.int64)
    if by == "source_id":
        upload["xm_source_id"] = inp.source_id[rows].astype(np.int64)
    else:
        upload["xm_ra"] = inp.ra[rows]
        upload["xm_dec"] = inp.dec[rows]
        if inp.epoch is not None:
            upload["xm_epoch"] = inp.epoch[rows]
    return upload


def _cache_key(query, upload):
    digest = hashlib.sha256()
    digest.update(json.dumps([_CACHE_VERSION, query, upload.colnames]).encode())
    for name in upload.colnames:
        digest.update(np.ascontiguousarray(upload[name]).tobytes())
    return digest.hexdigest()


def _cache_dir(cache):
    if cache is False or cache is None:
        return None
    if cache is True:
        from ..io.atomic import cache_folder

        return cache_folder("xmatch", CACHE_ENV)
    return os.fspath(cache)


def _is_unreachable(err):
    return isinstance(err, (socket.gaierror, ConnectionError, TimeoutError, socket.timeout)) or (
        isinstance(err, OSError) and err.errno in (101, 110, 111, 113))


def _describe(err):
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:300]}"


def _run_chunk(archive, query, upload, socket_timeout):
    # The upload is written as BINARY2, not astroquery's default TABLEDATA: astropy's C TABLEDATA
    # writer overruns its buffer by one character when a row is exactly a power of two long.
    with tempfile.TemporaryDirectory(prefix="astronn_gaiacal_xmatch_") as folder:
        path = os.path.join(folder, f"{_UPLOAD_NAME}.vot")
        with atomic_path(path) as tmp:
            upload.write(tmp, format="votable", tabledata_format="binary2")
        with _quiet_network(socket_timeout):
            try:
                job = archive.launch_job_async(query, upload_resource=path, upload_table_name=_UPLOAD_NAME)
                result = job.get_results()
            except SystemError as err:  # astroquery: the job ended in phase ERROR
                raise _JobFailed(str(err)) from err
    if result is None:
        raise OSError("the archive returned no result table")
    return result


def _check_complete(raw_rows, upload, by, chunk_label):
    """Raise if the archive's answer misses rows (truncated) or has unexpected ones."""
    expected = np.asarray(upload["xm_row"])
    sentinel = expected[-1]
    got = np.asarray(raw_rows)
    if sentinel not in got:
        raise GaiaTruncatedResultError(
            f"{chunk_label}: the archive returned {len(got)} rows and the last ones are missing (a row limit "
            "truncated the result); use a smaller chunk_size")
    uploaded, counts = np.unique(got, return_counts=True)
    if not np.array_equal(uploaded, np.sort(expected)):
        raise GaiaTruncatedResultError(
            f"{chunk_label}: the archive's rows do not match the upload ({len(uploaded)} of {len(expected)} rows "
            "came back)")
    if by == "source_id" and np.any(counts > 1):
        raise GaiaArchiveError(f"{chunk_label}: the archive returned several rows for one source_id")


def crossmatch(table, release="dr3", *, by="position", radius=None, ra="ra", dec="dec", epoch=None,
               source_id="source_id", with_2mass=False, chunk_size=5000, max_pm=1000 * u.mas / u.yr,
               cache=True, retries=3, backoff=1.0, timeout=(10.0, 60.0), archive=None, progress=True):
    """Cross-match a table with a Gaia release through the ESA Gaia archive.

    The input is uploaded in chunks (``launch_job_async`` with a TAP upload)
    and joined in ADQL: by position, ``1 = CONTAINS(POINT(gaia), CIRCLE(input,
    radius))`` (plus a ``DISTANCE`` cut on the Gaia position moved to the
    input epoch when ``epoch`` is given), keeping the nearest Gaia source per
    input row; by id, an equality join on ``source_id``.

    Parameters
    ----------
    table : `~astropy.table.Table`, `~astropy.coordinates.SkyCoord` or array of int
        Input rows.  A SkyCoord with ``obstime`` gives the epoch.
    release : {'dr2', 'edr3', 'dr3'}
        Gaia release; table names and columns follow :data:`RELEASES`.
    by : {'position', 'source_id'}
        Match by sky position or by Gaia ``source_id``.
    radius : `~astropy.units.Quantity` or float, optional
        Match radius (float: arcsec); default 2 arcsec, the paper's.
    ra, dec : str
        Position columns (degrees if they have no unit); case-insensitive.
    epoch : str, float, array or `~astropy.time.Time`, optional
        Epoch of the input positions (column name, Julian years, or Time).
        Gaia positions are then moved to that epoch with their proper motions
        before the separation is measured.
    source_id : str
        Column of Gaia source_ids for ``by='source_id'`` (int64 or strings such
        as ``'Gaia DR3 123'``; 0, negative or masked ids mean "no id").
    with_2mass : bool
        Add 2MASS Ks, its error and the quality flag from the archive's
        best-neighbour cross-match of the same release.
    chunk_size : int
        Input rows per archive job.
    max_pm : `~astropy.units.Quantity` or float
        Largest proper motion (float: mas/yr) searched for when ``epoch`` is
        given; faster stars can be missed.
    cache : bool or path
        Cache finished chunks on disk (True: ``$ASTRONN_GAIACAL_CACHE_DIR`` or
        ``<astropy cache>/astronn_gaiacal/xmatch``; a path: that folder;
        False: no cache).  A chunk's cache key is its query and uploaded rows.
    retries : int
        Extra attempts per chunk after a transient failure.
    backoff : float
        Seconds before the first retry; doubled after each retry.
    timeout : float or (float, float)
        Connect and read timeouts (seconds) of the default archive client.
        With the defaults an unreachable archive fails in under a minute.
    archive : astroquery.gaia.GaiaClass, optional
        Client to use (e.g. a logged-in one); default :func:`gaia_archive`.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    `~astropy.table.Table`
        One row per input row, columns :func:`gaia_columns`; rows without a
        match are masked (``source_id`` masked).  ``meta`` records the release,
        radius and number matched.

    Raises
    ------
    GaiaArchiveError
        The archive is unreachable, a job failed, or (as
        :class:`GaiaTruncatedResultError`) a result was truncated; the message
        names the chunk, finished chunks stay cached.
    KeyError, ValueError, TypeError, astropy.units.UnitTypeError
        Bad input, naming the argument or column.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astronn_gaiacal.sources.xmatch import crossmatch
    >>> stars = Table({"ra": [297.210708], "dec": [50.091083]})  # 2M19485057+5005279
    >>> gaia = crossmatch(stars, "dr2", with_2mass=True)  # doctest: +SKIP
    >>> gaia["parallax", "ks_m"]  # doctest: +SKIP
    """
    rel = _release(release)
    radius_deg = _radius_deg(radius)
    inp = _prepare_input(table, by, ra, dec, epoch, source_id)
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    retries = int(retries)
    if retries < 0 or not np.isfinite(backoff) or backoff < 0:
        raise ValueError(f"retries and backoff must be >= 0, got {retries}, {backoff}")
    _, read_timeout = _timeouts(timeout)
    pm_mas = _max_pm_mas(max_pm)
    spec = _schema(rel.name, with_2mass)
    folder = _cache_dir(cache)
    meta = _meta(rel, by, radius_deg, with_2mass, "archive")

    rows_all = np.flatnonzero(inp.valid)
    chunks = [rows_all[i:i + chunk_size] for i in range(0, len(rows_all), chunk_size)]
    pieces, completed = [], []
    bar = tqdm(total=len(rows_all), desc=f"Gaia {rel.name} cross-match", unit="row", disable=not progress)
    try:
        for k, rows in enumerate(chunks, start=1):
            label = f"chunk {k} of {len(chunks)} (input rows {rows[0]}-{rows[-1]})"
            search_deg = None
            if inp.epoch is not None:
                dt_max = np.max(np.abs(inp.epoch[rows] - rel.ref_epoch))
                search_deg = radius_deg + _SERVER_SLACK_DEG + pm_mas * dt_max / 3.6e6
            query = _adql(rel, by, with_2mass, radius_deg, search_deg, epoch=inp.epoch is not None)
            upload = _upload_table(inp, rows, by)
            path = os.path.join(folder, _cache_key(query, upload) + ".ecsv") if folder else None
            if path and os.path.exists(path):
                cached = Table.read(path, format="ascii.ecsv")
                cand = _normalize(cached, spec, cached["xm_row"], f"cache file {path}")
                log.info("%s: from cache %s", label, path)
            else:
                if archive is None:
                    archive = gaia_archive(timeout=timeout)
                try:
                    cand = _fetch_chunk(archive, query, upload, by, spec, label, retries, backoff,
                                        read_timeout)
                except GaiaArchiveError as err:
                    done = _assemble(inp, _stack(pieces, spec), spec, by, radius_deg, meta)
                    where = f"; finished chunks {completed} are cached in {folder}" if completed and folder else ""
                    err.args = (f"{err.args[0]}{where}",)
                    err.chunk, err.n_chunks, err.rows = k, len(chunks), (int(rows[0]), int(rows[-1]))
                    err.completed, err.partial = list(completed), done
                    raise err.with_traceback(None) from None
                if path:
                    with atomic_path(path, overwrite=True) as tmp:
                        cand.write(tmp, format="ascii.ecsv")
            pieces.append(cand)
            completed.append(k)
            bar.update(len(rows))
    finally:
        bar.close()
    return _assemble(inp, _stack(pieces, spec), spec, by, radius_deg, meta)


def _stack(pieces, spec):
    from astropy.table import vstack

    if pieces:
        return vstack(pieces, metadata_conflicts="silent")
    empty = Table()
    empty["xm_row"] = np.zeros(0, np.int64)
    for name, (dtype, unit, _) in spec.items():
        empty[name] = MaskedColumn(np.zeros(0, dtype), unit=unit)
    return empty


def _fetch_chunk(archive, query, upload, by, spec, label, retries, backoff, socket_timeout):
    attempts = 0
    while True:
        attempts += 1
        try:
            raw = _run_chunk(archive, query, upload, socket_timeout)
            if "xm_row" not in raw.colnames:
                raise GaiaArchiveError(f"{label}: the archive's answer has no xm_row column "
                                       f"(columns: {', '.join(raw.colnames[:10])})")
            raw_rows = _filled(raw["xm_row"], -1).astype(np.int64)
            _check_complete(raw_rows, upload, by, label)
            keep = raw_rows != upload["xm_row"][-1]
            return _normalize(raw[keep], spec, raw_rows[keep], f"the archive's answer for {label}")
        except GaiaArchiveError as err:
            err.attempts = attempts
            raise
        except _JobFailed as err:
            raise GaiaArchiveError(f"Gaia archive job failed: {_describe(err)} [{label}]", attempts=attempts,
                                   cause=err) from None
        except KeyError as err:
            raise GaiaArchiveError(f"{label}: unexpected answer from the archive: {err}", attempts=attempts,
                                   cause=err) from None
        except _transient_errors() as err:
            if attempts > retries:
                url = getattr(archive, "_astronn_gaiacal_url", None)
                what = "cannot reach the Gaia archive" if _is_unreachable(err) else "Gaia archive query failed"
                what += f" ({url})" if url else ""
                raise GaiaArchiveError(f"{what}: {_describe(err)} [{label}, {attempts} attempts]",
                                       attempts=attempts, cause=err) from None
            wait = backoff * 2 ** (attempts - 1)
            log.warning("%s: attempt %d failed (%s); retrying in %.1f s", label, attempts, _describe(err), wait)
            _sleep(wait)


_sleep = time.sleep


def _transient_errors():
    """Network, HTTP and truncated-download errors: worth another attempt."""
    import xml.parsers.expat

    import requests
    from astropy.io.votable.exceptions import VOTableSpecError

    return (OSError, EOFError, http.client.HTTPException, requests.RequestException,
            xml.parsers.expat.ExpatError, VOTableSpecError)


# ---------------------------------------------------------------------------------------------
# Local matching


def crossmatch_local(table, gaia, release="dr3", *, by="position", radius=None, ra="ra", dec="dec", epoch=None,
                     source_id="source_id", with_2mass=False):
    """Cross-match with a local Gaia table; same output as :func:`crossmatch`.

    By position without an epoch this is
    :meth:`~astropy.coordinates.SkyCoord.match_to_catalog_sky` with a radius
    cut; with an epoch, every Gaia source that could be within the radius
    (given the table's largest proper motion) is moved to the input epoch
    first.  By id it is an exact join on ``source_id``.

    Parameters
    ----------
    table : `~astropy.table.Table`, `~astropy.coordinates.SkyCoord` or array of int
        Input rows (as for :func:`crossmatch`).
    gaia : `~astropy.table.Table` or path
        Gaia extract (FITS, HDF5, Parquet, ECSV, CSV, VOTable) with the columns
        :func:`gaia_columns` lists for ``release`` (``ref_epoch`` may be absent:
        the release's epoch is used).
    release, by, radius, ra, dec, epoch, source_id, with_2mass
        As in :func:`crossmatch`.

    Returns
    -------
    `~astropy.table.Table`
        Aligned with ``table``; unmatched rows masked.
    """
    rel = _release(release)
    radius_deg = _radius_deg(radius)
    inp = _prepare_input(table, by, ra, dec, epoch, source_id)
    spec = _schema(rel.name, with_2mass)
    source = os.fspath(gaia) if isinstance(gaia, (str, os.PathLike)) else "table"
    if isinstance(gaia, (str, os.PathLike)):
        gaia = read_table(gaia)
    if not isinstance(gaia, Table):
        raise TypeError(f"gaia must be an astropy Table or a path, got {type(gaia).__name__}")
    if "ref_epoch" not in gaia.colnames:
        gaia = gaia.copy(copy_data=False)
        gaia["ref_epoch"] = np.full(len(gaia), rel.ref_epoch)
    origin = f"the local Gaia table ({source}) for release {rel.name}"
    cat = _normalize(gaia, spec, np.arange(len(gaia)), origin)
    ids = _filled(cat["source_id"], 0)
    rows = np.flatnonzero(inp.valid)
    if by == "source_id":
        order = np.argsort(ids, kind="stable")
        if np.any(np.diff(ids[order]) == 0):
            raise ValueError(f"{origin}: source_id is not unique")
        pos = np.clip(np.searchsorted(ids, inp.source_id[rows], sorter=order), 0, max(len(ids) - 1, 0))
        hit = (ids[order[pos]] == inp.source_id[rows]) if len(ids) else np.zeros(len(rows), bool)
        pairs_in, pairs_cat = rows[hit], order[pos[hit]]
    else:
        g_ra, g_dec = _filled(cat["ra"], np.nan), _filled(cat["dec"], np.nan)
        good = np.flatnonzero(np.isfinite(g_ra) & np.isfinite(g_dec))
        if len(good) == 0 or len(rows) == 0:
            pairs_in, pairs_cat = np.zeros(0, int), np.zeros(0, int)
        elif inp.epoch is None:
            here = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg")
            nearest, sep, _ = here.match_to_catalog_sky(SkyCoord(g_ra[good], g_dec[good], unit="deg"))
            hit = sep.to_value(u.deg) <= radius_deg
            pairs_in, pairs_cat = rows[hit], good[nearest[hit]]
        else:
            pm = np.hypot(_filled(cat["pmra"], 0.0), _filled(cat["pmdec"], 0.0))[good]
            ref = _filled(cat["ref_epoch"], np.nan)[good]
            dt = np.max(np.abs(inp.epoch[rows][:, None] - np.array([np.nanmin(ref), np.nanmax(ref)])))
            search = radius_deg + np.nanmax(pm) * dt / 3.6e6 + _SERVER_SLACK_DEG
            here = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg")
            i_in, i_cat, _, _ = here.search_around_sky(SkyCoord(g_ra[good], g_dec[good], unit="deg"),
                                                       search * u.deg)
            pairs_in, pairs_cat = rows[i_in], good[i_cat]
    cand = cat[pairs_cat]
    cand["xm_row"] = pairs_in.astype(np.int64)
    return _assemble(inp, cand, spec, by, radius_deg, _meta(rel, by, radius_deg, with_2mass, source))


# ---------------------------------------------------------------------------------------------
# Combining and looking at results


def add_gaia_columns(table, matched, prefix="gaia_"):
    """The input table with the cross-match columns appended.

    Cross-match columns whose names the input already uses, ignoring case
    (``ra``, ``dec``, an input ``source_id``), get ``prefix``.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The cross-matched input.
    matched : `~astropy.table.Table`
        Result of :func:`crossmatch` or :func:`crossmatch_local` for ``table``.
    prefix : str
        Prefix for colliding names.

    Returns
    -------
    `~astropy.table.Table`
    """
    if len(table) != len(matched):
        raise ValueError(f"matched has {len(matched)} rows but table has {len(table)}: pass the cross-match of "
                         "this table")
    out = Table(table, copy=True)
    for name in matched.colnames:
        taken = {c.lower() for c in out.colnames}  # FITS and SQL-like formats ignore case
        new = name if name.lower() not in taken else prefix + name
        if new.lower() in taken:
            raise ValueError(f"column {new!r} already exists in the table: use another prefix")
        out[new] = matched[name]
    out.meta.update({k: v for k, v in matched.meta.items()})
    return out


def dataset_columns(table):
    """Columns of ``table`` as plain arrays for the dataset format, and their units.

    Masked entries become NaN (floats), -9999 (integers, e.g. an unmatched
    ``source_id``) or ``""`` (strings), the dataset format's missing values.

    Returns
    -------
    values : dict of str to `~numpy.ndarray`
    units : dict of str to str
        Only for columns with a unit.
    """
    values, units = {}, {}
    for name in table.colnames:
        col = table[name]
        data, _ = _data_mask(col)
        kind = data.dtype.kind
        if kind == "f":
            values[name] = _filled(col, np.nan)
        elif kind in "iu":
            values[name] = _filled(col, int(MAGIC_NUMBER)).astype(np.int64)
        elif kind == "b":
            values[name] = _filled(col, False)
        else:
            values[name] = _filled(col, "" if kind == "U" else b"")
        if getattr(col, "unit", None) is not None:
            units[name] = col.unit.to_string()
    return values, units


#: Dataset-format column -> APOGEE allStar (or apStar header) names it is read from, in order.
APOGEE_COLUMNS = {
    "apogee_id": ("APOGEE_ID",),
    "ra": ("RA",),
    "dec": ("DEC",),
    "teff": ("TEFF",),
    "logg": ("LOGG",),
    "fe_h": ("FE_H", "M_H"),
    "snr": ("SNR", "SNREV"),
    "mag": ("K",),
    "mag_ext": ("AK_TARG", "AKTARG"),
    "starflag": ("STARFLAG",),
    "vscatter": ("VSCATTER",),
}
_APOGEE_UNITS = {"ra": "deg", "dec": "deg", "teff": "K", "mag": "mag", "mag_ext": "mag"}


def to_dataset(table, matched, spectra=None, spectra_err=None, columns=None):
    """Assemble the training dataset format from an APOGEE-like table and its Gaia cross-match.

    Parameters
    ----------
    table : `~astropy.table.Table`
        APOGEE-like table (allStar names such as APOGEE_ID, TEFF, LOGG, FE_H,
        SNR, K, AK_TARG, STARFLAG, VSCATTER, RA, DEC; case-insensitive; those
        absent are skipped).
    matched : `~astropy.table.Table`
        :func:`crossmatch` or :func:`crossmatch_local` of ``table``.
    spectra, spectra_err : array (N, P), optional
        Continuum-normalised spectra and their errors, row-aligned with ``table``.
    columns : dict, optional
        Overrides of :data:`APOGEE_COLUMNS`: dataset name -> column of ``table``.

    Returns
    -------
    astronn_gaiacal.io.dataset.Dataset
        Columns ``mag`` (2MASS Ks, not extinction corrected: the table's K, or
        the cross-match's ``ks_m`` when the table has none), ``mag_ext``, the
        APOGEE labels, and the Gaia columns (``parallax``, ``parallax_error``,
        ``phot_g_mean_mag``, ``bp_rp``, ``source_id``, ``ruwe``,
        ``visibility_periods_used``, the DR3 zero-point inputs ...).  Gaia's
        ``ra``/``dec`` are ``gaia_ra``/``gaia_dec`` when the table has its own.
        Missing values are -9999 or NaN.
    """
    from ..io.dataset import Dataset, DatasetError

    if len(table) != len(matched):
        raise DatasetError(f"matched has {len(matched)} rows but table has {len(table)}")
    chosen = {}
    for target, candidates in APOGEE_COLUMNS.items():
        names = [columns[target]] if columns and target in columns else candidates
        for name in names:
            found = [c for c in table.colnames if c.lower() == str(name).lower()]
            if found:
                chosen[target] = found[0]
                break
        else:
            if columns and target in columns:
                raise DatasetError(f"column {columns[target]!r} (for {target!r}) not in the table")
    out = Table()
    for target, name in chosen.items():
        col = table[name]
        out[target] = col
        if getattr(col, "unit", None) is None and target in _APOGEE_UNITS:
            out[target].unit = _APOGEE_UNITS[target]
    gaia = matched.copy(copy_data=False)
    if "mag" not in out.colnames:
        if "ks_m" not in gaia.colnames:
            raise DatasetError("mag: the table has no 2MASS K column and the cross-match has no ks_m "
                               "(cross-match with with_2mass=True, or pass columns={'mag': ...})")
        out["mag"] = gaia["ks_m"]
    combined = add_gaia_columns(out, gaia)
    values, units = dataset_columns(combined)
    attrs = {"band": "Ks", "gaia_release": matched.meta.get("gaia_release", "")}
    return Dataset(spectra=spectra, spectra_err=spectra_err, columns=values, units=units, attrs=attrs)


def plot_crossmatch(matched, path, overwrite=False):
    """PNG diagnostic of a cross-match: separation histogram and G of matched vs all.

    Parameters
    ----------
    matched : `~astropy.table.Table`
        Result of :func:`crossmatch` or :func:`crossmatch_local`.
    path : str
        PNG file, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    hit = ~_data_mask(matched["source_id"])[1]
    title = (f"Gaia {matched.meta.get('gaia_release', '')}: {hit.sum()} of {len(matched)} rows matched "
             f"({100.0 * hit.mean() if len(matched) else 0:.1f}%)")
    if "xmatch_sep" in matched.colnames and hit.any():
        sep = _filled(matched["xmatch_sep"], np.nan)[hit]
        radius = matched.meta.get("xmatch_radius_arcsec", float(np.nanmax(sep)))
        axes[0].hist(sep, bins=40, range=(0, radius), color="C0")
        axes[0].set_xlabel("separation [arcsec]")
        axes[0].set_ylabel("matches")
    else:
        axes[0].text(0.5, 0.5, "matched by source_id", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    g = _filled(matched["phot_g_mean_mag"], np.nan)
    good = np.isfinite(g)
    if good.any():
        axes[1].hist(g[good], bins=40, color="C1")
    axes[1].set_xlabel("Gaia G [mag]")
    axes[1].set_ylabel("matched stars")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
