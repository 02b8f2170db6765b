"""The ESA Gaia archive service: cross-match by TAP upload, through pyvo.

:func:`crossmatch` uploads the table in chunks (an ADQL ``CONTAINS``/``DISTANCE``
join by position, or a join on ``source_id``).  Every chunk's result is checked
to be complete (a sentinel row uploaded last must come back, so ``ROW_LIMIT``,
``MAXREC`` or the synchronous 2000-row cap can never truncate silently);
transient failures are retried with exponential backoff; network operations
time out; a failure raises :class:`GaiaArchiveError` naming the chunk; finished
chunks are cached on disk (atomically, keyed by query and uploaded rows), so a
re-run resumes.

The client is a :class:`pyvo.dal.TAPService` (the TAP client astroquery's
services build on) on a :class:`requests.Session` that gives every request a
connect and a read timeout: nothing process-wide (no default socket timeout,
no stdout redirection) is changed.  Its settings (archive URL, timeouts, chunk
size, retries, cache folder) come from :data:`~astronn_gaiacal.config.conf`, and each
can be overridden per call.  The errors derive from astroquery's
``astroquery.exceptions.RemoteServiceError`` (which astroquery's documentation
does not list, so it is not a link).
"""
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import socket
import time
import urllib.parse

import numpy as np
import requests
from astropy import units as u
from astropy.table import MaskedColumn, Table, vstack
from astroquery.exceptions import RemoteServiceError
from tqdm.auto import tqdm

from ..._versions import __version__
from ...config import conf
from ...io.atomic import atomic_path, cache_folder
from .matching import SERVER_SLACK_DEG, assemble, match_meta, match_radius_deg, prepare_input
from .schema import TMASS_COLUMNS, TMASS_TABLE, column_spec, conform, filled, get_release

__all__ = ["GAIA_ARCHIVE_URL", "TAP_PATH", "CACHE_ENV", "GaiaArchiveError", "GaiaTruncatedResultError", "gaia_archive",
           "crossmatch"]

log = logging.getLogger(__name__)

#: Root of the ESA Gaia archive (astroquery's default; the default of ``conf.gaia_archive_url``).
GAIA_ARCHIVE_URL = "https://gea.esac.esa.int/"

#: Path of the TAP service under the archive root.
TAP_PATH = "tap-server/tap"

#: Environment variable naming the cache folder when ``conf.xmatch_cache_dir`` is empty (older setting).
CACHE_ENV = "ASTRONN_GAIACAL_CACHE_DIR"

_UPLOAD_NAME = "xm_input"
_CACHE_VERSION = "xmatch-cache-1"
_SENTINEL_ROW = 2**62  # uploaded last in every chunk; sorts after every input row


