r"""The distance catalogue: the data model of Leung & Bovy (2019, Table 1) as a FITS writer.

:func:`build_catalogue` turns the model's outputs (fakemag and its total and
model uncertainties) and the extinction-corrected :math:`K_s` into NN
parallaxes and distances, and combines the NN parallax with the Gaia parallax
corrected by the model's zero-point:

.. math::

    \varpi_{\rm c} = \varpi_{\rm Gaia} - \varpi_0, \qquad
    \sigma_{\rm c}^2 = \sigma_{\rm Gaia}^2 + \sigma_{\varpi_0}^2,

    \varpi_{\rm w} = \frac{\varpi_{\rm NN}/\sigma_{\rm NN}^2 + \varpi_{\rm c}/\sigma_{\rm c}^2}
                          {1/\sigma_{\rm NN}^2 + 1/\sigma_{\rm c}^2}, \qquad
    \sigma_{\rm w} = \left(1/\sigma_{\rm NN}^2 + 1/\sigma_{\rm c}^2\right)^{-1/2},

with the NN parallax's *total* uncertainty, calibrated against held-out Gaia
parallaxes (docs/calibration.rst).  The paper weighted by the model (MC-dropout)
uncertainty alone; once the errors are calibrated that part is smaller than the
NN parallax's actual error, and the weighted error would be too small.  (The
zero-point sign convention is :math:`\varpi_{\rm Gaia} = \varpi_{\rm true} + \varpi_0`.)  When
one source is missing the other is used alone; when both are missing the
weighted columns are -9999.  ``weighted_dist`` is :math:`1000/\varpi_{\rm w}`
pc (-9999 where :math:`\varpi_{\rm w} \le 0`).  Every missing value is -9999,
as in the paper.  (The published code's fallback tested ``x == np.nan``,
which is never true; here missing means -9999 or NaN, tested properly.)

Examples
--------
>>> import astropy.units as u
>>> from astronn_gaiacal.io.catalogue import build_catalogue
>>> cat = build_catalogue(fakemag=[500.0, 500.0], fakemag_error=[25.0, 25.0], fakemag_model_error=[10.0, 10.0],
...                       mag=[10.0, 10.0], parallax=[5.2, -9999.0] * u.mas, parallax_error=[0.1, 0.1] * u.mas,
...                       zeropoint=-0.05 * u.mas)
>>> cat["nn_parallax"]
<Quantity [5., 5.] mas>
>>> cat["weighted_dist"].round(2)       # star 0: NN and Gaia; star 1: NN only
<Quantity [191.74, 200.  ] pc>
"""
import numpy as np
from astropy import units as u
from astropy.table import Column, QTable, Table

from .._versions import __version__
from ..constants import MAGIC_NUMBER, is_missing
from ..conversions import fakemag_to_distance, fakemag_to_parallax, mas_values, per_star, plain_values
from .atomic import atomic_path
from .dataset import read_dataset
from .figures import new_figure, save_figure
from .quality import parallax_flags

__all__ = ["CATALOGUE_COLUMNS", "DATASET_POSITIONS", "GAIA_PASSTHROUGH_COLUMNS", "LABEL_PASSTHROUGH_COLUMNS",
           "weighted_parallax", "build_catalogue", "catalogue_from_dataset", "write_catalogue", "plot_catalogue"]

#: The catalogue's own columns, in order: the names of the paper's Table 1 (APOGEE's identifiers and
#: position, the NN and weighted columns, then Gaia's position ``ra``/``dec``); its other Gaia columns follow
#: when given (:data:`GAIA_PASSTHROUGH_COLUMNS`).
CATALOGUE_COLUMNS = (
    "apogee_id", "location_id", "ra_apogee", "dec_apogee",
    "fakemag", "fakemag_error",
    "nn_parallax", "nn_parallax_model_error", "nn_parallax_error",
    "dist", "dist_model_error", "dist_error",
    "weighted_parallax", "weighted_parallax_error",
    "weighted_dist", "weighted_dist_error",
    "ra", "dec",
)

