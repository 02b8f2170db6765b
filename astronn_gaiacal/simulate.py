r"""A mock APOGEE x Gaia DR2 survey with known distances and an injected parallax zero-point.

The simulator draws stars (red giants, red-clump stars and main-sequence stars)
with physically consistent labels, places them in a disk-like Galaxy behind
dust, observes them with an APOGEE-like magnitude limit, gives them Gaia DR2-like
photometry and parallaxes (errors drawn from the real DR2 errors of APOGEE stars,
plus an injected zero-point), and synthesises 7514-pixel continuum-normalised
spectra from the real mean DR14 spectrum.  The output is an
:class:`astronn_gaiacal.io.dataset.Dataset` with the columns of the dataset
contract plus ``true_*`` columns.  ``docs/simulation.rst`` describes the model,
its sources and its limits.

Ingredients, in order:

* **Labels.**  Per population: RGB stars get log g, mass and [Fe/H] and a Teff
  along the giant branch; red-clump stars a luminosity (set so that the median
  :math:`M_{K_s} \approx -1.6`, Hawkins et al. 2017) and Teff; dwarfs a mass and
  age fraction giving L and R.  Then :math:`R^2 = GM/g` and
  :math:`L = 4\pi R^2 \sigma T_{\rm eff}^4` (astropy constants) tie them together.
  Giants carry the mass-dependent [C/N] of the first dredge-up.
* **Photometry.**  :math:`M_{\rm bol} = 4.74 - 2.5\log L`,
  :math:`M_{K_s} = M_{\rm bol} - BC_{K_s}(T_{\rm eff})` (:func:`bolometric_correction_ks`);
  :math:`(BP-RP)_0` and :math:`(G-K_s)_0` from Teff (:func:`gaia_colours`).
* **Positions.**  Sky positions concentrated to the plane (dec > -30 deg, APO's
  sky); distance drawn per star from a thin/thick double-exponential disk times
  :math:`d^2` within the apparent-magnitude window ``mag_limits``; dust is a
  double-exponential disk, so :math:`A_{K_s}` grows with distance and is larger
  at low latitude.
* **Gaia.**  :math:`\sigma_\varpi` drawn, at the star's G, from the real Gaia DR2
  errors of APOGEE DR14 stars (:func:`parallax_error_at`); catalogue parallax
  = true parallax + zero-point + Gaussian noise (negative values kept).
* **Spectra.**  :func:`model_spectra` (noise-free, a smooth function of the
  labels) plus Gaussian noise at the star's SNR.

Examples
--------
>>> import astropy.units as u
>>> from astronn_gaiacal.simulate import simulate_survey
>>> ds = simulate_survey(50, seed=1, zeropoint=-52.3 * u.uas)
>>> ds["spectra"].shape
(50, 7514)
>>> float(ds["true_zeropoint"][0])
-0.0523
"""
import functools
import numbers
import os

import numpy as np
from astropy import constants as const
from astropy import units as u

from .constants import (
    APOGEE_SPECTRUM_LENGTH,
    PAPER_QUADRATIC_TRENDS,
    PAPER_SNR_SPLIT,
    PAPER_ZEROPOINT_UAS,
)
from .conversions import absmag_to_fakemag

__all__ = [
    "simulate_survey",
    "write_survey",
    "simulate_train_test",
    "write_train_test",
    "simulate_catalogue",
    "model_spectra",
    "bolometric_correction_ks",
    "gaia_colours",
    "parallax_error_at",
    "paper_quadratic_zeropoint",
    "plot_survey",
    "REFERENCE_LABELS",
    "DEFAULT_FRACTIONS",
]

# ---------------------------------------------------------------------------
# Fixed physical inputs (sources in docs/simulation.rst)

#: Absolute bolometric magnitude of the Sun (IAU 2015 Resolution B2).
SOLAR_MBOL = 4.74
#: log10 of the nominal solar surface gravity in cgs (IAU 2015 B3: GM_sun / R_sun^2).
SOLAR_LOGG = float(np.log10((const.GM_sun / const.R_sun**2).to_value(u.cm / u.s**2)))
#: Nominal solar effective temperature (IAU 2015 B3), K.
SOLAR_TEFF = 5772.0
#: Extinction ratios A_X / A_V of Wang & Chen (2019, ApJ 877, 116).
EXTINCTION_RATIOS = {"Ks": 0.078, "G": 0.789, "BP": 1.002, "RP": 0.589}
#: 15273 A DIB (Zasowski et al. 2015): rest wavelength (vacuum, A), W/A_V (A/mag) and adopted Gaussian sigma (A).
DIB_WAVELENGTH, DIB_EW_PER_AV, DIB_SIGMA = 15272.42, 0.1, 1.7
#: Sun's Galactocentric radius and the disk/dust scale lengths and heights, pc.
R0_PC = 8200.0
DISKS = {"thin": (2600.0, 300.0), "thick": (2000.0, 900.0)}
DUST_SCALES = (5000.0, 100.0)
#: Faintest Gaia G in the sample: the survey is the APOGEE x Gaia DR2 cross-match (DR2's faint end).
GAIA_G_LIMIT = 20.5
#: Midplane A_Ks per kpc at the solar circle (A_V ~ 0.8 mag/kpc).
DUST_AKS_PER_KPC = 0.8 * EXTINCTION_RATIOS["Ks"]

#: Labels at which the model spectrum equals the template (near the mean of the paper's training set).
REFERENCE_LABELS = {"teff": 4750.0, "logg": 2.6, "fe_h": -0.1, "alpha_fe": 0.05, "c_n": -0.35}
#: Default population fractions of the observed sample.
DEFAULT_FRACTIONS = {"rgb": 0.55, "rc": 0.25, "ms": 0.20}
#: Fraction of thick-disk stars (old, alpha-rich, metal-poor, low-mass).
THICK_FRACTION = 0.15

_SPECTRAL_MODEL_SEED = 20190417  # the spectral model is fixed; survey seeds only draw stars and noise
_NOISE_BLOCK = 256  # spectra noise is drawn per block of this many stars, so chunking never changes it
_STREAMS = {"population": 0, "sky": 1, "distance": 2, "photometry": 3, "gaia": 4, "snr": 5, "spectra": 6}

_RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
TEMPLATE_FILE = os.path.join(_RESOURCES, "mean_contnorm_spectrum_dr14_training_set.npy")


