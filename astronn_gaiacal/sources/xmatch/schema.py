"""The Gaia column schema of a cross-match (names, dtypes, units, descriptions per release) and its checks.

Examples
--------
>>> from astronn_gaiacal.sources.xmatch.schema import column_spec, get_release
>>> get_release("DR2").source_table
'gaiadr2.gaia_source'
>>> column_spec("dr3")["parallax"]
('f8', 'mas', 'Gaia parallax (catalogue value, no zero-point correction)')
"""
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table

from ...constants import COLUMN_UNITS, DR3_OFFSET_FEATURES, GAIA_REF_EPOCH, MAGIC_NUMBER
from ...io.columns import MissingColumnError

__all__ = ["Release", "RELEASES", "TMASS_TABLE", "TMASS_COLUMNS", "SEPARATION", "get_release", "check_by",
           "column_spec", "gaia_columns", "data_mask", "filled", "float_values", "conform"]


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

#: Archive table of the 2MASS photometry joined through the best-neighbour tables.
TMASS_TABLE = "gaiadr1.tmass_original_valid"

def _unit(name):
    return COLUMN_UNITS.get(name)


# name: (dtype, description)
_ASTROMETRY = {
    "source_id": ("i8", "Gaia source identifier"),
    "ra": ("f8", "Gaia right ascension at ref_epoch"),
    "dec": ("f8", "Gaia declination at ref_epoch"),
    "ref_epoch": ("f8", "Gaia reference epoch (Julian year)"),
    "parallax": ("f8", "Gaia parallax (catalogue value, no zero-point correction)"),
    "parallax_error": ("f8", "Gaia parallax standard error"),
    "pmra": ("f8", "proper motion in RA * cos(dec)"),
    "pmra_error": ("f8", "standard error of pmra"),
    "pmdec": ("f8", "proper motion in Dec"),
    "pmdec_error": ("f8", "standard error of pmdec"),
    "phot_g_mean_mag": ("f8", "Gaia G magnitude"),
    "bp_rp": ("f8", "Gaia BP - RP colour"),
    "visibility_periods_used": ("i4", "number of visibility periods used in the astrometry"),
}
_RUWE = {"ruwe": ("f8", "renormalised unit weight error")}
_ZEROPOINT = {name: ("i4" if name == "astrometric_params_solved" else "f8",
                     "parallax zero-point input (Lindegren+2021)") for name in DR3_OFFSET_FEATURES}
# name: (dtype, description, column of TMASS_TABLE)
_TMASS = {
    "tmass_designation": ("U17", "2MASS designation of the Gaia best neighbour", "designation"),
    "ks_m": ("f8", "2MASS Ks magnitude (not extinction corrected)", "ks_m"),
    "ks_msigcom": ("f8", "2MASS Ks total uncertainty", "ks_msigcom"),
    "ph_qual": ("U3", "2MASS photometric quality flags (J, H, Ks)", "ph_qual"),
}

#: Cross-match 2MASS column -> its name in :data:`TMASS_TABLE`.
TMASS_COLUMNS = {name: column for name, (_, _, column) in _TMASS.items()}

#: Separation column of a positional match: (name, dtype, unit, description).
SEPARATION = ("xmatch_sep", "f8", _unit("xmatch_sep"),
              "angular separation input - Gaia (Gaia propagated to the input epoch)")


def get_release(release):
    """The :class:`Release` named ``release`` (case-insensitive).

    Raises
    ------
    ValueError
        Not one of :data:`RELEASES`.
    """
    key = str(release).lower()
    if key not in RELEASES:
        raise ValueError(f"release must be one of {sorted(RELEASES)}, got {release!r}")
    return RELEASES[key]


def check_by(by):
    """``by`` if it is ``'position'`` or ``'source_id'``; ValueError otherwise."""
    if by not in ("position", "source_id"):
        raise ValueError(f"by must be 'position' or 'source_id', got {by!r}")
    return by


def column_spec(release, with_2mass=False):
    """Gaia columns of a cross-match (without ``xmatch_sep``), in order.

    Returns
    -------
    dict of str to (str, str or None, str)
        Column name -> (numpy dtype, unit, description).
    """
    rel = get_release(release)
    parts = [_ASTROMETRY, _RUWE] + ([_ZEROPOINT] if rel.zeropoint_inputs else []) + ([_TMASS] if with_2mass else [])
    return {name: (value[0], _unit(name), value[1]) for part in parts for name, value in part.items()}


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
    names = list(column_spec(release, with_2mass))
    if check_by(by) == "position":
        names.append(SEPARATION[0])
    return names


# ---------------------------------------------------------------------------------------------
# Column values


def data_mask(col):
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


def filled(col, fill):
    """Plain array of ``col`` with ``fill`` where it is masked (dtype widened to hold ``fill``)."""
    data, mask = data_mask(col)
    if not mask.any():
        return data
    out = data.astype(np.result_type(data.dtype, np.asarray(fill).dtype))
    out[mask] = fill
    return out


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


def float_values(col, name, unit=None):
    """Column as a float array (in ``unit`` when given) with NaN where masked, NaN or -9999.

    Raises
    ------
    TypeError
        The column is not numeric.
    astropy.units.UnitTypeError
        Its unit does not convert to ``unit``.
    """
    if isinstance(col, u.Quantity):
        mask = np.asarray(getattr(col, "mask", False))
        col = getattr(col, "unmasked", col)
        data = col.value * _unit_factor(col.unit, unit, name)
    else:
        raw, mask = data_mask(col)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"column {name!r} must be numeric, got dtype {raw.dtype}")
        data = raw.astype(float) * _unit_factor(getattr(col, "unit", None), unit, name)
    data = np.array(data, dtype=float, ndmin=1)
    data[np.broadcast_to(mask, data.shape) | (data == MAGIC_NUMBER)] = np.nan
    return data


def conform(raw, spec, rows, origin):
    """Candidate table checked against the schema: ``xm_row`` + ``spec`` columns with its dtypes, units and masks.

    Parameters
    ----------
    raw : `~astropy.table.Table`
        Gaia rows (an archive answer, a cache file or a local extract).
    spec : dict
        :func:`column_spec` of the cross-match.
    rows : array of int
        Input row of each Gaia row.
    origin : str
        Where ``raw`` comes from, for error messages.

    Raises
    ------
    MissingColumnError
        ``raw`` lacks columns of ``spec`` (a ``KeyError``).
    """
    missing = [name for name in spec if name not in raw.colnames]
    if missing:
        raise MissingColumnError(f"{origin} lacks column(s) {', '.join(missing)}")
    out = Table()
    out["xm_row"] = np.asarray(rows, dtype=np.int64)
    for name, (dtype, unit, description) in spec.items():
        col = raw[name]
        if dtype[0] in "fi":
            data, mask = data_mask(col)
            if dtype[0] == "i" and data.dtype.kind in "iu":
                mask = mask | (data == MAGIC_NUMBER)
                values = np.where(mask, 0, data).astype(dtype)
            else:
                values = float_values(col, f"{name}' of '{origin}", unit)
                mask = np.isnan(values)
                if dtype[0] == "i":
                    values = np.where(mask, 0, values).astype(dtype)
        else:
            data, mask = data_mask(col)
            values = np.array(["" if m else (v.decode() if isinstance(v, bytes) else str(v)).strip()
                               for v, m in zip(data, mask)], dtype=dtype)
            mask = mask | (values == "")
        out[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    return out
