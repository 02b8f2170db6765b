"""Photometry of the simulator: bolometric corrections, Gaia colours, extinction ratios, Gaia DR2 parallax errors.

Sources are given per function and in ``docs/simulation.rst``.
"""
import functools
import os

import numpy as np
from astroNN.data import datapath
from astropy import constants as const
from astropy import units as u

__all__ = [
    "EXTINCTION_RATIOS",
    "GAIA_G_LIMIT",
    "SOLAR_LOGG",
    "SOLAR_MBOL",
    "SOLAR_TEFF",
    "bolometric_correction_ks",
    "dr2_parallax_errors",
    "gaia_colours",
    "parallax_error_at",
    "to_kelvin",
]

#: Absolute bolometric magnitude of the Sun (IAU 2015 Resolution B2).
SOLAR_MBOL = 4.74
#: log10 of the nominal solar surface gravity in cgs (IAU 2015 B3: GM_sun / R_sun^2).
SOLAR_LOGG = float(np.log10((const.GM_sun / const.R_sun**2).to_value(u.cm / u.s**2)))
#: Nominal solar effective temperature (IAU 2015 B3), K.
SOLAR_TEFF = 5772.0
#: Extinction ratios A_X / A_V of Wang & Chen (2019, ApJ 877, 116).
EXTINCTION_RATIOS = {"Ks": 0.078, "G": 0.789, "BP": 1.002, "RP": 0.589}
#: Faintest Gaia G in the sample: the survey is the APOGEE x Gaia DR2 cross-match (DR2's faint end).
GAIA_G_LIMIT = 20.5


def _casagrande_v_minus_ks(teff, fe_h):
    """(V-Ks)_0 from Teff by inverting Casagrande et al. (2010, A&A 512, A54) Table 4, V-Ks row."""
    a0, a1, a2, a3, a4, a5 = 0.5057, 0.2600, -0.0146, -0.0131, 0.0288, 0.0016
    theta = 5040.0 / np.asarray(teff, dtype=float)
    fe_h = np.asarray(fe_h, dtype=float)
    b = a1 + a3 * fe_h
    c = a0 + a4 * fe_h + a5 * fe_h**2 - theta
    return (-b + np.sqrt(b * b - 4.0 * a2 * c)) / (2.0 * a2)


def _alonso_bc_v(teff, fe_h):
    """BC_V of giants, Alonso, Arribas & Martinez-Roger (1999, A&AS 140, 261) eqs. 17 (cool) and 18."""
    x = np.log10(np.asarray(teff, dtype=float)) - 3.52
    f = np.asarray(fe_h, dtype=float)
    cool = -5.531e-2 / x - 0.6177 + 4.420 * x - 2.669 * x**2 + 0.6943 * x * f - 0.1071 * f - 8.612e-3 * f**2
    warm = -9.930e-2 / x + 2.887e-2 + 2.275 * x - 4.425 * x**2 + 0.3505 * x * f - 5.558e-2 * f - 5.375e-3 * f**2
    return np.where(x < 0.14, cool, warm)


@functools.lru_cache(maxsize=1)
def _bc_ks_coefficients():
    teff = np.linspace(4200.0, 7000.0, 57)
    bc = _alonso_bc_v(teff, 0.0) + _casagrande_v_minus_ks(teff, 0.0)
    return np.polyfit(5040.0 / teff, bc, 2)


def bolometric_correction_ks(teff):
    r"""Bolometric correction in 2MASS Ks, :math:`BC_{K_s} = M_{\rm bol} - M_{K_s}`.

    A quadratic in :math:`\theta = 5040\,{\rm K}/T_{\rm eff}`, least-squares fitted
    (at import) to :math:`BC_V + (V-K_s)_0` at [Fe/H] = 0 over 4200-7000 K, with
    :math:`BC_V` from Alonso et al. (1999) eqs. 17-18 and :math:`(V-K_s)_0` from
    Casagrande et al. (2010).  It gives 1.46 for the Sun (4.74 - 3.27 = 1.47) and
    about 2.1 for a red-clump giant; below 4200 K it is a smooth extrapolation.

    Parameters
    ----------
    teff : array_like or Quantity
        Effective temperature (K).

    Returns
    -------
    ndarray
        :math:`BC_{K_s}` in mag.

    Examples
    --------
    >>> round(float(bolometric_correction_ks(5772.0)), 2)
    1.46
    """
    teff = to_kelvin(teff)
    return np.polyval(_bc_ks_coefficients(), 5040.0 / teff)