# ---------------------------------------------------------------------------
# Photometric relations


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
    teff = _as_kelvin(teff)
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
    v_ks = _casagrande_v_minus_ks(_as_kelvin(teff), fe_h)
    # V - Ks = (-0.1885 + 0.0176) + (2.092 + 0.00686) x + (-0.1345 + 0.1732) x^2
    a, b, c = 0.0387, 2.09886, -0.1709 - v_ks
    bp_rp = (-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
    return bp_rp, -0.1885 + 2.092 * bp_rp - 0.1345 * bp_rp**2


def _as_kelvin(teff):
    if isinstance(teff, u.Quantity):
        return teff.to_value(u.K, equivalencies=u.temperature())
    return np.asarray(teff, dtype=float)


# ---------------------------------------------------------------------------
# Gaia DR2 parallax errors of APOGEE stars (astroNN ships them)


@functools.lru_cache(maxsize=1)
def _dr2_errors():
    import astroNN.data

    path = os.path.join(astroNN.data.datapath(), "gaiadr2_apogeedr14_parallax.npz")
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
    real_g, real_err, edges, _ = _dr2_errors()
    nbins = len(edges) - 1
    b = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, nbins - 1)
    start = np.searchsorted(real_g, edges[:-1], side="left")
    stop = np.append(start[1:], len(real_g))
    pick = start[b] + np.floor(rng.random(g.shape) * (stop[b] - start[b])).astype(int)
    return real_err[pick]


# ---------------------------------------------------------------------------
# The spectral model


@functools.lru_cache(maxsize=1)
def _wavelength():
    from astroNN.apogee import wavelength_solution

    return np.concatenate(wavelength_solution(dr=14))


def _smooth(x, sigma_px=1.0):
    k = np.arange(-4, 5)
    kernel = np.exp(-0.5 * (k / sigma_px) ** 2)
    return np.convolve(x, kernel / kernel.sum(), mode="same")


def _running_max(x, width):
    half = width // 2
    padded = np.pad(x, half, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, width).max(axis=1)


#: Names of the label features of the spectral model, in the order of its coefficient rows.
_FEATURES = ("dT", "dlogg", "dFe", "dalpha", "dCN", "dT^2", "dT*dlogg", "dT*dFe", "dlogg^2")


@functools.lru_cache(maxsize=1)
def _spectral_coefficients():
    """Template continuum, reference optical depth and per-pixel label sensitivities (fixed)."""
    from astroNN.apogee import aspcap_mask

    template = np.load(TEMPLATE_FILE).astype(float)
    if template.shape != (APOGEE_SPECTRUM_LENGTH,):
        raise RuntimeError(f"{TEMPLATE_FILE} has shape {template.shape}, expected ({APOGEE_SPECTRUM_LENGTH},)")
    continuum = _smooth(_running_max(template, 31), 3.0)
    continuum = np.maximum(continuum, template)
    tau0 = np.log(continuum / np.clip(template, 0.05, None))
    window = {e: aspcap_mask(e, dr=14) for e in ("C", "CI", "N", "O", "Mg", "Si", "S", "Ca", "TI", "TiII")}
    carbon = window["C"] | window["CI"]
    nitrogen = window["N"]
    molecular = carbon | nitrogen | window["O"]
    alpha = window["O"] | window["Mg"] | window["Si"] | window["S"] | window["Ca"] | window["TI"] | window["TiII"]
    wings = (_running_max(tau0, 7) > 2.0 * tau0) & (tau0 > 0.01)

    rng = np.random.default_rng(_SPECTRAL_MODEL_SEED)
    p = APOGEE_SPECTRUM_LENGTH
    ln10 = np.log(10.0)
    # per unit label: Teff in 1000 K, log g in dex, abundances in dex (see docs/simulation.rst)
    a_t = np.where(molecular, rng.normal(-1.5, 0.4, p), rng.normal(-0.8, 0.4, p))
    a_g = rng.normal(0.0, 0.2, p) + 0.5 * wings - 0.4 * window["TiII"]
    a_fe = ln10 * rng.uniform(0.4, 0.9, p)
    a_alpha = np.where(alpha, ln10 * rng.uniform(0.4, 0.9, p), 0.0)
    # CN cycling at fixed C+N (C/N = 4 at birth): d[C/H] = +0.31 d[C/N], d[N/H] = -0.69 d[C/N]
    cog = 0.7 * ln10
    a_cn = np.select(
        [carbon & nitrogen, carbon, nitrogen], [cog * (0.31 - 0.69), cog * 0.31, cog * -0.69], 0.0
    )
    a_tt = np.where(molecular, rng.normal(0.5, 0.2, p), rng.normal(0.0, 0.2, p))
    a_tg = rng.normal(0.0, 0.1, p)
    a_tfe = rng.normal(0.0, 0.15, p)
    a_gg = rng.normal(0.0, 0.05, p)
    coeffs = np.vstack([a_t, a_g, a_fe, a_alpha, a_cn, a_tt, a_tg, a_tfe, a_gg])
    coeffs = np.vstack([_smooth(row) for row in coeffs]).astype(np.float32)
    return continuum.astype(np.float32), tau0.astype(np.float32), coeffs


def _design(teff, logg, fe_h, alpha_fe, c_n):
    ref = REFERENCE_LABELS
    dt = (np.asarray(teff, float) - ref["teff"]) / 1000.0
    dg = np.asarray(logg, float) - ref["logg"]
    dz = np.asarray(fe_h, float) - ref["fe_h"]
    da = np.asarray(alpha_fe, float) - ref["alpha_fe"]
    dc = np.asarray(c_n, float) - ref["c_n"]
    return np.stack(np.broadcast_arrays(dt, dg, dz, da, dc, dt * dt, dt * dg, dt * dz, dg * dg), axis=-1)


def _dib_profile():
    x = (_wavelength() - DIB_WAVELENGTH) / DIB_SIGMA
    return np.where(np.abs(x) < 4.0, np.exp(-0.5 * x**2), 0.0).astype(np.float32)