#: Dataset column -> catalogue column of the positions: the dataset's ``ra``/``dec`` are APOGEE's (allStar or
#: apStar header), its ``gaia_ra``/``gaia_dec`` Gaia's (:func:`~astronn_gaiacal.sources.xmatch.to_dataset`).
DATASET_POSITIONS = {"ra": "ra_apogee", "dec": "dec_apogee", "gaia_ra": "ra", "gaia_dec": "dec"}

#: Dataset columns that :func:`catalogue_from_dataset` copies into the catalogue when present.
GAIA_PASSTHROUGH_COLUMNS = ("source_id", "parallax", "parallax_error", "pmra", "pmra_error", "pmdec",
                            "pmdec_error", "phot_g_mean_mag", "bp_rp", "visibility_periods_used", "ruwe")

#: Stellar labels and S/N that the ``predict`` command (and :func:`astronn_gaiacal.pipeline.catalogue_for`)
#: also copies when present.
LABEL_PASSTHROUGH_COLUMNS = ("teff", "logg", "fe_h", "snr")


def _valid(*arrays):
    ok = np.ones(arrays[0].shape, dtype=bool)
    for a in arrays:
        ok &= ~is_missing(a) & np.isfinite(a)
    return ok


def weighted_parallax(nn_parallax, nn_parallax_error, gaia_parallax, gaia_parallax_error):
    """Inverse-variance combination of two parallaxes, falling back on whichever is available.

    Parameters
    ----------
    nn_parallax, nn_parallax_error : array_like or Quantity
        NN parallax and the uncertainty to weight it with (the catalogue uses the calibrated total).
    gaia_parallax, gaia_parallax_error : array_like or Quantity
        Zero-point-corrected Gaia parallax and its uncertainty.

    Returns
    -------
    parallax, parallax_error : Quantity [mas]
        -9999 mas where neither source is valid.  A source is valid where its
        value and uncertainty are not missing (-9999/NaN) and the uncertainty is > 0.

    Examples
    --------
    >>> p, e = weighted_parallax([1.0, 1.0, -9999.0, -9999.0], [0.1, 0.1, 0.1, 0.1],
    ...                          [2.0, -9999.0, 2.0, np.nan], [0.1, 0.1, 0.2, 0.1])
    >>> p.to_value("mas").tolist()
    [1.5, 1.0, 2.0, -9999.0]
    """
    nn = mas_values(nn_parallax, "nn_parallax")
    n = nn.shape[0]
    nn_err = mas_values(nn_parallax_error, "nn_parallax_error", n)
    g = mas_values(gaia_parallax, "gaia_parallax", n)
    g_err = mas_values(gaia_parallax_error, "gaia_parallax_error", n)
    nn_ok = _valid(nn, nn_err) & (nn_err > 0)
    g_ok = _valid(g, g_err) & (g_err > 0)
    with np.errstate(all="ignore"):
        w_nn = np.where(nn_ok, 1.0 / nn_err**2, 0.0)
        w_g = np.where(g_ok, 1.0 / g_err**2, 0.0)
        wsum = w_nn + w_g
        plx = (np.where(nn_ok, nn, 0.0) * w_nn + np.where(g_ok, g, 0.0) * w_g) / wsum
        err = 1.0 / np.sqrt(wsum)
    none = ~(nn_ok | g_ok)
    plx[none] = MAGIC_NUMBER
    err[none] = MAGIC_NUMBER
    return plx * u.mas, err * u.mas


def _ids(values, n, name):
    if values is None:
        return np.full(n, "", dtype="U1")
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    arr = arr.astype(str)
    return per_star(arr, name, n, False)


def _deg(values, n, name):
    if values is None:
        return np.full(n, MAGIC_NUMBER) * u.deg
    if isinstance(values, u.Quantity):
        try:
            out = values.to(u.deg)
        except u.UnitConversionError:
            raise u.UnitTypeError(f"{name} must be an angle; got unit '{values.unit}'") from None
        return per_star(_magic(out.value), name, n, False) * u.deg
    return per_star(_magic(plain_values(values, name)), name, n, False) * u.deg


