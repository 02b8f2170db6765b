"""Matching logic shared by the archive and the local cross-match: input rows, nearest candidate, aligned result."""
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import MaskedColumn, Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning

from ...constants import PAPER_XMATCH_RADIUS_ARCSEC
from .schema import SEPARATION, check_by, data_mask, filled, float_values

__all__ = ["SERVER_SLACK_DEG", "MatchInput", "prepare_input", "match_radius_deg", "assemble", "match_meta"]

#: Extra search radius (degrees): the server cuts 1 mas wide, the exact cut is made here.
SERVER_SLACK_DEG = 1e-3 / 3600.0


# ---------------------------------------------------------------------------------------------
# Input


def _find_column(table, name, argument):
    if name in table.colnames:
        return name
    folded = [c for c in table.colnames if c.lower() == str(name).lower()]
    if len(folded) == 1:
        return folded[0]
    raise KeyError(f"{argument}: column {name!r} not in the table (columns: {', '.join(table.colnames[:20])})")


def _angle_values(col, name):
    if isinstance(col, u.Quantity) and not col.unit.is_equivalent(u.deg):
        raise u.UnitTypeError(f"column {name!r} must be an angle, got unit {col.unit}")
    return float_values(col, name, u.deg)


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
        values = float_values(epoch if hasattr(epoch, "unit") else np.asarray(epoch, float), name, u.yr)
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
class MatchInput:
    """The input rows of a cross-match, checked: positions (deg) and epochs (Julian years) or source_ids."""

    n: int
    valid: np.ndarray  # rows that take part in the match
    ra: np.ndarray = None
    dec: np.ndarray = None
    epoch: np.ndarray = None
    source_id: np.ndarray = None


def prepare_input(table, by, ra, dec, epoch, source_id):
    """Check and convert the input of :func:`~astronn_gaiacal.sources.xmatch.crossmatch`.

    Parameters
    ----------
    table, by, ra, dec, epoch, source_id
        As in :func:`~astronn_gaiacal.sources.xmatch.crossmatch`.

    Returns
    -------
    MatchInput
        Rows without a position (or a source_id) are not ``valid``; a warning
        counts them.

    Raises
    ------
    KeyError, ValueError, TypeError, astropy.units.UnitTypeError
        Bad input, naming the argument or column.
    """
    by = check_by(by)
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
        return MatchInput(n, valid, ra=np.mod(ra_deg, 360.0), dec=dec_deg, epoch=epochs)
    if epoch is not None:
        raise ValueError("epoch only applies to by='position'")
    name = _find_column(table, source_id, "source_id")
    col = table[name]
    data, mask = data_mask(col)
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
    return MatchInput(n, valid, source_id=ids)


def _parse_id(value):
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip().split()[-1] if text.strip() else ""  # accepts "Gaia DR3 123"
    try:
        return int(text)
    except ValueError:
        return 0


def match_radius_deg(radius):
    """Match radius in degrees (``None``: the paper's 2 arcsec; a float: arcsec).

    Raises
    ------
    astropy.units.UnitTypeError, ValueError
        Not an angle, or not positive and finite.
    """
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


# ---------------------------------------------------------------------------------------------
# Result


def _propagate(ra, dec, pmra, pmdec, dt):
    """Linear proper-motion propagation (the ADQL expression sent to the archive), degrees."""
    pmra = np.where(np.isfinite(pmra), pmra, 0.0)
    pmdec = np.where(np.isfinite(pmdec), pmdec, 0.0)
    return ra + pmra * dt / (3.6e6 * np.cos(np.radians(dec))), dec + pmdec * dt / 3.6e6


def _candidate_separations(inp, cand):
    """Separation (arcsec) of each candidate from its input row, Gaia moved to the input epoch."""
    rows = np.asarray(cand["xm_row"])
    g_ra, g_dec = filled(cand["ra"], np.nan), filled(cand["dec"], np.nan)
    if inp.epoch is not None:
        dt = inp.epoch[rows] - filled(cand["ref_epoch"], np.nan)
        g_ra, g_dec = _propagate(g_ra, g_dec, filled(cand["pmra"], np.nan), filled(cand["pmdec"], np.nan), dt)
    sep = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg").separation(SkyCoord(g_ra, g_dec, unit="deg"))
    return sep.to_value(u.arcsec)


def assemble(inp, cand, spec, by, radius_deg, meta):
    """Pick the nearest candidate within the radius per input row and align with the input.

    Parameters
    ----------
    inp : MatchInput
    cand : `~astropy.table.Table`
        Candidates (:func:`~astronn_gaiacal.sources.xmatch.schema.conform`),
        ``xm_row`` naming their input row; a masked ``source_id`` is no
        candidate.
    spec : dict
        :func:`~astronn_gaiacal.sources.xmatch.schema.column_spec`.
    by : {'position', 'source_id'}
    radius_deg : float
    meta : dict
        ``meta`` of the result (:func:`match_meta`); ``n_matched`` is added.

    Returns
    -------
    `~astropy.table.Table`
        One row per input row, unmatched rows masked.
    """
    n = inp.n
    rows = np.asarray(cand["xm_row"], dtype=np.int64)
    has_match = ~data_mask(cand["source_id"])[1]
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
            data, cmask = data_mask(cand[name])
            values[chosen_rows] = data[chosen]
            mask[chosen_rows] = cmask[chosen]
        if dtype.startswith("f"):
            values[mask] = np.nan
        out[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    if by == "position":
        values = np.full(n, np.nan)
        values[chosen_rows] = sep[chosen]
        out[SEPARATION[0]] = MaskedColumn(values, mask=~matched, unit=SEPARATION[2], description=SEPARATION[3])
    out.meta["n_matched"] = int(matched.sum())
    return out


def match_meta(rel, by, radius_deg, with_2mass, source):
    """``meta`` of a cross-match result: release, table, how and against what it was matched."""
    meta = {"gaia_release": rel.name, "gaia_table": rel.source_table, "xmatch_by": by, "xmatch_source": source,
            "xmatch_2mass": bool(with_2mass)}
    if by == "position":
        meta["xmatch_radius_arcsec"] = radius_deg * 3600.0
    return meta