def model_spectra(teff, logg, fe_h, alpha_fe=None, c_n=None, a_ks=None, dib=0.0):
    r"""Noise-free continuum-normalised spectra on APOGEE's 7514-pixel grid.

    Each pixel is :math:`f = c\,e^{-\tau}` with the template's continuum
    :math:`c` and an optical depth
    :math:`\tau = \tau_0 \exp\big(\sum_k a_k x_k\big)`, where :math:`\tau_0`
    reproduces the mean DR14 spectrum at :data:`REFERENCE_LABELS` and
    :math:`x_k` are label offsets (Teff, log g, [Fe/H], [alpha/Fe], [C/N] and
    second-order Teff/log g terms).  The per-pixel sensitivities :math:`a_k`
    follow APOGEE's ASPCAP element windows (molecular C/N/O lines: steep in
    Teff and carrying [C/N]; alpha-element windows: [alpha/Fe]; line wings:
    gravity) and are fixed, independent of any survey seed.  Nothing here
    depends on distance; the only extinction term is the optional 15273 A
    diffuse interstellar band.

    Parameters
    ----------
    teff, logg, fe_h : array_like
        Labels (K, dex, dex), broadcast together.
    alpha_fe, c_n : array_like, optional
        [alpha/Fe] and [C/N]; default the reference values.
    a_ks : array_like, optional
        Ks extinction, needed when ``dib`` is non-zero.
    dib : float
        Strength of the DIB relative to Zasowski et al. (2015),
        :math:`W = 0.1\,{\rm A}\,A_V` (1 = that relation, 0 = no DIB).

    Returns
    -------
    ndarray, shape (N, 7514), float32

    Examples
    --------
    >>> import numpy as np
    >>> f = model_spectra(4750.0, 2.6, -0.1)
    >>> template = np.load(TEMPLATE_FILE)
    >>> bool(np.allclose(f[0], template, atol=1e-4))
    True
    """
    ref = REFERENCE_LABELS
    alpha_fe = ref["alpha_fe"] if alpha_fe is None else alpha_fe
    c_n = ref["c_n"] if c_n is None else c_n
    for name, value in (("teff", teff), ("logg", logg), ("fe_h", fe_h), ("alpha_fe", alpha_fe), ("c_n", c_n)):
        if not np.all(np.isfinite(np.asarray(value, dtype=float))):
            raise ValueError(f"{name} must be finite (no NaN or -9999 in simulated labels)")
    x = np.atleast_2d(_design(_as_kelvin(teff), logg, fe_h, alpha_fe, c_n).astype(np.float32))
    continuum, tau0, coeffs = _spectral_coefficients()
    # an explicit sum over the 9 terms, not BLAS: its blocking depends on the batch size, and the
    # spectra must not depend on how the survey is chunked
    log_scale = x[:, :1] * coeffs[0]
    for j in range(1, x.shape[1]):
        log_scale += x[:, j : j + 1] * coeffs[j]
    np.clip(log_scale, -8.0, 3.0, out=log_scale)
    tau = np.exp(log_scale, out=log_scale)
    tau *= tau0
    if dib:
        if a_ks is None:
            raise ValueError("a_ks is required when dib is non-zero")
        a_ks = np.broadcast_to(np.asarray(a_ks, dtype=np.float32), (len(x),))
        if np.any(a_ks < 0) or not np.all(np.isfinite(a_ks)):
            raise ValueError("a_ks must be finite and >= 0")
        depth = float(dib) * DIB_EW_PER_AV * (a_ks / EXTINCTION_RATIOS["Ks"]) / (DIB_SIGMA * np.sqrt(2.0 * np.pi))
        tau += depth[:, None] * _dib_profile()[None, :]
    flux = np.exp(np.negative(tau, out=tau), out=tau)
    flux *= continuum
    return flux


