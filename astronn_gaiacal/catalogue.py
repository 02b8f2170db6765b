r"""The distance catalogue, in the data model of the paper's Table 1.

=========================  ======  ==========================================================
column                     unit    meaning
=========================  ======  ==========================================================
apogee_id, ra, dec                 identifiers and position (when given)
fakemag, fakemag_error             NN pseudo-luminosity and its total uncertainty
nn_parallax                mas     :math:`L\,10^{-m/5}` (a true parallax, no zero-point)
nn_parallax_model_error    mas     from the MC-dropout model uncertainty only
nn_parallax_error          mas     total (model and predictive)
dist, dist_model_error,    pc      :math:`1000\,10^{m/5}/L` and its uncertainties
dist_error
weighted_dist,             pc      inverse-variance combination of the NN parallax (with its
weighted_dist_error                *model* error, as the paper) and the Gaia parallax corrected
                                   for the zero-point, :math:`\varpi_{\rm Gaia}-\varpi_0`, with
                                   error :math:`\sigma_{\rm Gaia}\oplus\sigma_{\varpi_0}`
=========================  ======  ==========================================================

plus the Gaia columns that were given (``parallax``, ``parallax_error``, ...)
and ``zeropoint``/``zeropoint_error`` when a zero-point is applied.  When only
one parallax is available, ``weighted_dist`` uses it alone; -9999 marks a
value that cannot be computed (no parallax, or a non-positive combined
parallax).  The published code's fallback tested ``x == np.nan``, which is
never true; here each fallback is explicit and tested.
"""
import numpy as np
from astropy import units as u
from astropy.table import QTable

from ._io import atomic_path
from .constants import MAGIC_NUMBER

TABLE1_COLUMNS = (
    "apogee_id",
    "ra",
    "dec",
    "fakemag",
    "fakemag_error",
    "nn_parallax",
    "nn_parallax_model_error",
    "nn_parallax_error",
    "dist",
    "dist_model_error",
    "dist_error",
    "weighted_dist",
    "weighted_dist_error",
)


def _arr(x, unit=None, n=None):
    if x is None:
        return None
    if isinstance(x, u.Quantity):
        x = x.to_value(unit) if unit is not None else x.value
    x = np.asarray(x, dtype=float)
    if n is not None and x.ndim == 0:
        x = np.full(n, float(x))
    return np.where(x == MAGIC_NUMBER, np.nan, x)


