"""APOGEE allStar and apStar-header tables to dataset columns, and a look at a cross-match."""
import numpy as np
from astropy.table import Table

from ...constants import COLUMN_UNITS, DEFAULT_BAND, MAGIC_NUMBER
from ...io.figures import new_figure, save_figure
from ...io.dataset import Dataset, DatasetError
from ..apogee_columns import table_columns
from .schema import data_mask, filled

__all__ = ["APOGEE_COLUMNS", "add_gaia_columns", "dataset_columns", "previous_match_columns", "to_dataset",
           "plot_crossmatch"]


def previous_match_columns(table, matched, keep=(), prefix="gaia_"):
    """Columns of ``table`` that an earlier cross-match wrote: the names of ``matched`` (ignoring case) and their
    ``prefix``-ed forms, except the input's own ``keep`` columns (the positions or ids the match reads)."""
    names = {n.lower() for n in matched.colnames}
    keep = {k.lower() for k in keep if k}
    return [c for c in table.colnames if c.lower() not in keep
            and (c.lower() in names or (c.lower().startswith(prefix) and c.lower()[len(prefix):] in names))]


def add_gaia_columns(table, matched, prefix="gaia_", replace=(), release=None):
    """The input table with the cross-match columns appended.

    Cross-match columns whose names the input already uses, ignoring case
    (``ra``, ``dec``, an input ``source_id``), get ``prefix``.  A table that
    was cross-matched before keeps its old Gaia values unless they are
    removed first: pass ``replace=previous_match_columns(...)``; ``release``
    then also becomes the table's ``gaia_release``.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The cross-matched input.
    matched : `~astropy.table.Table`
        Result of :func:`~astronn_gaiacal.sources.xmatch.crossmatch` or
        :func:`~astronn_gaiacal.sources.xmatch.crossmatch_local` for ``table``.
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
    if replace:
        out.remove_columns(list(replace))
    for name in matched.colnames:
        taken = {c.lower() for c in out.colnames}  # FITS and SQL-like formats ignore case
        new = name if name.lower() not in taken else prefix + name
        if new.lower() in taken:
            raise ValueError(f"column {new!r} already exists in the table: use another prefix")
        out[new] = matched[name]
    out.meta.update({k: v for k, v in matched.meta.items()})
    if release is not None:
        out.meta["gaia_release"] = release
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
        data, _ = data_mask(col)
        kind = data.dtype.kind
        if kind == "f":
            values[name] = filled(col, np.nan)
        elif kind in "iu":
            values[name] = filled(col, int(MAGIC_NUMBER)).astype(np.int64)
        elif kind == "b":
            values[name] = filled(col, False)
        else:
            values[name] = filled(col, "" if kind == "U" else b"")
        if getattr(col, "unit", None) is not None:
            units[name] = col.unit.to_string()
    return values, units


#: Dataset-format column -> allStar-like table columns it is read from, in order
#: (:data:`~astronn_gaiacal.sources.apogee_columns.APOGEE_FIELDS`).
APOGEE_COLUMNS = table_columns()


def to_dataset(table, matched, spectra=None, spectra_err=None, columns=None):
    """Assemble the training dataset format from an APOGEE-like table and its Gaia cross-match.

    Parameters
    ----------
    table : `~astropy.table.Table`
        APOGEE-like table (allStar names such as APOGEE_ID, LOCATION_ID, TEFF, LOGG, FE_H,
        SNR, K, AK_TARG, STARFLAG, VSCATTER, RA, DEC; case-insensitive; those
        absent are skipped).
    matched : `~astropy.table.Table`
        :func:`~astronn_gaiacal.sources.xmatch.crossmatch` or
        :func:`~astronn_gaiacal.sources.xmatch.crossmatch_local` of ``table``.
    spectra, spectra_err : array (N, P), optional
        Continuum-normalised spectra and their errors, row-aligned with ``table``.
    columns : dict, optional
        Overrides of :data:`~astronn_gaiacal.sources.xmatch.apogee.APOGEE_COLUMNS`: dataset name -> column of ``table``.

    Returns
    -------
    astronn_gaiacal.io.dataset.Dataset
        Columns ``mag`` (2MASS Ks, not extinction corrected: the table's K, or
        the cross-match's ``ks_m`` when the table has none), ``mag_ext``, the
        APOGEE labels, and the Gaia columns (``parallax``, ``parallax_error``,
        ``phot_g_mean_mag``, ``bp_rp``, ``source_id``, ``ruwe``,
        ``visibility_periods_used``, the DR3 zero-point inputs ...).  The
        dataset's ``ra``/``dec`` are the table's (APOGEE's) position; Gaia's
        are ``gaia_ra``/``gaia_dec`` (the catalogue's ``ra``/``dec``, as in
        the paper's Table 1).  Missing values are -9999 or NaN.
    """
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
        if getattr(col, "unit", None) is None and target in COLUMN_UNITS:
            out[target].unit = COLUMN_UNITS[target]
    gaia = matched.copy(copy_data=False)
    for name in ("ra", "dec"):  # Gaia's position is never taken for APOGEE's, even when the table has none
        if name in gaia.colnames and f"gaia_{name}" not in gaia.colnames:
            gaia.rename_column(name, f"gaia_{name}")
    if "mag" not in out.colnames:
        if "ks_m" not in gaia.colnames:
            raise DatasetError("mag: the table has no 2MASS K column and the cross-match has no ks_m "
                               "(cross-match with with_2mass=True, or pass columns={'mag': ...})")
        out["mag"] = gaia["ks_m"]
    combined = add_gaia_columns(out, gaia)
    values, units = dataset_columns(combined)
    attrs = {"band": DEFAULT_BAND, "gaia_release": matched.meta.get("gaia_release", "")}
    return Dataset(spectra=spectra, spectra_err=spectra_err, columns=values, units=units, attrs=attrs)


def plot_crossmatch(matched, path, overwrite=False):
    """PNG diagnostic of a cross-match: separation histogram and G of matched vs all.

    Parameters
    ----------
    matched : `~astropy.table.Table`
        Result of :func:`~astronn_gaiacal.sources.xmatch.crossmatch` or
        :func:`~astronn_gaiacal.sources.xmatch.crossmatch_local`.
    path : str
        PNG file, written atomically.
    """

    fig = new_figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    hit = ~data_mask(matched["source_id"])[1]
    title = (f"Gaia {matched.meta.get('gaia_release', '')}: {hit.sum()} of {len(matched)} rows matched "
             f"({100.0 * hit.mean() if len(matched) else 0:.1f}%)")
    if "xmatch_sep" in matched.colnames and hit.any():
        sep = filled(matched["xmatch_sep"], np.nan)[hit]
        radius = matched.meta.get("xmatch_radius_arcsec", float(np.nanmax(sep)))
        axes[0].hist(sep, bins=40, range=(0, radius), color="C0")
        axes[0].set_xlabel("separation [arcsec]")
        axes[0].set_ylabel("matches")
    else:
        axes[0].text(0.5, 0.5, "matched by source_id", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    g = filled(matched["phot_g_mean_mag"], np.nan)
    good = np.isfinite(g)
    if good.any():
        axes[1].hist(g[good], bins=40, color="C1")
    axes[1].set_xlabel("Gaia G [mag]")
    axes[1].set_ylabel("matched stars")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, overwrite=overwrite)
    return path