def _noisy_spectra(columns, start, stop, key, dib):
    """Spectra and errors of rows ``start:stop``; noise drawn per fixed block of stars from ``key``."""
    if start % _NOISE_BLOCK:
        raise ValueError(f"start must be a multiple of {_NOISE_BLOCK}")
    sl = slice(start, stop)
    flux = model_spectra(
        columns["teff"][sl], columns["logg"][sl], columns["fe_h"][sl], columns["alpha_fe"][sl],
        columns["c_n"][sl], a_ks=columns["mag_ext"][sl], dib=dib,
    )
    err = np.sqrt(np.maximum(flux / _spectral_coefficients()[0], np.float32(0.05)))
    err /= columns["snr"][sl, None].astype(np.float32)
    for b0 in range(start, stop, _NOISE_BLOCK):
        b1 = min(b0 + _NOISE_BLOCK, stop)
        noise = _stream(key, "spectra", b0 // _NOISE_BLOCK).standard_normal((b1 - b0, flux.shape[1]), dtype=np.float32)
        flux[b0 - start:b1 - start] += noise * err[b0 - start:b1 - start]
    return flux, err


# ---------------------------------------------------------------------------
# The zero-point


def paper_quadratic_zeropoint(*features):
    """The paper's quadratic zero-point summaries (eqs. 7-9) as an injectable function.

    Each feature's quadratic from :data:`~astronn_gaiacal.constants.PAPER_QUADRATIC_TRENDS`
    is evaluated with the feature clipped to its published validity range (so
    stars outside it get the value at the range's edge); with several features
    the quadratics are averaged.  Eq. 7 (G) is used with the linear coefficient
    -0.92 (the printed -92 cannot be right; see the constants module).

    Parameters
    ----------
    *features : str
        Any of ``'phot_g_mean_mag'`` (default), ``'bp_rp'``, ``'teff'``.

    Returns
    -------
    callable
        ``f(columns) -> Quantity [mas]``, with a ``description`` attribute.

    Examples
    --------
    >>> f = paper_quadratic_zeropoint("phot_g_mean_mag")
    >>> f({"phot_g_mean_mag": [16.0, 20.0]}).to("uas").round(2)
    <Quantity [-55.49, -55.23] uas>
    """
    from .zeropoint.trends import paper_trend

    features = features or ("phot_g_mean_mag",)
    for name in features:
        if name not in PAPER_QUADRATIC_TRENDS:
            raise KeyError(f"no published trend for {name!r}; known: {sorted(PAPER_QUADRATIC_TRENDS)}")

    def zeropoint(columns):
        total = 0.0
        for name in features:
            lo, hi = PAPER_QUADRATIC_TRENDS[name]["range"]
            total = total + paper_trend(name, np.clip(np.asarray(columns[name], dtype=float), lo, hi))
        return (total / len(features)).to(u.mas)

    zeropoint.description = (
        "paper quadratic zero-point (eqs. 7-9) in " + ", ".join(features)
        + " clipped to the validity ranges" + (", averaged" if len(features) > 1 else "")
        + ("; eq. 7 with linear coefficient -0.92" if "phot_g_mean_mag" in features else "")
    )
    return zeropoint


def _zeropoint_values(zeropoint, columns, n):
    """Per-star injected zero-point (mas) and a description for the attrs."""
    if zeropoint is None or (isinstance(zeropoint, str) and zeropoint == "constant"):
        zeropoint = PAPER_ZEROPOINT_UAS * u.uas
    if isinstance(zeropoint, str):
        if zeropoint == "quadratic":
            zeropoint = paper_quadratic_zeropoint()
        else:
            raise ValueError(f"zeropoint must be 'constant', 'quadratic', a Quantity or a callable; got {zeropoint!r}")
    if isinstance(zeropoint, numbers.Number) and zeropoint == 0:
        zeropoint = 0.0 * u.mas
    if isinstance(zeropoint, u.Quantity):
        if zeropoint.ndim != 0:
            raise ValueError("a Quantity zeropoint must be a scalar; pass a callable for per-star values")
        try:
            value = float(zeropoint.to_value(u.mas))
        except u.UnitConversionError:
            raise u.UnitTypeError(f"zeropoint must be an angle (e.g. -52.3 * u.uas); got unit '{zeropoint.unit}'") from None
        return np.full(n, value), f"constant {value * 1000:.4g} uas"
    if callable(zeropoint):
        values = zeropoint(columns)
        if isinstance(values, u.Quantity):
            try:
                values = values.to_value(u.mas)
            except u.UnitConversionError:
                raise u.UnitTypeError(f"the zeropoint callable returned unit '{values.unit}', not an angle") from None
        values = np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()
        if not np.all(np.isfinite(values)):
            raise ValueError("the zeropoint callable returned NaN or infinite values")
        name = getattr(zeropoint, "description", None) or f"callable {getattr(zeropoint, '__name__', repr(zeropoint))}"
        return values, name
    raise TypeError(
        "zeropoint must be a Quantity (e.g. -52.3 * u.uas), 0, 'constant', 'quadratic' or a callable "
        f"f(columns) -> mas; got {type(zeropoint).__name__} (plain numbers are ambiguous: uas or mas?)"
    )


# ---------------------------------------------------------------------------
# SNR


def _snr_values(snr, mag, rng):
    n = len(mag)
    if isinstance(snr, str):
        if snr != "apogee":
            raise ValueError(f"snr must be 'apogee', a number, a (low, high) pair or a callable; got {snr!r}")
        # APOGEE's design: S/N = 100 at H = 12.2 in three visits (H - Ks ~ 0.15 for giants), photon-noise
        # scaling with flux, and a spread of visits/conditions (0.12 dex)
        values = 100.0 * 10.0 ** (-0.2 * (mag - 12.05)) * 10.0 ** rng.normal(0.0, 0.12, n)
    elif callable(snr):
        values = np.broadcast_to(np.asarray(snr(rng, n), dtype=float), (n,)).copy()
    elif np.ndim(snr) == 1 and len(snr) == 2:
        lo, hi = (float(v) for v in snr)
        if not 0 < lo < hi:
            raise ValueError(f"snr range must satisfy 0 < low < high; got {snr!r}")
        values = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    elif np.ndim(snr) == 0 and isinstance(snr, numbers.Real):
        values = np.full(n, float(snr))
    else:
        raise TypeError(f"snr must be 'apogee', a number, a (low, high) pair or a callable; got {snr!r}")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError("snr values must be finite and positive")
    return np.clip(values, 5.0, None)


# ---------------------------------------------------------------------------
# The stars


def _check_fractions(fractions):
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    unknown = set(fractions) - set(DEFAULT_FRACTIONS)
    if unknown:
        raise KeyError(f"fractions has unknown population(s) {sorted(unknown)}; known: {list(DEFAULT_FRACTIONS)}")
    p = np.array([float(fractions.get(k, 0.0)) for k in DEFAULT_FRACTIONS])
    if np.any(p < 0) or p.sum() <= 0 or not np.all(np.isfinite(p)):
        raise ValueError(f"fractions must be non-negative with a positive sum; got {fractions}")
    return p / p.sum()


def _labels(n, fractions, rng):
    """Population, thick-disk flag and physically consistent labels."""
    pop = rng.choice(np.array(list(DEFAULT_FRACTIONS)), size=n, p=fractions)
    thick = rng.random(n) < THICK_FRACTION
    fe_h = np.where(thick, rng.normal(-0.5, 0.25, n), rng.normal(-0.05, 0.2, n))
    fe_h = np.clip(fe_h, -1.5, 0.45)
    alpha_fe = np.where(thick, 0.22 - 0.05 * (fe_h + 0.5), 0.02 - 0.12 * np.minimum(fe_h, 0.0))
    alpha_fe = alpha_fe + rng.normal(0.0, 0.03, n)

    giant_mass = np.clip(1.3 * np.exp(rng.normal(0.0, 0.3, n)), 0.8, 3.0)
    mass = np.where(thick, np.clip(rng.normal(0.95, 0.07, n), 0.75, 1.2), giant_mass)
    teff = np.empty(n)
    logg = np.empty(n)
    lum = np.empty(n)

    rgb = pop == "rgb"
    logg[rgb] = rng.uniform(1.0, 3.5, rgb.sum())
    teff[rgb] = (4600.0 + 420.0 * (logg[rgb] - 2.5) - 280.0 * fe_h[rgb] + 100.0 * (mass[rgb] - 1.3)
                 + rng.normal(0.0, 40.0, rgb.sum()))

    rc = pop == "rc"
    mass[rc] = np.minimum(mass[rc], 2.5)
    lum[rc] = 10.0 ** (1.70 - 0.25 * np.maximum(mass[rc] - 1.8, 0.0) + rng.normal(0.0, 0.04, rc.sum()))
    teff[rc] = 4720.0 + 150.0 * (mass[rc] - 1.3) - 250.0 * fe_h[rc] + rng.normal(0.0, 50.0, rc.sum())

    ms = pop == "ms"
    nms = ms.sum()
    mass[ms] = np.where(thick[ms], rng.uniform(0.7, 0.95, nms), rng.uniform(0.75, 1.3, nms))
    age = rng.random(nms)
    lum[ms] = 10.0 ** (4.0 * np.log10(mass[ms]) + 0.25 * age)
    radius_ms = 10.0 ** (0.8 * np.log10(mass[ms]) + 0.12 * age)
    teff[ms] = SOLAR_TEFF * (lum[ms] / radius_ms**2) ** 0.25

    # R^2 = G M / g and L = R^2 (Teff / Teff_sun)^4 (solar units)
    lum[rgb] = mass[rgb] * 10.0 ** (SOLAR_LOGG - logg[rgb]) * (teff[rgb] / SOLAR_TEFF) ** 4
    radius2 = lum / (teff / SOLAR_TEFF) ** 4
    logg[~rgb] = SOLAR_LOGG + np.log10(mass[~rgb]) - np.log10(radius2[~rgb])

    # [C/N]: birth value for dwarfs; first dredge-up in giants, lower for higher mass
    # (slope as in APOGEE-Kepler giants, Martig et al. 2016), plus 0.04 dex intrinsic scatter
    c_n = np.where(ms, -0.05, -0.25 - 1.2 * np.log10(mass) + 0.1 * fe_h - 0.05 * rc) + rng.normal(0.0, 0.04, n)
    return dict(population=pop, thick=thick, teff=teff, logg=logg, fe_h=fe_h, alpha_fe=alpha_fe,
                c_n=c_n, mass=mass, luminosity=lum)


def _sky(n, rng):
    """Galactic (l, b) concentrated to the plane, within APO's sky (dec > -30 deg)."""
    from astropy.coordinates import SkyCoord

    out_l, out_b, out_ra, out_dec = [], [], [], []
    have = 0
    while have < n:
        m = 2 * (n - have) + 16
        l = rng.uniform(0.0, 360.0, m)
        b = np.where(rng.random(m) < 0.8, rng.laplace(0.0, 6.0, m), np.degrees(np.arcsin(rng.uniform(-1, 1, m))))
        b = np.clip(b, -89.0, 89.0)
        icrs = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
        keep = icrs.dec.deg > -30.0
        out_l.append(l[keep])
        out_b.append(b[keep])
        out_ra.append(icrs.ra.deg[keep])
        out_dec.append(icrs.dec.deg[keep])
        have += keep.sum()
    return tuple(np.concatenate(x)[:n] for x in (out_l, out_b, out_ra, out_dec))


def _distances(absmag, g_minus_ks, thick, l, b, mag_limits, rng, selection_slope):
    """Distance (pc) and A_Ks per star: disk density x d^2 within the magnitude window and the Gaia
    G limit, with dust along the line of sight."""
    grid = np.geomspace(10.0, 60000.0, 1200)
    dlog = np.log(grid[1] / grid[0])
    lo, hi = mag_limits
    n = len(absmag)
    patchiness = np.exp(rng.normal(0.0, 0.3, n))
    dist = np.empty(n)
    a_ks = np.empty(n)
    for s in range(0, n, 2048):
        sl = slice(s, min(s + 2048, n))
        cb, sb = np.cos(np.radians(b[sl]))[:, None], np.sin(np.radians(b[sl]))[:, None]
        cl, sl_ = np.cos(np.radians(l[sl]))[:, None], np.sin(np.radians(l[sl]))[:, None]
        x = R0_PC - grid * cb * cl
        y = grid * cb * sl_
        z = np.abs(grid * sb)
        r = np.hypot(x, y)
        dust = np.exp(-(r - R0_PC) / DUST_SCALES[0] - z / DUST_SCALES[1])
        ext = np.concatenate([np.zeros((dust.shape[0], 1)),
                              np.cumsum(0.5 * (dust[:, 1:] + dust[:, :-1]) * np.diff(grid), axis=1)], axis=1)
        ext *= DUST_AKS_PER_KPC / 1000.0 * patchiness[sl, None]
        mag = absmag[sl, None] + 5.0 * np.log10(grid / 10.0) + ext
        hr = np.where(thick[sl], DISKS["thick"][0], DISKS["thin"][0])[:, None]
        hz = np.where(thick[sl], DISKS["thick"][1], DISKS["thin"][1])[:, None]
        weight = np.exp(-(r - R0_PC) / hr - z / hz) * grid**3 * 10.0 ** (-selection_slope * (mag - hi))
        g_excess = (EXTINCTION_RATIOS["G"] - EXTINCTION_RATIOS["Ks"]) / EXTINCTION_RATIOS["Ks"]
        inside = (mag >= lo) & (mag <= hi) & (mag + g_minus_ks[sl, None] + g_excess * ext <= GAIA_G_LIMIT)
        cell = 0.5 * (weight[:, 1:] + weight[:, :-1]) * (inside[:, 1:] & inside[:, :-1])
        cdf = np.cumsum(cell, axis=1)
        total = cdf[:, -1]
        if np.any(total <= 0):
            raise ValueError(
                f"mag_limits={tuple(mag_limits)} (with Gaia G <= {GAIA_G_LIMIT}) leave no observable distance "
                "for some stars; widen them"
            )
        j = np.minimum((cdf < (rng.random(len(total)) * total)[:, None]).sum(axis=1), cell.shape[1] - 1)
        frac = rng.random(len(total))
        rows = np.arange(len(total))
        dist[sl] = grid[j] * np.exp(frac * dlog)
        a_ks[sl] = ext[rows, j] + frac * (ext[rows, j + 1] - ext[rows, j])
    return dist, a_ks


def _apogee_ids(ra, dec):
    """APOGEE-style 2MASS designations (2MhhmmsssS+ddmmsss) of the positions; unique."""
    cs = np.round(np.asarray(ra) / 15.0 * 360000.0).astype(np.int64) % 8640000
    ds = np.round(np.abs(np.asarray(dec)) * 36000.0).astype(np.int64)
    sign = np.where(np.asarray(dec) < 0, "-", "+")
    ids = np.array([
        f"2M{c // 360000:02d}{c // 6000 % 60:02d}{c % 6000:04d}{s}{d // 36000:02d}{d // 600 % 60:02d}{d % 600:03d}"
        for c, d, s in zip(cs, ds, sign)
    ])
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    for i in np.flatnonzero(counts > 1):
        dup = np.flatnonzero(ids == ids[first[i]])
        ids[dup[1:]] = [f"{ids[k]}_{m + 2}" for m, k in enumerate(dup[1:])]
    return ids


def _seed_sequence(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None and not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.SeedSequence(seed)


def _stream(ss, name, *extra):
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (_STREAMS[name],) + extra))