def _int_ids(values, n, name):
    """Integer identifiers (APOGEE's ``location_id``): -9999 where not given or missing."""
    if values is None:
        return np.full(n, int(MAGIC_NUMBER), dtype=np.int32)
    arr = np.ma.filled(np.ma.asarray(values), int(MAGIC_NUMBER))
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | is_missing(arr)
        if np.any(arr[~bad] != np.round(arr[~bad])):
            raise ValueError(f"{name} must hold whole numbers")
        arr = np.where(bad, MAGIC_NUMBER, arr)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}")
    return per_star(arr.astype(np.int32), name, n, False)


def _magic(arr):
    arr = np.array(arr, dtype=float)
    arr[is_missing(arr) | ~np.isfinite(arr)] = MAGIC_NUMBER
    return arr


def build_catalogue(fakemag, fakemag_error, fakemag_model_error, mag, *, parallax=None, parallax_error=None,
                    zeropoint=None, zeropoint_error=None, apogee_id=None, location_id=None, ra_apogee=None,
                    dec_apogee=None, ra=None, dec=None, gaia_columns=None):
    r"""Build the Table-1 catalogue from model outputs.

    Parameters
    ----------
    fakemag, fakemag_error, fakemag_model_error : array_like, shape (N,)
        The model's fakemag and its total and model (epistemic) uncertainties.
    mag : array_like or Quantity, shape (N,)
        Extinction-corrected :math:`K_s` (e.g. :meth:`~astronn_gaiacal.io.dataset.Dataset.corrected_mag`).
    parallax, parallax_error : array_like or Quantity, optional
        Gaia parallax and uncertainty as published (uncorrected; mas if plain
        numbers).  Copied into the catalogue and used, corrected by the
        zero-point, for ``weighted_parallax``/``weighted_dist``, except where
        unusable (:func:`~astronn_gaiacal.io.quality.parallax_flags`: an error
        that is not positive, or an impossible value), where they use the NN alone.
    zeropoint, zeropoint_error : scalar or (N,) array_like or Quantity, optional
        The model's parallax zero-point :math:`\varpi_0` and its uncertainty
        (mas if plain numbers); the corrected parallax is ``parallax - zeropoint``.
        A scalar goes in the header (``ZEROPT``, ``ZEROPTER``); per-star values
        become columns ``zeropoint`` and ``zeropoint_error``.  None (a model
        without an offset): no correction, nothing recorded; a missing error is 0.
    apogee_id, location_id : array_like, optional
        APOGEE's star identifier and (DR14 and earlier) field location id
        ('' and -9999 where not given).
    ra_apogee, dec_apogee : array_like or Quantity, optional
        APOGEE's (J2000) position of the star (deg if plain numbers; -9999
        where not given).
    ra, dec : array_like or Quantity, optional
        Gaia's position of the matched source (at Gaia's reference epoch), under
        the paper's names for it (-9999 where not given).  Catalogues written
        before the paper's names were adopted hold APOGEE's position under
        ``ra``/``dec`` and have no ``ra_apogee``: a catalogue's ``ra`` is
        Gaia's exactly when it has a ``ra_apogee`` column.
    gaia_columns : mapping or astropy Table, optional
        More Gaia columns (``source_id``, ``pmra``, ``phot_g_mean_mag``, ...)
        copied as they are, after the catalogue's own columns.

    Returns
    -------
    astropy.table.QTable
        Columns :data:`CATALOGUE_COLUMNS`, then ``parallax``, ``parallax_error``
        (if given), the zero-point columns (if per-star) and ``gaia_columns``.
        NN columns are -9999 where fakemag is missing or not positive, or
        ``mag`` is missing; the weighted columns follow :func:`weighted_parallax`.

    Raises
    ------
    ValueError
        Lengths that differ, a ``gaia_columns`` name that clashes with a
        catalogue column, or a ``location_id`` that is not a whole number.
    TypeError
        A ``location_id`` that holds neither integers nor floats.
    astropy.units.UnitTypeError
        A Quantity in the wrong unit.
    """
    fm = per_star(plain_values(fakemag, "fakemag"), "fakemag", None, False)
    n = fm.shape[0]
    fm_err = per_star(plain_values(fakemag_error, "fakemag_error"), "fakemag_error", n, False)
    fm_merr = per_star(plain_values(fakemag_model_error, "fakemag_model_error"), "fakemag_model_error", n, False)
    m = per_star(plain_values(mag, "mag"), "mag", n, False)

    # NN quantities: defined where fakemag > 0 and mag are valid; each error also needs its own input
    nn_ok = _valid(fm, m) & (fm > 0)
    safe_fm = np.where(nn_ok, fm, 1.0)
    safe_m = np.where(nn_ok, m, 0.0)
    cols = {}
    for suffix, err in (("error", fm_err), ("model_error", fm_merr)):
        ok = nn_ok & _valid(err)
        plx, plx_err = fakemag_to_parallax(safe_fm, safe_m, np.where(ok, err, 0.0))
        dist, dist_err = fakemag_to_distance(safe_fm, safe_m, np.where(ok, err, 0.0))
        cols["nn_parallax"] = np.where(nn_ok, plx.to_value(u.mas), MAGIC_NUMBER)
        cols["dist"] = np.where(nn_ok, dist.to_value(u.pc), MAGIC_NUMBER)
        cols[f"nn_parallax_{suffix}"] = np.where(ok, plx_err.to_value(u.mas), MAGIC_NUMBER)
        cols[f"dist_{suffix}"] = np.where(ok, dist_err.to_value(u.pc), MAGIC_NUMBER)

    # the model's zero-point is recorded whether or not Gaia parallaxes are given
    if zeropoint is None and zeropoint_error is not None:
        raise ValueError("zeropoint_error given without zeropoint")
    zp = mas_values(0.0 if zeropoint is None else zeropoint, "zeropoint", n, scalar_ok=True)
    zp_err = mas_values(0.0 if zeropoint_error is None else zeropoint_error, "zeropoint_error", n, scalar_ok=True)
    meta = {}
    zp_columns = {}
    if zeropoint is None:
        pass
    elif np.ndim(getattr(zeropoint, "value", zeropoint)) == 0 and np.ndim(
            getattr(zeropoint_error, "value", zeropoint_error)) == 0:
        meta["ZEROPT"] = (float(zp[0]), "[mas] corrected parallax = parallax - ZEROPT")
        meta["ZEROPTER"] = (float(zp_err[0]), "[mas] uncertainty of ZEROPT")
    else:
        zp_columns = {"zeropoint": _magic(zp) * u.mas, "zeropoint_error": _magic(zp_err) * u.mas}
    if parallax is None:
        if parallax_error is not None:
            raise ValueError("parallax_error given without parallax")
        g = g_err = None
        gaia_c = np.full(n, MAGIC_NUMBER)
        gaia_c_err = np.full(n, MAGIC_NUMBER)
    else:
        if parallax_error is None:
            raise ValueError("parallax given without parallax_error; the weighting needs both")
        g = mas_values(parallax, "parallax", n)
        g_err = mas_values(parallax_error, "parallax_error", n)
        ok = _valid(g, g_err, zp, zp_err) & ~parallax_flags(g, g_err)  # flag_parallax rows: NN only
        with np.errstate(all="ignore"):
            gaia_c = np.where(ok, g - zp, MAGIC_NUMBER)
            gaia_c_err = np.where(ok, np.sqrt(g_err**2 + zp_err**2), MAGIC_NUMBER)

    w_plx, w_err = weighted_parallax(cols["nn_parallax"], cols["nn_parallax_error"], gaia_c, gaia_c_err)
    w_plx, w_err = w_plx.to_value(u.mas), w_err.to_value(u.mas)
    pos = w_plx > 0  # -9999 is negative
    with np.errstate(all="ignore"):
        w_dist = np.where(pos, 1000.0 / w_plx, MAGIC_NUMBER)
        w_dist_err = np.where(pos, w_dist * w_err / w_plx, MAGIC_NUMBER)

    table = QTable()
    table["apogee_id"] = _ids(apogee_id, n, "apogee_id")
    table["location_id"] = _int_ids(location_id, n, "location_id")
    table["ra_apogee"] = _deg(ra_apogee, n, "ra_apogee")
    table["dec_apogee"] = _deg(dec_apogee, n, "dec_apogee")
    table["fakemag"] = _magic(fm)
    table["fakemag_error"] = _magic(fm_err)
    for name in ("nn_parallax", "nn_parallax_model_error", "nn_parallax_error"):
        table[name] = cols[name] * u.mas
    for name in ("dist", "dist_model_error", "dist_error"):
        table[name] = cols[name] * u.pc
    table["weighted_parallax"] = w_plx * u.mas
    table["weighted_parallax_error"] = w_err * u.mas
    table["weighted_dist"] = w_dist * u.pc
    table["weighted_dist_error"] = w_dist_err * u.pc
    table["ra"] = _deg(ra, n, "ra")
    table["dec"] = _deg(dec, n, "dec")
    if g is not None:
        table["parallax"] = _magic(g) * u.mas
        table["parallax_error"] = _magic(g_err) * u.mas
    for name, values in zp_columns.items():
        table[name] = values
    if gaia_columns is not None:
        names = gaia_columns.colnames if hasattr(gaia_columns, "colnames") else list(gaia_columns)
        for name in names:
            if name in table.colnames:
                raise ValueError(f"gaia_columns has '{name}', which is already a catalogue column; rename it "
                                 f"(e.g. 'gaia_{name}')")
            values = gaia_columns[name]
            if len(values) != n:
                raise ValueError(f"gaia column '{name}' has {len(values)} values; expected {n}")
            table[name] = values
    table.meta.update(meta)
    return table


