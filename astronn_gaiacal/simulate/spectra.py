"""The simulator's spectral model: continuum-normalised APOGEE spectra as a smooth function of the labels.

:func:`model_spectra` gives noise-free spectra on APOGEE's 7514-pixel grid;
:func:`noisy_spectra` adds Gaussian noise at each star's S/N, drawn per block
of :data:`NOISE_BLOCK` stars so that chunked writing never changes it.
``docs/simulation.rst`` describes the model.
"""
import functools
import os

import numpy as np
from astroNN.apogee import aspcap_mask, wavelength_solution

from ..constants import APOGEE_SPECTRUM_LENGTH, DEFAULT_BAND
from .photometry import EXTINCTION_RATIOS, to_kelvin
from .seeds import stream

__all__ = [
    "DIB_EW_PER_AV",
    "DIB_SIGMA",
    "DIB_WAVELENGTH",
    "NOISE_BLOCK",
    "REFERENCE_LABELS",
    "TEMPLATE_FILE",
    "model_spectra",
    "noisy_spectra",
    "wavelength",
]

#: 15273 A DIB (Zasowski et al. 2015): rest wavelength (vacuum, A), W/A_V (A/mag) and adopted Gaussian sigma (A).
DIB_WAVELENGTH, DIB_EW_PER_AV, DIB_SIGMA = 15272.42, 0.1, 1.7

#: Labels at which the model spectrum equals the template (near the mean of the paper's training set).
REFERENCE_LABELS = {"teff": 4750.0, "logg": 2.6, "fe_h": -0.1, "alpha_fe": 0.05, "c_n": -0.35}

_SPECTRAL_MODEL_SEED = 20190417  # the spectral model is fixed; survey seeds only draw stars and noise
#: Spectra noise is drawn per block of this many stars, so chunking never changes it.
NOISE_BLOCK = 256

_RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources")
#: The model's template: the mean continuum-normalised spectrum of the paper's DR14 training set.
TEMPLATE_FILE = os.path.join(_RESOURCES, "mean_contnorm_spectrum_dr14_training_set.npy")


@functools.lru_cache(maxsize=1)
def wavelength():
    """Vacuum wavelengths (Angstrom) of the 7514 pixels (APOGEE DR14 grid, detector gaps removed)."""
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
    x = (wavelength() - DIB_WAVELENGTH) / DIB_SIGMA
    return np.where(np.abs(x) < 4.0, np.exp(-0.5 * x**2), 0.0).astype(np.float32)


def model_spectra(teff, logg, fe_h, alpha_fe=None, c_n=None, a_ks=None, dib=0.0):
    r"""Noise-free continuum-normalised spectra on APOGEE's 7514-pixel grid.

    Each pixel is :math:`f = c\,e^{-\tau}` with the template's continuum
    :math:`c` and an optical depth
    :math:`\tau = \tau_0 \exp\big(\sum_k a_k x_k\big)`, where :math:`\tau_0`
    reproduces the mean DR14 spectrum at :data:`~astronn_gaiacal.simulate.spectra.REFERENCE_LABELS` and
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
    x = np.atleast_2d(_design(to_kelvin(teff), logg, fe_h, alpha_fe, c_n).astype(np.float32))
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
        a_v = a_ks / EXTINCTION_RATIOS[DEFAULT_BAND]
        depth = float(dib) * DIB_EW_PER_AV * a_v / (DIB_SIGMA * np.sqrt(2.0 * np.pi))
        tau += depth[:, None] * _dib_profile()[None, :]
    flux = np.exp(np.negative(tau, out=tau), out=tau)
    flux *= continuum
    return flux


def noisy_spectra(columns, start, stop, key, dib):
    """Spectra with noise, and their errors, of the stars ``start:stop`` of a survey.

    Parameters
    ----------
    columns : dict
        The survey's columns (``teff``, ``logg``, ``fe_h``, ``alpha_fe``, ``c_n``, ``mag_ext``, ``snr``).
    start, stop : int
        Rows; ``start`` is a multiple of :data:`NOISE_BLOCK`.
    key : numpy.random.SeedSequence
        The survey's seed sequence; noise comes from its ``'spectra'`` stream, one sub-stream per block.
    dib : float
        DIB strength (see :func:`model_spectra`).

    Returns
    -------
    spectra, spectra_err : ndarray, shape (stop - start, 7514), float32
    """
    if start % NOISE_BLOCK:
        raise ValueError(f"start must be a multiple of {NOISE_BLOCK}")
    sl = slice(start, stop)
    flux = model_spectra(
        columns["teff"][sl], columns["logg"][sl], columns["fe_h"][sl], columns["alpha_fe"][sl],
        columns["c_n"][sl], a_ks=columns["mag_ext"][sl], dib=dib,
    )
    err = np.sqrt(np.maximum(flux / _spectral_coefficients()[0], np.float32(0.05)))
    err /= columns["snr"][sl, None].astype(np.float32)
    for b0 in range(start, stop, NOISE_BLOCK):
        b1 = min(b0 + NOISE_BLOCK, stop)
        noise = stream(key, "spectra", b0 // NOISE_BLOCK).standard_normal((b1 - b0, flux.shape[1]), dtype=np.float32)
        flux[b0 - start:b1 - start] += noise * err[b0 - start:b1 - start]
    return flux, err