def _validate(n_stars, mag_limits, selection_slope, mag_error):
    if not isinstance(n_stars, numbers.Integral) or isinstance(n_stars, bool) or n_stars < 1:
        raise ValueError(f"n_stars must be a positive integer, got {n_stars!r}")
    try:
        lo, hi = (float(v) for v in mag_limits)
    except (TypeError, ValueError):
        lo = hi = np.nan
    if not lo < hi:
        raise ValueError(f"mag_limits must be (bright, faint) with bright < faint; got {mag_limits!r}")
    for name, value in (("selection_slope", selection_slope), ("mag_error", mag_error)):
        if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return lo, hi


_UNITS = {
    "mag": "mag", "mag_ext": "mag", "parallax": "mas", "parallax_error": "mas", "phot_g_mean_mag": "mag",
    "bp_rp": "mag", "teff": "K", "ra": "deg", "dec": "deg", "true_parallax": "mas", "true_zeropoint": "mas",
    "true_distance": "pc", "true_mass": "solMass", "true_absmag_ks": "mag", "true_mag": "mag",
    "true_luminosity": "solLum",
}


def simulate_catalogue(n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                       selection_slope=0.3, mag_error=0.02):
    """Draw the stars of a mock survey: every column of :func:`simulate_survey` except the spectra.

    Parameters are those of :func:`simulate_survey`.

    Returns
    -------
    columns : dict
        name -> 1-D array.
    units : dict
    attrs : dict
    """
    mag_limits = _validate(n_stars, mag_limits, selection_slope, mag_error)
    ss = _seed_sequence(seed)
    p = _check_fractions(fractions)
    lab = _labels(n_stars, p, _stream(ss, "population"))

    bc = bolometric_correction_ks(lab["teff"])
    absmag = SOLAR_MBOL - 2.5 * np.log10(lab["luminosity"]) - bc
    bp_rp0, g_ks0 = gaia_colours(lab["teff"], lab["fe_h"])
    l, b, ra, dec = _sky(n_stars, _stream(ss, "sky"))
    dist, a_ks = _distances(absmag, g_ks0, lab["thick"], l, b, mag_limits, _stream(ss, "distance"), selection_slope)

    rng = _stream(ss, "photometry")
    true_mag = absmag + 5.0 * np.log10(dist / 10.0) + a_ks
    mag = true_mag + rng.normal(0.0, mag_error, n_stars)
    ratio = EXTINCTION_RATIOS
    g_mag = true_mag + g_ks0 + (ratio["G"] - ratio["Ks"]) / ratio["Ks"] * a_ks + rng.normal(0.0, 0.003, n_stars)
    bp_rp = bp_rp0 + (ratio["BP"] - ratio["RP"]) / ratio["Ks"] * a_ks + rng.normal(0.0, 0.01, n_stars)

    columns = {
        "apogee_id": _apogee_ids(ra, dec), "ra": ra, "dec": dec, "mag": mag, "mag_ext": a_ks,
        "phot_g_mean_mag": g_mag, "bp_rp": bp_rp, "teff": lab["teff"], "logg": lab["logg"],
        "fe_h": lab["fe_h"], "alpha_fe": lab["alpha_fe"], "c_n": lab["c_n"],
        "snr": _snr_values(snr, mag, _stream(ss, "snr")),
    }
    zp, zp_description = _zeropoint_values(zeropoint, columns, n_stars)
    rng = _stream(ss, "gaia")
    true_parallax = 1000.0 / dist
    parallax_error = parallax_error_at(g_mag, rng)
    columns.update(
        parallax=true_parallax + zp + parallax_error * rng.standard_normal(n_stars),
        parallax_error=parallax_error,
        population=lab["population"],
        true_parallax=true_parallax, true_zeropoint=zp, true_distance=dist, true_mag=true_mag,
        true_absmag_ks=absmag, true_fakemag=absmag_to_fakemag(absmag), true_mass=lab["mass"],
        true_luminosity=lab["luminosity"],
    )
    attrs = {
        "band": "Ks", "gaia_release": "dr2", "simulated": 1,
        "simulator": "astronn_gaiacal.simulate", "seed": str(ss.entropy),
        "seed_spawn_key": list(ss.spawn_key), "zeropoint_model": zp_description,
        "zeropoint_mean_uas": float(np.mean(zp) * 1000.0),
        "snr_model": snr if isinstance(snr, str) else repr(snr),
        "mag_limits": list(mag_limits), "fractions": dict(zip(DEFAULT_FRACTIONS, p.tolist())),
        "parallax_errors_from": "Gaia DR2 errors of APOGEE DR14 stars at the same G "
                                "(astroNN/data/gaiadr2_apogeedr14_parallax.npz)",
    }
    return columns, dict(_UNITS), attrs