def weighted_parallax(parallax_a, error_a, parallax_b, error_b):
    """Inverse-variance mean of two parallax estimates, using whichever exist.

    Returns
    -------
    parallax, error : ndarray
        NaN where neither estimate is usable (missing value or non-positive error).
    """
    ok_a = np.isfinite(parallax_a) & np.isfinite(error_a) & (error_a > 0)
    ok_b = np.isfinite(parallax_b) & np.isfinite(error_b) & (error_b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_a = np.where(ok_a, 1.0 / np.where(ok_a, error_a, 1.0) ** 2, 0.0)
        w_b = np.where(ok_b, 1.0 / np.where(ok_b, error_b, 1.0) ** 2, 0.0)
        total = w_a + w_b
        mean = (w_a * np.where(ok_a, parallax_a, 0.0) + w_b * np.where(ok_b, parallax_b, 0.0)) / total
        err = 1.0 / np.sqrt(total)
    none = ~(ok_a | ok_b)
    return np.where(none, np.nan, mean), np.where(none, np.nan, err)


def build_catalogue(
    fakemag,
    fakemag_error,
    fakemag_model_error,
    mag,
    apogee_id=None,
    ra=None,
    dec=None,
    gaia_parallax=None,
    gaia_parallax_error=None,
    zeropoint=None,
    zeropoint_error=None,
    extra_columns=None,
):
    """Build the Table-1 catalogue from model outputs.

    Parameters
    ----------
    fakemag, fakemag_error, fakemag_model_error : array_like, shape (N,)
        NN fakemag with its total and model (MC-dropout) uncertainties;
        -9999/NaN or non-positive fakemag mark stars without a prediction.
    mag : array_like
        Extinction-corrected apparent magnitude used with the fakemag.
    apogee_id, ra, dec : array_like, optional
    gaia_parallax, gaia_parallax_error : Quantity or array_like (mas), optional
        Gaia catalogue parallax, not corrected.
    zeropoint, zeropoint_error : Quantity or array_like (mas), optional
        Scalar or per star; subtracted from the Gaia parallax for ``weighted_dist``.
    extra_columns : mapping, optional
        More columns to carry (e.g. Gaia ``source_id``, ``phot_g_mean_mag``).

    Returns
    -------
    QTable
        Missing values are NaN here; :func:`write_catalogue` writes them as -9999.
    """
    L = _arr(fakemag)
    n = L.shape[0]
    L_err, L_merr, m = _arr(fakemag_error, n=n), _arr(fakemag_model_error, n=n), _arr(mag, n=n)
    for name, arr in (("fakemag_error", L_err), ("fakemag_model_error", L_merr), ("mag", m)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}; fakemag has ({n},)")
    valid = np.isfinite(L) & (L > 0) & np.isfinite(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(valid, 10.0 ** (-0.2 * m), np.nan)
        nn_plx = np.where(valid, L * factor, np.nan)
        nn_plx_err = L_err * factor
        nn_plx_merr = L_merr * factor
        dist = 1000.0 / nn_plx
        dist_err = dist * L_err / L
        dist_merr = dist * L_merr / L

    t = QTable()
    for name, values in (("apogee_id", apogee_id), ("ra", ra), ("dec", dec)):
        if values is not None:
            unit = u.deg if name in ("ra", "dec") else None
            t[name] = _arr(values, unit, n) * u.deg if unit else np.asarray(values)
    t["fakemag"] = L
    t["fakemag_error"] = L_err
    t["nn_parallax"] = nn_plx * u.mas
    t["nn_parallax_model_error"] = nn_plx_merr * u.mas
    t["nn_parallax_error"] = nn_plx_err * u.mas
    t["dist"] = dist * u.pc
    t["dist_model_error"] = dist_merr * u.pc
    t["dist_error"] = dist_err * u.pc

    if gaia_parallax is not None:
        g = _arr(gaia_parallax, u.mas, n)
        g_err = _arr(gaia_parallax_error, u.mas, n) if gaia_parallax_error is not None else np.full(n, np.nan)
        zp = _arr(zeropoint, u.mas, n) if zeropoint is not None else np.zeros(n)
        zp_err = _arr(zeropoint_error, u.mas, n) if zeropoint_error is not None else np.zeros(n)
        corrected = g - np.where(np.isfinite(zp), zp, np.nan)
        corrected_err = np.hypot(g_err, np.where(np.isfinite(zp_err), zp_err, 0.0))
    else:
        corrected = corrected_err = np.full(n, np.nan)
    w_plx, w_err = weighted_parallax(nn_plx, nn_plx_merr, corrected, corrected_err)
    positive = np.isfinite(w_plx) & (w_plx > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t["weighted_dist"] = np.where(positive, 1000.0 / w_plx, np.nan) * u.pc
        t["weighted_dist_error"] = np.where(positive, 1000.0 * w_err / w_plx**2, np.nan) * u.pc
    if gaia_parallax is not None:
        t["parallax"] = _arr(gaia_parallax, u.mas, n) * u.mas
        if gaia_parallax_error is not None:
            t["parallax_error"] = _arr(gaia_parallax_error, u.mas, n) * u.mas
    if zeropoint is not None:
        t["zeropoint"] = _arr(zeropoint, u.mas, n) * u.mas
        if zeropoint_error is not None:
            t["zeropoint_error"] = _arr(zeropoint_error, u.mas, n) * u.mas
    for name, values in (extra_columns or {}).items():
        if name not in t.colnames:
            t[name] = values
    t.meta["ZP_CONV"] = "parallax_gaia = parallax_true + zeropoint"
    t.meta["MISSING"] = MAGIC_NUMBER
    return t


def write_catalogue(table, path, overwrite=False):
    """Write the catalogue as FITS (units in the header, -9999 for missing), atomically."""
    out = QTable(table, copy=True)
    for name in out.colnames:
        col = out[name]
        values = col.value if isinstance(col, u.Quantity) else np.asarray(col)
        if values.dtype.kind == "f":
            filled = np.where(np.isfinite(values), values, MAGIC_NUMBER)
            out[name] = filled * col.unit if isinstance(col, u.Quantity) else filled
    with atomic_path(path, overwrite=overwrite) as tmp:
        out.write(tmp, format="fits")
    return str(path)