class GaiaArchiveError(RemoteServiceError):
    """The Gaia archive could not be reached, or a query on it failed.

    An ``astroquery.exceptions.RemoteServiceError``, so code that handles
    astroquery's service errors handles this one too.

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


class _TimeoutSession(requests.Session):
    """A requests session giving every request a (connect, read) timeout, unless the call sets its own."""

    def __init__(self, timeout):
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = f"astronn_gaiacal/{__version__} ({self.headers.get('User-Agent', '')})"

    def request(self, method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, **kwargs)


def _timeouts(timeout):
    if timeout is None:
        timeout = (conf.connect_timeout, conf.read_timeout)
    if np.isscalar(timeout):
        timeout = (timeout, timeout)
    connect, read = (float(t) for t in timeout)
    if not (connect > 0 and read > 0):
        raise ValueError(f"timeout must be positive seconds (connect, read), got {timeout}")
    return connect, read


def gaia_archive(url=None, timeout=None, *, session=None):
    """A TAP client of the ESA Gaia archive whose every request times out.

    Parameters
    ----------
    url : str, optional
        Archive root (the TAP service is ``<url>tap-server/tap``); default
        ``conf.gaia_archive_url``.
    timeout : float or (float, float), optional
        Connect and read timeouts in seconds, per request; default
        ``(conf.connect_timeout, conf.read_timeout)``.
    session : requests.Session, optional
        Session to send the requests with (e.g. an authenticated one); its
        requests then time out as the session says.

    Returns
    -------
    pyvo.dal.TAPService

    Examples
    --------
    >>> from astronn_gaiacal.sources.xmatch import gaia_archive
    >>> gaia_archive("https://gea.esac.esa.int/", timeout=(5, 30)).baseurl
    'https://gea.esac.esa.int/tap-server/tap'
    """
    from pyvo.dal import TAPService

    url = conf.gaia_archive_url if url is None else url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be http(s)://host[:port]/, got {url!r}")
    if session is None:
        session = _TimeoutSession(_timeouts(timeout))
    return TAPService(f"{url.rstrip('/')}/{TAP_PATH}", session=session)


def _archive_root(archive):
    base = str(getattr(archive, "baseurl", "") or "")
    return base[:-len(TAP_PATH)] if base.endswith(TAP_PATH) else base


def _adql(rel, by, with_2mass, radius_deg=None, search_deg=None, epoch=False):
    spec = column_spec(rel.name, with_2mass)
    select = ["u.xm_row"]
    for name in spec:
        if name == "ruwe" and rel.ruwe_table:
            select.append("r.ruwe")
        elif name in TMASS_COLUMNS:
            column = TMASS_COLUMNS[name]
            select.append(f"tm.{column}" if column == name else f"tm.{column} AS {name}")
        else:
            select.append(f"g.{name}")
    if by == "source_id":
        on = "g.source_id = u.xm_source_id"
    else:
        r = radius_deg + SERVER_SLACK_DEG
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
        lines.append(f"LEFT OUTER JOIN {TMASS_TABLE} AS tm ON {rel.tmass_join}")
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
        return cache_folder("xmatch", CACHE_ENV)
    return os.fspath(cache)


def _is_unreachable(err):
    return isinstance(err, (socket.gaierror, ConnectionError, TimeoutError, socket.timeout,
                            requests.ConnectionError, requests.Timeout)) or (
        isinstance(err, OSError) and err.errno in (101, 110, 111, 113))


def _describe(err):
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:300]}"


def _run_chunk(archive, query, upload):
    """One asynchronous TAP job: submit with the upload, run, wait, fetch the result, delete the job."""
    from pyvo.dal import DALQueryError

    # The upload is written as BINARY2, not pyvo's default TABLEDATA: astropy's C TABLEDATA
    # writer overruns its buffer by one character when a row is exactly a power of two long.
    votable = io.BytesIO()
    upload.write(votable, format="votable", tabledata_format="binary2")
    votable.seek(0)
    job = archive.submit_job(query, uploads={_UPLOAD_NAME: votable})
    try:
        job.run().wait(timeout=conf.job_timeout)
        try:
            job.raise_if_error()
        except DALQueryError as err:  # the job ended in phase ERROR (or was aborted)
            raise _JobFailed(str(err)) from err
        result = job.fetch_result().to_table()
    finally:
        with contextlib.suppress(Exception):  # the archive removes old jobs anyway
            job.delete()
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
               source_id="source_id", with_2mass=False, chunk_size=None, max_pm=1000 * u.mas / u.yr,
               cache=True, retries=None, backoff=1.0, timeout=None, archive=None, progress=True):
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
        Gaia release; table names and columns follow :data:`~astronn_gaiacal.sources.xmatch.schema.RELEASES`.
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
    chunk_size : int, optional
        Input rows per archive job; default ``conf.chunk_size`` (5000).
    max_pm : `~astropy.units.Quantity` or float
        Largest proper motion (float: mas/yr) searched for when ``epoch`` is
        given; faster stars can be missed.
    cache : bool or path
        Cache finished chunks on disk (True: ``conf.xmatch_cache_dir``, else
        ``$ASTRONN_GAIACAL_CACHE_DIR``, else
        ``<astropy cache>/astronn_gaiacal/xmatch``; a path: that folder;
        False: no cache).  A chunk's cache key is its query and uploaded rows.
    retries : int, optional
        Extra attempts per chunk after a transient failure; default
        ``conf.retries`` (3).
    backoff : float
        Seconds before the first retry; doubled after each retry.
    timeout : float or (float, float), optional
        Connect and read timeouts (seconds) of each request of the default
        archive client; default ``(conf.connect_timeout, conf.read_timeout)``.
        With the defaults an unreachable archive fails in under a minute.
    archive : pyvo.dal.TAPService, optional
        Client to use (e.g. one on an authenticated session); default
        :func:`~astronn_gaiacal.sources.xmatch.archive.gaia_archive` at ``conf.gaia_archive_url``.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    `~astropy.table.Table`
        One row per input row, columns :func:`~astronn_gaiacal.sources.xmatch.schema.gaia_columns`; rows without a
        match are masked (``source_id`` masked).  ``meta`` records the release,
        radius and number matched.

    Raises
    ------
    GaiaArchiveError
        The archive is unreachable, a job failed, or (as
        :class:`~astronn_gaiacal.sources.xmatch.archive.GaiaTruncatedResultError`) a result was truncated; the message
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
    rel = get_release(release)
    radius_deg = match_radius_deg(radius)
    inp = prepare_input(table, by, ra, dec, epoch, source_id)
    chunk_size = int(conf.chunk_size if chunk_size is None else chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    retries = int(conf.retries if retries is None else retries)
    if retries < 0 or not np.isfinite(backoff) or backoff < 0:
        raise ValueError(f"retries and backoff must be >= 0, got {retries}, {backoff}")
    _timeouts(timeout)  # checked before any work
    pm_mas = _max_pm_mas(max_pm)
    spec = column_spec(rel.name, with_2mass)
    folder = _cache_dir(cache)
    meta = match_meta(rel, by, radius_deg, with_2mass, "archive")

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
                search_deg = radius_deg + SERVER_SLACK_DEG + pm_mas * dt_max / 3.6e6
            query = _adql(rel, by, with_2mass, radius_deg, search_deg, epoch=inp.epoch is not None)
            upload = _upload_table(inp, rows, by)
            path = os.path.join(folder, _cache_key(query, upload) + ".ecsv") if folder else None
            if path and os.path.exists(path):
                cached = Table.read(path, format="ascii.ecsv")
                cand = conform(cached, spec, cached["xm_row"], f"cache file {path}")
                log.info("%s: from cache %s", label, path)
            else:
                if archive is None:
                    archive = gaia_archive(timeout=timeout)
                try:
                    cand = _fetch_chunk(archive, query, upload, by, spec, label, retries, backoff)
                except GaiaArchiveError as err:
                    done = assemble(inp, _stack(pieces, spec), spec, by, radius_deg, meta)
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
    return assemble(inp, _stack(pieces, spec), spec, by, radius_deg, meta)


def _stack(pieces, spec):
    if pieces:
        return vstack(pieces, metadata_conflicts="silent")
    empty = Table()
    empty["xm_row"] = np.zeros(0, np.int64)
    for name, (dtype, unit, _) in spec.items():
        empty[name] = MaskedColumn(np.zeros(0, dtype), unit=unit)
    return empty


def _fetch_chunk(archive, query, upload, by, spec, label, retries, backoff):
    attempts = 0
    while True:
        attempts += 1
        try:
            raw = _run_chunk(archive, query, upload)
            if "xm_row" not in raw.colnames:
                raise GaiaArchiveError(f"{label}: the archive's answer has no xm_row column "
                                       f"(columns: {', '.join(raw.colnames[:10])})")
            raw_rows = filled(raw["xm_row"], -1).astype(np.int64)
            _check_complete(raw_rows, upload, by, label)
            keep = raw_rows != upload["xm_row"][-1]
            return conform(raw[keep], spec, raw_rows[keep], f"the archive's answer for {label}")
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
            root = _root_cause(err)
            status = getattr(err, "code", None)
            refused = isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)
            if attempts > retries or refused or _is_job_timeout(err):
                url = _archive_root(archive)
                what = "cannot reach the Gaia archive" if _is_unreachable(root) else "Gaia archive query failed"
                what += f" ({url})" if url else ""
                raise GaiaArchiveError(f"{what}: {_describe(root)} [{label}, {attempts} attempts]",
                                       attempts=attempts, cause=root) from None
            wait = backoff * 2 ** (attempts - 1)
            log.warning("%s: attempt %d failed (%s); retrying in %.1f s", label, attempts, _describe(err), wait)
            _sleep(wait)


_sleep = time.sleep


def _transient_errors():
    """Network, HTTP and truncated-download errors: worth another attempt (a 4xx answer is not retried)."""
    import xml.parsers.expat

    from astropy.io.votable.exceptions import VOTableSpecError
    from pyvo.dal import DALFormatError, DALServiceError

    return (OSError, EOFError, http.client.HTTPException, requests.RequestException, DALServiceError,
            DALFormatError, xml.parsers.expat.ExpatError, VOTableSpecError)


def _is_job_timeout(err):
    return type(err).__name__ == "DALJobTimeoutError"  # the job ran longer than conf.job_timeout


def _root_cause(err):
    """The innermost error of a chain (pyvo's ``cause``, requests/urllib3 wrapping), preferring a builtin one."""
    seen, best, todo = set(), (-1, err), [(0, err)]
    while todo:
        depth, e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if type(e).__module__ == "builtins" and isinstance(e, OSError) and depth > best[0]:
            best = (depth, e)
        todo += [(depth + 1, inner) for inner in (getattr(e, "cause", None), getattr(e, "reason", None),
                                                   e.__cause__, e.__context__,
                                                   *(a for a in e.args if isinstance(a, BaseException)))]
    return best[1]