def _dataset(columns, units, attrs, spectra=None, spectra_err=None):
    from .io.dataset import Dataset

    return Dataset(spectra=spectra, spectra_err=spectra_err, columns=columns, units=units, attrs=attrs)


def _with_spectra(columns, units, attrs, key, dib, progress, desc):
    from tqdm.auto import tqdm

    n = len(columns["teff"])
    spectra = np.empty((n, APOGEE_SPECTRUM_LENGTH), np.float32)
    spectra_err = np.empty_like(spectra)
    step = 8 * _NOISE_BLOCK
    with tqdm(total=n, desc=desc, unit="star", disable=not progress) as bar:
        for s in range(0, n, step):
            e = min(s + step, n)
            spectra[s:e], spectra_err[s:e] = _noisy_spectra(columns, s, e, key, dib)
            bar.update(e - s)
    attrs = dict(attrs, dib_strength=float(dib))
    return _dataset(columns, units, attrs, spectra, spectra_err)


def simulate_survey(n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                    dib=False, selection_slope=0.3, mag_error=0.02, progress=False):
    r"""Simulate a mock APOGEE x Gaia DR2 survey in memory.

    Parameters
    ----------
    n_stars : int
    seed : int or None
        Seeds everything (a :class:`numpy.random.SeedSequence`); ``None`` draws
        fresh entropy, recorded in ``attrs['seed']``.
    snr : 'apogee', float, (low, high) or callable
        ``'apogee'`` (default): S/N = 100 at Ks = 12.05 scaled with flux, with a
        0.12 dex spread; a number: that S/N for all; a pair: log-uniform in the
        range; a callable ``f(rng, n) -> array``.
    zeropoint : Quantity, 'constant', 'quadratic', 0 or callable
        Injected parallax zero-point.  Default (``None``/``'constant'``):
        ``PAPER_ZEROPOINT_UAS`` (-52.3 uas).  ``'quadratic'``: the paper's eq. 7
        in G (:func:`paper_quadratic_zeropoint` for others); a callable gets the
        catalogue columns (``phot_g_mean_mag``, ``bp_rp``, ``teff``, ...) and
        returns mas (or an angle Quantity).
    fractions : dict, optional
        Population fractions ``{'rgb', 'rc', 'ms'}``; default :data:`DEFAULT_FRACTIONS`.
    mag_limits : (float, float)
        Apparent Ks window of the survey.
    dib : bool or float
        Add the 15273 A diffuse interstellar band (strength relative to
        Zasowski et al. 2015); off by default, so spectra carry no distance
        information.
    selection_slope : float
        Extra targeting weight :math:`10^{-s\,K_s}` on the distance draw,
        favouring bright stars as APOGEE's short cohorts do (0: a pure
        magnitude-limited sample).
    mag_error : float
        Gaussian noise of the catalogue Ks (mag).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Dataset
        Columns: spectra, spectra_err, mag, mag_ext, parallax, parallax_error,
        phot_g_mean_mag, bp_rp, teff, logg, fe_h, alpha_fe, c_n, snr, ra, dec,
        apogee_id, population and the truth: true_parallax, true_zeropoint,
        true_fakemag, true_distance, true_mass, true_absmag_ks, true_mag,
        true_luminosity.
    """
    columns, units, attrs = simulate_catalogue(n_stars, seed, snr, zeropoint, fractions, mag_limits,
                                               selection_slope, mag_error)
    key = _seed_sequence(seed if seed is not None else int(attrs["seed"]))
    return _with_spectra(columns, units, attrs, key, _dib_strength(dib), progress, "simulating spectra")