def gaia_colours(teff, fe_h=0.0):
    r"""Intrinsic Gaia DR2 :math:`(BP-RP)_0` and :math:`(G-K_s)_0` from Teff and [Fe/H].

    :math:`(V-K_s)_0` from Casagrande et al. (2010) is converted with the Gaia
    DR2 relations of Evans et al. (2018, Table A.2):
    :math:`G-K_s = -0.1885 + 2.092x - 0.1345x^2` and
    :math:`G-V = -0.01760 - 0.006860x - 0.1732x^2`, :math:`x = BP-RP`, so that
    :math:`V-K_s = (G-K_s) - (G-V)` is solved for :math:`x`.

    Returns
    -------
    bp_rp, g_minus_ks : ndarray

    Examples
    --------
    >>> bp_rp, g_ks = gaia_colours(5772.0)
    >>> round(float(bp_rp), 2), round(float(g_ks), 2)
    (0.81, 1.41)
    """
    v_ks = _casagrande_v_minus_ks(to_kelvin(teff), fe_h)
    # V - Ks = (-0.1885 + 0.0176) + (2.092 + 0.00686) x + (-0.1345 + 0.1732) x^2
    a, b, c = 0.0387, 2.09886, -0.1709 - v_ks
    bp_rp = (-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
    return bp_rp, -0.1885 + 2.092 * bp_rp - 0.1345 * bp_rp**2


def to_kelvin(teff):
    """Effective temperatures as a float array in K (a Quantity is converted)."""
    if isinstance(teff, u.Quantity):
        return teff.to_value(u.K, equivalencies=u.temperature())
    return np.asarray(teff, dtype=float)


# ---------------------------------------------------------------------------
# Gaia DR2 parallax errors of APOGEE stars (astroNN ships them)


@functools.lru_cache(maxsize=1)
def dr2_parallax_errors():
    """The real Gaia DR2 parallax errors of APOGEE DR14 stars, sorted by G, and equal-count G bins.

    Returns
    -------
    g, parallax_error : ndarray
        G and parallax error (mas) of the stars with finite, positive values, sorted by G.
    edges : ndarray
        Edges of G bins of about 1000 stars each.
    path : str
        The file read, ``astroNN/data/gaiadr2_apogeedr14_parallax.npz``.
    """
    path = os.path.join(datapath(), "gaiadr2_apogeedr14_parallax.npz")
    with np.load(path) as f:
        g, err = np.asarray(f["g"], float), np.asarray(f["parallax_error"], float)
    ok = np.isfinite(g) & np.isfinite(err) & (g > 0) & (err > 0)
    order = np.argsort(g[ok], kind="stable")
    g, err = g[ok][order], err[ok][order]
    # equal-count G bins of ~1000 stars: every bin is well sampled
    edges = np.quantile(g, np.linspace(0.0, 1.0, len(g) // 1000 + 1))
    return g, err, edges, path


def parallax_error_at(g, rng):
    """Draw Gaia DR2 parallax errors at G from the real errors of APOGEE DR14 stars.

    Each star gets the error of a random real star in its G bin (equal-count
    bins of about 1000 of the 277,371 APOGEE DR14 stars in
    ``astroNN/data/gaiadr2_apogeedr14_parallax.npz``); stars outside the real G
    range use the nearest bin.

    Parameters
    ----------
    g : array_like
        Gaia G magnitude.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray
        Parallax errors in mas.
    """
    g = np.asarray(g, dtype=float)
    if not np.all(np.isfinite(g)):
        raise ValueError("g must be finite")
    real_g, real_err, edges, _ = dr2_parallax_errors()
    nbins = len(edges) - 1
    b = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, nbins - 1)
    start = np.searchsorted(real_g, edges[:-1], side="left")
    stop = np.append(start[1:], len(real_g))
    pick = start[b] + np.floor(rng.random(g.shape) * (stop[b] - start[b])).astype(int)
    return real_err[pick]