def catalogue_from_dataset(dataset, fakemag, fakemag_error, fakemag_model_error, zeropoint=None,
                           zeropoint_error=None, gaia_columns=GAIA_PASSTHROUGH_COLUMNS):
    """Build the catalogue of a :class:`~astronn_gaiacal.io.dataset.Dataset` and the model's outputs for it.

    Takes ``apogee_id``, ``location_id``, the positions (APOGEE's ``ra``/``dec``
    become ``ra_apogee``/``dec_apogee``, Gaia's ``gaia_ra``/``gaia_dec`` become
    ``ra``/``dec``: :data:`DATASET_POSITIONS`), the extinction-corrected ``mag``
    and (if present) ``parallax``/``parallax_error`` from the dataset, and
    copies the other ``gaia_columns`` it has.  See :func:`build_catalogue`.
    """
    dataset = read_dataset(dataset, require=("mag",))

    def column(name):
        if name not in dataset:
            return None
        return dataset.quantity(name) if dataset.unit(name) is not None else dataset[name]

    has_plx = "parallax" in dataset and "parallax_error" in dataset
    own = set(CATALOGUE_COLUMNS) | set(DATASET_POSITIONS) | {"parallax", "parallax_error"}
    extra = {name: column(name) for name in gaia_columns if name in dataset and name not in own}
    return build_catalogue(
        fakemag, fakemag_error, fakemag_model_error, dataset.corrected_mag(),
        parallax=column("parallax") if has_plx else None,
        parallax_error=column("parallax_error") if has_plx else None,
        zeropoint=zeropoint, zeropoint_error=zeropoint_error,
        apogee_id=column("apogee_id"), location_id=column("location_id"),
        **{target: column(name) for name, target in DATASET_POSITIONS.items()},
        gaia_columns=extra or None,
    )


