"""Cross-match with a local Gaia extract: SkyCoord matching, with epoch propagation."""
import os
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ...io.tables import read_table
from .matching import SERVER_SLACK_DEG, assemble, match_meta, match_radius_deg, prepare_input
from .schema import column_spec, conform, filled, get_release

__all__ = ["crossmatch_local"]


def crossmatch_local(table, gaia, release="dr3", *, by="position", radius=None, ra="ra", dec="dec", epoch=None,
                     source_id="source_id", with_2mass=False):
    """Cross-match with a local Gaia table; same output as :func:`~astronn_gaiacal.sources.xmatch.crossmatch`.

    By position without an epoch this is
    :meth:`~astropy.coordinates.SkyCoord.match_to_catalog_sky` with a radius
    cut; with an epoch, every Gaia source that could be within the radius
    (given the table's largest proper motion) is moved to the input epoch
    first.  By id it is an exact join on ``source_id``.

    Parameters
    ----------
    table : `~astropy.table.Table`, `~astropy.coordinates.SkyCoord` or array of int
        Input rows (as for :func:`~astronn_gaiacal.sources.xmatch.crossmatch`).
    gaia : `~astropy.table.Table` or path
        Gaia extract (FITS, HDF5, Parquet, ECSV, CSV, VOTable) with the columns
        :func:`~astronn_gaiacal.sources.xmatch.gaia_columns` lists for ``release``
        (``ref_epoch`` may be absent: the release's epoch is used).
    release, by, radius, ra, dec, epoch, source_id, with_2mass
        As in :func:`~astronn_gaiacal.sources.xmatch.crossmatch`.

    Returns
    -------
    `~astropy.table.Table`
        Aligned with ``table``; unmatched rows masked.
    """
    rel = get_release(release)
    radius_deg = match_radius_deg(radius)
    inp = prepare_input(table, by, ra, dec, epoch, source_id)
    spec = column_spec(rel.name, with_2mass)
    source = os.fspath(gaia) if isinstance(gaia, (str, os.PathLike)) else "table"
    if isinstance(gaia, (str, os.PathLike)):
        gaia = read_table(gaia)
    if not isinstance(gaia, Table):
        raise TypeError(f"gaia must be an astropy Table or a path, got {type(gaia).__name__}")
    if "ref_epoch" not in gaia.colnames:
        gaia = gaia.copy(copy_data=False)
        gaia["ref_epoch"] = np.full(len(gaia), rel.ref_epoch)
    if rel.ruwe_table and "ruwe" in spec and "ruwe" not in gaia.colnames:
        # DR2's gaia_source has no ruwe (the archive keeps it in gaiadr2.ruwe): an extract of it is complete
        warnings.warn(f"the local Gaia table ({source}) has no ruwe column ({rel.name} keeps it in {rel.ruwe_table}): "
                      "ruwe is left missing (NaN) for every star", stacklevel=2)
        gaia = gaia.copy(copy_data=False)
        gaia["ruwe"] = np.full(len(gaia), np.nan)
    origin = f"the local Gaia table ({source}) for release {rel.name}"
    cat = conform(gaia, spec, np.arange(len(gaia)), origin)
    ids = filled(cat["source_id"], 0)
    rows = np.flatnonzero(inp.valid)
    if by == "source_id":
        order = np.argsort(ids, kind="stable")
        if np.any(np.diff(ids[order]) == 0):
            raise ValueError(f"{origin}: source_id is not unique")
        pos = np.clip(np.searchsorted(ids, inp.source_id[rows], sorter=order), 0, max(len(ids) - 1, 0))
        hit = (ids[order[pos]] == inp.source_id[rows]) if len(ids) else np.zeros(len(rows), bool)
        pairs_in, pairs_cat = rows[hit], order[pos[hit]]
    else:
        g_ra, g_dec = filled(cat["ra"], np.nan), filled(cat["dec"], np.nan)
        good = np.flatnonzero(np.isfinite(g_ra) & np.isfinite(g_dec))
        if len(good) == 0 or len(rows) == 0:
            pairs_in, pairs_cat = np.zeros(0, int), np.zeros(0, int)
        elif inp.epoch is None:
            here = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg")
            nearest, sep, _ = here.match_to_catalog_sky(SkyCoord(g_ra[good], g_dec[good], unit="deg"))
            hit = sep.to_value(u.deg) <= radius_deg
            pairs_in, pairs_cat = rows[hit], good[nearest[hit]]
        else:
            pm = np.hypot(filled(cat["pmra"], 0.0), filled(cat["pmdec"], 0.0))[good]
            ref = filled(cat["ref_epoch"], np.nan)[good]
            dt = np.max(np.abs(inp.epoch[rows][:, None] - np.array([np.nanmin(ref), np.nanmax(ref)])))
            search = radius_deg + np.nanmax(pm) * dt / 3.6e6 + SERVER_SLACK_DEG
            here = SkyCoord(inp.ra[rows], inp.dec[rows], unit="deg")
            i_in, i_cat, _, _ = here.search_around_sky(SkyCoord(g_ra[good], g_dec[good], unit="deg"),
                                                       search * u.deg)
            pairs_in, pairs_cat = rows[i_in], good[i_cat]
    cand = cat[pairs_cat]
    cand["xm_row"] = pairs_in.astype(np.int64)
    return assemble(inp, cand, spec, by, radius_deg, match_meta(rel, by, radius_deg, with_2mass, source))