def _dib_strength(dib):
    if isinstance(dib, bool):
        return 1.0 if dib else 0.0
    if not isinstance(dib, numbers.Real) or not np.isfinite(dib) or dib < 0:
        raise ValueError(f"dib must be a bool or a non-negative number, got {dib!r}")
    return float(dib)


def _write(path, columns, units, attrs, key, dib, overwrite, chunk_size, progress):
    import h5py
    from tqdm.auto import tqdm

    from .io.atomic import atomic_path
    from .io.dataset import write_dataset

    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    step = -(-int(chunk_size) // _NOISE_BLOCK) * _NOISE_BLOCK
    n = len(columns["teff"])
    attrs = dict(attrs, dib_strength=float(dib))
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_dataset(tmp, _dataset(columns, units, attrs), overwrite=True)
        with h5py.File(tmp, "a") as f:
            shape, chunks = (n, APOGEE_SPECTRUM_LENGTH), (min(n, 256), APOGEE_SPECTRUM_LENGTH)
            out = f.create_dataset("spectra", shape=shape, dtype=np.float32, chunks=chunks)
            out_err = f.create_dataset("spectra_err", shape=shape, dtype=np.float32, chunks=chunks)
            with tqdm(total=n, desc=f"writing {os.path.basename(os.fspath(path))}", unit="star",
                      disable=not progress) as bar:
                for s in range(0, n, step):
                    e = min(s + step, n)
                    out[s:e], out_err[s:e] = _noisy_spectra(columns, s, e, key, dib)
                    bar.update(e - s)
    return os.fspath(path)


def write_survey(path, n_stars, seed=0, snr="apogee", zeropoint=None, fractions=None, mag_limits=(7.0, 12.5),
                 dib=False, selection_slope=0.3, mag_error=0.02, overwrite=False, chunk_size=2048, progress=True):
    """Simulate a survey and write it in the HDF5 dataset format, streaming spectra in chunks.

    Identical (bit for bit) to ``simulate_survey(...).write(path)`` for any
    ``chunk_size``, but holds only one chunk of spectra in memory.  The file is
    written atomically.

    Parameters
    ----------
    path : str
        Output ``.h5`` file.
    chunk_size : int
        Stars per chunk (rounded up to a multiple of 256).
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.
    progress : bool
        Show a tqdm bar.
    **others
        As :func:`simulate_survey`.

    Returns
    -------
    str
        ``path``.
    """
    columns, units, attrs = simulate_catalogue(n_stars, seed, snr, zeropoint, fractions, mag_limits,
                                               selection_slope, mag_error)
    key = _seed_sequence(seed if seed is not None else int(attrs["seed"]))
    return _write(path, columns, units, attrs, key, _dib_strength(dib), overwrite, chunk_size, progress)


def _train_test_catalogues(n_train, n_test, seed, snr_split, kwargs):
    """Draw pools of stars until there are n_train with SNR > split and n_test with SNR < split."""
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    if kwargs.get("snr", "apogee") != "apogee":
        raise ValueError("simulate_train_test splits the 'apogee' S/N model at snr_split; do not pass snr")
    base = _seed_sequence(seed)
    pools, n_hi, n_lo = [], 0, 0
    for k in range(64):
        size = max(2 * (n_train + n_test) // (k + 1), 512)
        cols, units, attrs = simulate_catalogue(size, np.random.SeedSequence(base.entropy, spawn_key=(1, k)), **kwargs)
        pools.append(cols)
        n_hi += int(np.sum(cols["snr"] > snr_split))
        n_lo += int(np.sum(cols["snr"] < snr_split))
        if n_hi >= n_train and n_lo >= n_test:
            break
    else:
        raise RuntimeError("could not draw enough stars on both sides of the S/N split; check mag_limits")
    pool = {name: np.concatenate([p[name] for p in pools]) for name in pools[0]}
    hi = np.flatnonzero(pool["snr"] > snr_split)[:n_train]
    lo = np.flatnonzero(pool["snr"] < snr_split)[:n_test]
    attrs.update(seed=str(base.entropy), seed_spawn_key=[], zeropoint_mean_uas=None)
    out = []
    for part, (index, label) in enumerate(((hi, f"train (snr > {snr_split:g})"), (lo, f"test (snr < {snr_split:g})"))):
        cols = {name: values[index] for name, values in pool.items()}
        cols["apogee_id"] = _apogee_ids(cols["ra"], cols["dec"])
        a = dict(attrs, split=label, zeropoint_mean_uas=float(np.mean(cols["true_zeropoint"]) * 1000.0))
        out.append((cols, units, a, np.random.SeedSequence(base.entropy, spawn_key=(2, part))))
    return out


def simulate_train_test(n_train, n_test, seed=0, snr_split=PAPER_SNR_SPLIT, dib=False, progress=False, **kwargs):
    """The paper's setup: one mock survey split into a high-S/N training and a low-S/N test set.

    Stars are drawn with the ``'apogee'`` S/N model (S/N tied to Ks), so the
    test set is fainter and more distant, as in the paper (35,112 training
    stars with S/N > 200, 33,468 test stars with S/N < 200).

    Parameters
    ----------
    n_train, n_test : int
    seed : int
    snr_split : float
    dib, progress : as :func:`simulate_survey`
    **kwargs
        ``zeropoint``, ``fractions``, ``mag_limits``, ``selection_slope``, ``mag_error``.

    Returns
    -------
    train, test : Dataset
    """
    dib = _dib_strength(dib)
    return tuple(
        _with_spectra(cols, units, attrs, key, dib, progress, f"simulating {attrs['split'].split()[0]} spectra")
        for cols, units, attrs, key in _train_test_catalogues(n_train, n_test, seed, snr_split, kwargs)
    )


def write_train_test(train_path, test_path, n_train, n_test, seed=0, snr_split=PAPER_SNR_SPLIT, dib=False,
                     overwrite=False, chunk_size=2048, progress=True, **kwargs):
    """Write :func:`simulate_train_test`'s two datasets (same content) to HDF5 files, streaming spectra.

    Returns
    -------
    train_path, test_path : str
    """
    dib = _dib_strength(dib)
    for p in (train_path, test_path):
        if os.path.exists(p) and not overwrite:
            raise FileExistsError(f"{p} already exists; pass overwrite=True to replace it")
    return tuple(
        _write(path, cols, units, attrs, key, dib, overwrite, chunk_size, progress)
        for path, (cols, units, attrs, key) in zip(
            (train_path, test_path), _train_test_catalogues(n_train, n_test, seed, snr_split, kwargs)
        )
    )


# ---------------------------------------------------------------------------
# Figure


def plot_survey(dataset, path):
    """Overview figure of a mock survey (PNG): Kiel diagram, M_Ks, distances, S/N, parallax errors, zero-point, spectra.

    Parameters
    ----------
    dataset : Dataset
        A simulated dataset (needs the ``true_*`` columns).
    path : str
        Output PNG (written atomically, replaced if it exists).

    Returns
    -------
    str
        ``path``.
    """
    from .plots import _plt, _save

    need = ("teff", "logg", "population", "true_absmag_ks", "true_distance", "mag", "snr",
            "phot_g_mean_mag", "parallax_error", "true_zeropoint", "mag_ext")
    missing = [c for c in need if c not in dataset]
    if missing:
        from .io.dataset import DatasetError

        raise DatasetError(f"plot_survey needs the simulator's column(s) {missing}")
    plt = _plt()
    fig, ax = plt.subplots(2, 4, figsize=(18, 8))
    pop = np.asarray(dataset["population"])
    colours = {"rgb": "C3", "rc": "C1", "ms": "C0"}
    for name, colour in colours.items():
        sel = pop == name
        ax[0, 0].scatter(dataset["teff"][sel], dataset["logg"][sel], s=2, c=colour, label=name)
        ax[0, 1].scatter(dataset["teff"][sel], dataset["true_absmag_ks"][sel], s=2, c=colour)
    ax[0, 0].set(xlabel="Teff (K)", ylabel="log g", title="Kiel diagram")
    ax[0, 0].invert_xaxis()
    ax[0, 0].invert_yaxis()
    ax[0, 0].legend(markerscale=4)
    ax[0, 1].axhline(-1.61, color="k", ls=":", lw=1, label="red clump $M_{K_s}=-1.61$")
    ax[0, 1].set(xlabel="Teff (K)", ylabel="$M_{K_s}$", title="absolute magnitude")
    ax[0, 1].invert_xaxis()
    ax[0, 1].invert_yaxis()
    ax[0, 1].legend()
    ax[0, 2].hist(np.log10(dataset["true_distance"]), bins=50, color="0.4")
    ax[0, 2].set(xlabel="log10 distance (pc)", ylabel="stars", title="distances")
    ax[0, 3].scatter(dataset["mag"], dataset["snr"], s=2, c=dataset["mag_ext"], cmap="viridis")
    ax[0, 3].axhline(PAPER_SNR_SPLIT, color="k", ls=":", lw=1)
    ax[0, 3].set(xlabel="$K_s$ (colour: $A_{K_s}$)", ylabel="S/N", yscale="log", title="S/N vs magnitude")
    g = dataset["phot_g_mean_mag"]
    ax[1, 0].scatter(g, dataset["parallax_error"], s=2, c="0.5", label="simulated")
    real_g, real_err, edges, _ = _dr2_errors()
    centres = 0.5 * (edges[1:] + edges[:-1])
    med = [np.median(real_err[(real_g >= lo) & (real_g < hi)]) for lo, hi in zip(edges[:-1], edges[1:])]
    ax[1, 0].plot(centres, med, "k-", lw=1, label="DR2 APOGEE median")
    ax[1, 0].set(xlabel="G", ylabel="parallax error (mas)", yscale="log", title="Gaia DR2 parallax errors")
    ax[1, 0].legend()
    ax[1, 1].scatter(g, np.asarray(dataset["true_zeropoint"]) * 1000.0, s=2, c="C2")
    ax[1, 1].set(xlabel="G", ylabel="injected zero-point (uas)", title=dataset.attrs.get("zeropoint_model", ""))
    ax[1, 1].title.set_fontsize(8)
    lam = _wavelength()
    window = (lam > 15200) & (lam < 15350)
    if "spectra" in dataset:
        for i, name in enumerate(colours):
            idx = np.flatnonzero(pop == name)
            if len(idx):
                ax[1, 2].plot(lam[window], dataset["spectra"][idx[0], window] + 0.4 * i, lw=0.7,
                              c=colours[name], label=f"{name} Teff={dataset['teff'][idx[0]]:.0f}")
        ax[1, 2].axvline(DIB_WAVELENGTH, color="k", ls=":", lw=1)
        ax[1, 2].set(xlabel="wavelength (A)", ylabel="flux + offset", title="spectra (dotted: DIB)")
        ax[1, 2].legend(fontsize=7)
    ax[1, 3].hist(dataset["mag_ext"], bins=50, color="C4")
    ax[1, 3].set(xlabel="$A_{K_s}$", ylabel="stars", title="extinction")
    fig.suptitle(f"mock survey: {len(dataset)} stars")
    fig.tight_layout()
    return _save(fig, path)