def write_catalogue(table, path, overwrite=False):
    """Write the catalogue as FITS, atomically, with units in the header and -9999 for missing values.

    Float NaN and masked entries become -9999 (integers: -9999; strings: '').

    Raises
    ------
    KeyError
        If a column of :data:`CATALOGUE_COLUMNS` is absent.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    missing = [c for c in CATALOGUE_COLUMNS if c not in table.colnames]
    if missing:
        raise KeyError(f"the catalogue lacks column(s) {missing}; build it with build_catalogue")
    out = Table()  # plain columns with units: TUNITn only, no serialised-Quantity comments
    for name in table.colnames:
        col = table[name]
        unit = getattr(col, "unit", None)
        values = col.value if isinstance(col, u.Quantity) else np.asarray(col)
        mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(len(col), bool)
        values = np.ma.getdata(values)
        if values.dtype.kind == "f":
            values = np.where(mask | ~np.isfinite(values), MAGIC_NUMBER, values)
        elif values.dtype.kind in "iu" and mask.any():
            values = np.where(mask, int(MAGIC_NUMBER), values.astype(np.int64))
        elif values.dtype.kind in "US" and mask.any():
            values = np.where(mask, "", values)
        out[name] = Column(values, unit=unit if unit != u.dimensionless_unscaled else None)
    out.meta.update(table.meta)
    out.meta["MISSING"] = (MAGIC_NUMBER, "value of a missing entry")
    out.meta["CREATOR"] = f"astronn_gaiacal {__version__}"
    out.meta.setdefault("comments", [])
    out.meta["comments"] = list(out.meta["comments"]) + [
        "Distance catalogue, data model of Leung & Bovy (2019) Table 1.",
        "ra_apogee/dec_apogee: APOGEE position (J2000); ra/dec: Gaia's.",
        "weighted_*: inverse-variance mean of NN parallax (total error)",
        "and Gaia parallax - ZEROPT (or - zeropoint).",
    ]
    with atomic_path(path, overwrite=overwrite) as tmp:
        out.write(tmp, format="fits")


def plot_catalogue(table, path, overwrite=False):
    """Two-panel PNG: NN vs zero-point-corrected Gaia parallax, and fractional distance uncertainties.

    The left panel needs the catalogue's ``parallax`` column (skipped otherwise);
    the zero-point comes from ``zeropoint`` or the ``ZEROPT`` header value.
    """
    def val(name, unit):
        col = table[name]
        arr = np.array(col.to_value(unit) if isinstance(col, u.Quantity) else col, dtype=float)
        arr[is_missing(arr)] = np.nan
        return arr

    has_gaia = "parallax" in table.colnames
    fig = new_figure(figsize=(11 if has_gaia else 5.5, 4.5))
    axes = fig.subplots(1, 2 if has_gaia else 1, squeeze=False)
    axes = axes[0]
    if has_gaia:
        ax = axes[0]
        if "zeropoint" in table.colnames:
            zp = val("zeropoint", u.mas)
        else:
            zp = table.meta.get("ZEROPT", 0.0)
            zp = zp[0] if isinstance(zp, tuple) else zp
        gaia = val("parallax", u.mas) - zp
        nn = val("nn_parallax", u.mas)
        ok = np.isfinite(gaia) & np.isfinite(nn)
        ax.scatter(gaia[ok], nn[ok], s=4, alpha=0.5, lw=0)
        if ok.any():
            lim = [np.nanmin([gaia[ok].min(), nn[ok].min()]), np.nanmax([gaia[ok].max(), nn[ok].max()])]
            ax.plot(lim, lim, "k-", lw=0.8)
        ax.set_xlabel("Gaia parallax - zero-point (mas)")
        ax.set_ylabel("NN parallax (mas)")
        ax.set_title(f"{int(ok.sum())} stars with both")
    ax = axes[-1]
    for name, label in (("dist", "NN"), ("weighted_dist", "NN + Gaia")):
        d = val(name, u.pc)
        e = val(f"{name}_error", u.pc)
        frac = e / d
        frac = frac[np.isfinite(frac) & (frac > 0)]
        if frac.size:
            ax.hist(frac, bins=np.logspace(-3, 1, 60), histtype="step", label=f"{label} (median {np.median(frac):.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("fractional distance uncertainty")
    ax.set_ylabel("stars")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, overwrite=overwrite)
