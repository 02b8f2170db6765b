"""A deliberately simple generator of stars for model tests (the full simulator is astronn_gaiacal.simulate).

Fakemag is log-uniform over the red-giant range, the spectrum encodes log L linearly in a fixed
pixel pattern plus Gaussian noise, magnitudes are uniform, and Gaia parallaxes are the true
parallax plus an injected zero-point plus Gaussian noise.
"""
import numpy as np

from astronn_gaiacal import register
from astronn_gaiacal.models import ApogeeGaiaBCNN

N_PIX = 256


@register
class ToyApogeeBCNN(ApogeeGaiaBCNN):
    """The APOGEE model on 256-pixel toy spectra, so tests can train to convergence quickly."""

    spectrum_length = N_PIX


def toy_survey(n, seed=0, zeropoint=-0.1, n_pixels=7514, signal=0.05, noise=0.005):
    rng = np.random.default_rng(seed)
    log_l = rng.uniform(1.0, 2.0, n)
    fakemag = 10**log_l
    mag = rng.uniform(8.0, 12.5, n)
    g = mag + rng.uniform(1.8, 3.2, n)
    bp_rp = rng.uniform(1.0, 2.5, n)
    teff = rng.uniform(4000, 5200, n)
    true_plx = fakemag * 10 ** (-mag / 5)
    plx_err = rng.uniform(0.02, 0.06, n)
    features = {"phot_g_mean_mag": g, "bp_rp": bp_rp, "teff": teff}
    zp = zeropoint(features) if callable(zeropoint) else np.full(n, float(zeropoint))
    plx = true_plx + zp + rng.normal(0.0, plx_err)
    pattern = np.sin(np.linspace(0, 60, n_pixels)) * np.cos(np.linspace(0, 7, n_pixels))
    spectra = 1 + signal * np.outer((log_l - 1.5) / 0.29, pattern) + rng.normal(0, noise, (n, n_pixels))
    return {
        "spectra": spectra.astype(np.float32),
        "mag": mag,
        "parallax": plx,
        "parallax_error": plx_err,
        "true_parallax": true_plx,
        "fakemag": fakemag,
        "zeropoint": zp,
        "features": features,
    }


def zeropoint_tolerance(parallax, parallax_error, fakemag_ratio, n_sigma=5.0):
    """Tolerance on a recovered constant zero-point, from the stars and their errors.

    A constant zero-point is measured jointly with the luminosity scale: to first order the
    model predicts (1 + b) L 10^(-m/5) + zp, and zp is degenerate with the scale b along the
    parallaxes.  The tolerance is ``n_sigma`` times the Fisher uncertainty of zp marginalised
    over b (per-star variance: Gaia error (+) the learned luminosity scatter times the parallax),
    plus the shift ``|b| * mean parallax`` produced by the luminosity-scale bias ``b`` the network
    actually has (measured against the true fakemag).

    Parameters
    ----------
    parallax, parallax_error : ndarray
        True parallaxes and Gaia errors (mas).
    fakemag_ratio : ndarray
        Predicted / true fakemag of the same stars.

    Returns
    -------
    tolerance, sigma_marginal : float (mas)
    """
    scatter = 1.4826 * np.median(np.abs(fakemag_ratio - np.median(fakemag_ratio)))
    bias = np.median(fakemag_ratio) - 1
    w = 1.0 / (parallax_error**2 + (scatter * parallax) ** 2)
    fisher = np.array([[np.sum(w * parallax**2), np.sum(w * parallax)], [np.sum(w * parallax), np.sum(w)]])
    sigma = float(np.sqrt(np.linalg.inv(fisher)[1, 1]))
    mean_parallax = float(np.sum(w * parallax) / np.sum(w))
    return n_sigma * sigma + abs(bias) * mean_parallax, sigma


def toy_model(offset="constant", epochs=5, lr=2e-3):
    """A quiet :class:`ToyApogeeBCNN` (a picklable factory with :func:`functools.partial`)."""
    net = ToyApogeeBCNN(offset=offset, lr=lr)
    net.max_epochs, net.verbose = epochs, 0
    return net


def compiled_toy(dropout_rate, **attrs):
    """A compiled, untrained :class:`ToyApogeeBCNN` (constant offset) with unit normalisation; ``attrs`` set first."""
    net = ToyApogeeBCNN(offset="constant", dropout_rate=dropout_rate)
    for key, value in attrs.items():
        setattr(net, key, value)
    net.verbose = 0
    net._input_shape, net._labels_shape = {"input": (N_PIX + 1, 1)}, {"output": 1}
    net.input_mean = {"input": np.r_[np.ones(N_PIX), 10.0]}
    net.input_std = {"input": np.ones(N_PIX + 1)}
    net.labels_mean, net.labels_std = {"output": np.array([0.0])}, {"output": np.array([1.0])}
    net.compile()
    return net
