r"""Per-star uncertainties that mean what they say: a scale fitted on Gaia parallaxes, no truth needed.

The network's reported fakemag uncertainty (MC-dropout spread and the
predictive-variance head added in quadrature) is not calibrated by
construction: the predictive head is trained on predictions that carry
dropout noise, which MC dropout then adds a second time (docs/calibration.rst
has the measurements).  This module fits one scale :math:`k` for the total
uncertainty on stars the network was not trained on, with their Gaia
parallaxes: for the right :math:`k`

.. math::

    z = \frac{\varpi_{\rm Gaia} - \varpi_0 - \varpi_{\rm NN}}
             {\sqrt{\sigma_{\rm Gaia}^2 + (k\,\sigma_{\rm NN})^2}}

is unit normal.  :math:`k` maximises the Gaussian likelihood of the
:math:`z`, with outliers (:math:`|z - {\rm median}\,z| >` :data:`CLIP_Z`, as in
real catalogues) left out iteratively, starting from the :math:`k` at which the
robust standard deviation of :math:`z` (:func:`~astronn_gaiacal.metrics.sigma_mad`)
is 1; on 300 stars the clipped likelihood is 1.7 times more precise than the
robust standard deviation alone (5 % against 9 %, docs/calibration.rst).  Its
error comes from a bootstrap over the stars.  Every output of a model
(``predict``, ``predict_parallax``, ``predict_distance``, the catalogue, the
partitioned predictions) multiplies all uncertainty parts by :math:`k`.

Which stars: by default the validation split of ``fit`` (a fraction
``val_size``, 10 %, of the stars given to ``fit``, chosen with the seed
:attr:`CalibratedUncertainty.validation_seed` so that all members of an
ensemble trained on the same stars hold out the same ones).  The network never
takes a gradient step on them (astroNN only monitors their loss to lower the
learning rate).  :meth:`CalibratedUncertainty.calibrate_uncertainties` takes any
other held-out stars.

**S/N.**  The network's uncertainty does not grow with the spectral noise, its
error does.  Given the stars' spectrum errors and S/N, ``calibrate_uncertainties``
also fits :math:`k({\rm S/N})^2 = k_\infty^2 + (s/{\rm S/N})^2` on the same
stars at their S/N and with noise injected into their spectra down to
:data:`INJECTION_SNR` (no truth needed); :meth:`UncertaintyCalibration.scale_at`.
"""
import contextlib
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
from astropy import units as u
from scipy.optimize import brentq, minimize
from scipy.special import erf, erfinv

from ..constants import TRAINING_NOISE_SNR, is_missing
from ..conversions import mas_values
from ..metrics import sigma_mad
from ..nn.noise import usable_errors
from .inputs import feature_matrix, spectra_and_magnitude
from .luminosity_check import checked, luminosity_bias, warn_luminosity_bias

__all__ = ["CLIP_Z", "INJECTION_SNR", "MIN_CALIBRATION_STARS", "UNCERTAINTY_KEY", "VALIDATION_SEED",
           "CalibratedUncertainty", "UncalibratedWarning", "UncertaintyCalibration", "coverage", "degrade_spectra",
           "fit_snr_uncertainty_scale", "fit_uncertainty_scale", "gaia_z_scores", "seeded_validation_split",
           "snr_scale", "validation_indices", "warn_uncalibrated"]

#: Key of the calibration in a model's plugin section and in an ensemble manifest.
UNCERTAINTY_KEY = "uncertainty_calibration"
#: Fewest stars with a Gaia parallax for a calibration.
MIN_CALIBRATION_STARS = 50
#: Seed of the validation split of ``fit`` (the same for every ensemble member, so they hold out the same stars).
VALIDATION_SEED = 0
#: Stars whose z-score is further than this from the median are outliers, left out of the likelihood.
CLIP_Z = 4.0
#: How the scale is fitted (recorded with it).
METHOD = "Gaussian maximum likelihood of the Gaia z-scores of held-out stars, |z - median| > 4 clipped"
#: S/N the validation stars' spectra are degraded to for the S/N-dependent scale (each star only below its own S/N).
INJECTION_SNR = (TRAINING_NOISE_SNR, 70.0, 100.0, 140.0)
#: Seed of the injected noise.
INJECTION_SEED = 0
#: How the S/N-dependent scale is fitted (recorded with it).
SNR_METHOD = ("k(S/N)^2 = k_inf^2 + (s / S/N)^2: Gaussian maximum likelihood of the Gaia z-scores of held-out stars "
              "at their own S/N and with noise injected into their spectra, |z - median| > 4 clipped")


class UncalibratedWarning(UserWarning):
    """A model's uncertainties are used without a calibration (scale 1)."""


@dataclass(frozen=True)
class UncertaintyCalibration:
    """The fitted scale of a model's uncertainties and what it was fitted on.

    Attributes
    ----------
    scale, scale_error : float
        :math:`k` and its bootstrap standard error.
    n_stars : int
        Held-out stars with a Gaia parallax used.
    robust_std_before, robust_std_after : float
        sigma_MAD of the z-scores with :math:`k = 1` and with the fitted :math:`k` (1 by construction).
    median_z : float
        Median z-score (a residual zero-point or luminosity-scale offset, in units of the errors).
    coverage_1sigma, coverage_2sigma : float
        Fraction of those stars with :math:`|z| < 1` and :math:`< 2` after calibration.
    stars : str
        Which stars (e.g. ``'validation split of fit (300 of 3000, seed 0)'``).
    zeropoint_mas : float
        Median zero-point subtracted from the Gaia parallaxes.
    method, n_clipped : str, int
        How it was fitted; the stars left out of the likelihood as outliers.
    luminosity_check : dict or None
        :func:`~astronn_gaiacal.models.luminosity_check.luminosity_bias` on the same stars.
    """

    scale: float
    scale_error: float
    n_stars: int
    robust_std_before: float
    robust_std_after: float
    median_z: float
    coverage_1sigma: float
    coverage_2sigma: float
    stars: str
    zeropoint_mas: float
    method: str = METHOD
    n_clipped: int = 0
    #: The S/N-dependent scale (:func:`fit_snr_uncertainty_scale`'s dict), or ``None``: the constant ``scale``.
    snr_dependence: dict = None
    luminosity_check: dict = None

    def scale_at(self, snr=None):
        """The scale at each star's S/N (:func:`snr_scale`); the constant ``scale`` without an S/N form, where
        ``snr`` is ``None``, or for stars whose S/N is missing (NaN/-9999) or not positive."""
        if self.snr_dependence is None or snr is None:
            return self.scale
        snr = np.asarray(snr, float)
        known = _usable(snr) & (snr > 0)
        k = snr_scale(np.where(known, snr, 1.0), self.snr_dependence["scale_inf"], self.snr_dependence["noise"])
        return np.where(known, k, self.scale)

    def to_dict(self):
        """JSON-ready dict."""
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, block):
        """From :meth:`to_dict`'s output (``None`` gives ``None``)."""
        return None if block is None else cls(**{**block, "luminosity_check": checked(block.get("luminosity_check"))})


def gaia_z_scores(parallax, parallax_error, model_parallax, model_error, zeropoint=0.0, scale=1.0):
    """Gaia z-scores :math:`(\\varpi_{\\rm Gaia} - \\varpi_0 - \\varpi_{\\rm NN})
    / \\sqrt{\\sigma_{\\rm Gaia}^2 + (k\\sigma_{\\rm NN})^2}`.

    All parallaxes in the same unit (plain arrays or Quantities).
    """
    plx, plx_err, nn, nn_err, zp = (a.to_value(u.mas) if isinstance(a, u.Quantity) else np.asarray(a, float)
                                    for a in (parallax, parallax_error, model_parallax, model_error, zeropoint))
    return (plx - zp - nn) / np.sqrt(plx_err**2 + (scale * nn_err) ** 2)


def _usable(*arrays):
    ok = np.ones(np.shape(arrays[0]), bool)
    for a in arrays:
        ok &= np.isfinite(a) & ~is_missing(a)
    return ok


_UNCONSTRAINED = ("the Gaia errors alone already explain the scatter of the parallax differences: the network's "
                  "uncertainty cannot be calibrated on these stars (too few with precise parallaxes)")


def _root(f, what):
    """The root of a function decreasing from f(0) > 0 (else ``ValueError``) to negative values."""
    if f(0.0) <= 0:
        raise ValueError(_UNCONSTRAINED)
    hi = 1.0
    while f(hi) > 0:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"no finite uncertainty scale {what}")
    return brentq(f, 0.0, hi, xtol=1e-7, rtol=1e-9)


def _robust_scale(delta, gaia_err, nn_err):
    """The k > 0 with sigma_MAD(delta / sqrt(gaia_err^2 + k^2 nn_err^2)) = 1."""
    return _root(lambda k: sigma_mad(delta / np.sqrt(gaia_err**2 + (k * nn_err) ** 2)) - 1.0,
                 "makes the z-scores' sigma_MAD 1")


def _likelihood_scale(delta, gaia_err, nn_err):
    """The k that maximises the Gaussian likelihood of delta ~ N(0, gaia_err^2 + k^2 nn_err^2)."""
    def score(k):  # d log L / dk divided by k
        var = gaia_err**2 + (k * nn_err) ** 2
        return np.sum(nn_err**2 * (delta**2 / var**2 - 1.0 / var))

    return _root(score, "maximises the likelihood")


def _solve_scale(delta, gaia_err, nn_err):
    """Maximum-likelihood k with outliers (|z - median z| > CLIP_Z) clipped iteratively; and the number clipped."""
    k = _robust_scale(delta, gaia_err, nn_err)
    keep = None
    for _ in range(50):
        z = delta / np.sqrt(gaia_err**2 + (k * nn_err) ** 2)
        new = np.abs(z - np.median(z)) < CLIP_Z
        if keep is not None and np.array_equal(new, keep):
            break
        keep = new
        k = _likelihood_scale(delta[keep], gaia_err[keep], nn_err[keep])
    return k, int((~keep).sum())


def fit_uncertainty_scale(parallax, parallax_error, model_parallax, model_error, zeropoint=0.0, n_bootstrap=200,
                          seed=0, stars="given stars"):
    """Fit the scale :math:`k` of the model uncertainties so that the Gaia z-scores are unit normal.

    Gaussian maximum likelihood of the z-scores, stars with
    :math:`|z - {\\rm median}\\,z| >` :data:`CLIP_Z` left out iteratively,
    started from the :math:`k` at which their sigma_MAD is 1.

    Parameters
    ----------
    parallax, parallax_error : array_like [mas]
        Gaia catalogue parallaxes and errors of held-out stars (NaN/-9999: left out).
    model_parallax, model_error : array_like [mas]
        The network's parallaxes :math:`L\\,10^{-m/5}` and their (uncalibrated) total uncertainties.
    zeropoint : float or array_like [mas]
        Zero-point subtracted from the Gaia parallaxes (convention
        ``parallax_gaia = parallax_true + zeropoint``).
    n_bootstrap : int
        Bootstrap resamplings of the stars for ``scale_error``.
    seed : int
        Seed of the bootstrap.
    stars : str
        Description of the stars, recorded.

    Returns
    -------
    UncertaintyCalibration

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_CALIBRATION_STARS` usable stars, or stars whose
        Gaia errors alone explain the scatter (the scale is then unconstrained).
    """
    arrays = [np.broadcast_to(np.asarray(a, float), np.shape(parallax)).ravel()
              for a in (parallax, parallax_error, model_parallax, model_error, zeropoint)]
    plx, plx_err, nn, nn_err, zp = arrays
    ok = _usable(plx, plx_err, nn, nn_err, zp) & (plx_err > 0) & (nn_err > 0)
    n = int(ok.sum())
    if n < MIN_CALIBRATION_STARS:
        raise ValueError(f"{n} stars with a Gaia parallax and a model uncertainty; the uncertainty calibration "
                         f"needs at least {MIN_CALIBRATION_STARS}")
    delta, g_err, m_err = (plx - zp - nn)[ok], plx_err[ok], nn_err[ok]
    scale, n_clipped = _solve_scale(delta, g_err, m_err)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(int(n_bootstrap)):
        i = rng.integers(0, n, n)
        with contextlib.suppress(ValueError):
            boot.append(_solve_scale(delta[i], g_err[i], m_err[i])[0])
    z_before = delta / np.hypot(g_err, m_err)
    z = delta / np.sqrt(g_err**2 + (scale * m_err) ** 2)
    return UncertaintyCalibration(
        scale=float(scale), scale_error=float(np.std(boot, ddof=1)) if len(boot) > 1 else float("nan"),
        n_stars=n, robust_std_before=sigma_mad(z_before), robust_std_after=sigma_mad(z),
        median_z=float(np.median(z)), coverage_1sigma=float(np.mean(np.abs(z) < 1)),
        coverage_2sigma=float(np.mean(np.abs(z) < 2)), stars=str(stars), zeropoint_mas=float(np.median(zp[ok])),
        n_clipped=n_clipped,
    )


def snr_scale(snr, scale_inf, noise):
    """The S/N-dependent scale :math:`k = \\sqrt{k_\\infty^2 + (s/{\\rm S/N})^2}`."""
    return np.sqrt(scale_inf**2 + (noise / np.asarray(snr, float)) ** 2)


#: S/N at which the noise term is parametrised in the fit (conditioning only).
_SNR_PIVOT = 100.0


def _snr_nll(params, delta, g2, m2, x):
    """Negative log-likelihood and its gradient in (k_inf^2, (s/_SNR_PIVOT)^2); x = (_SNR_PIVOT / S/N)^2."""
    var = g2 + (params[0] + params[1] * x) * m2
    r = 1.0 / var - delta**2 / var**2
    return 0.5 * np.sum(delta**2 / var + np.log(var)), 0.5 * np.array([np.sum(m2 * r), np.sum(m2 * x * r)])


def _solve_snr_scale(delta, g_err, m_err, snr, start):
    """Maximum-likelihood (k_inf, s) with outliers clipped iteratively as in :func:`_solve_scale`; and the number clipped."""
    g2, m2, x = g_err**2, m_err**2, (_SNR_PIVOT / snr) ** 2
    params, keep = np.array([start**2, 0.01 * start**2]), None
    for _ in range(50):
        sel = slice(None) if keep is None else keep
        params = minimize(_snr_nll, params, args=(delta[sel], g2[sel], m2[sel], x[sel]), jac=True, method="L-BFGS-B",
                          bounds=[(1e-12, None), (0.0, None)]).x
        z = delta / np.sqrt(g2 + (params[0] + params[1] * x) * m2)
        new = np.abs(z - np.median(z)) < CLIP_Z
        if keep is not None and np.array_equal(new, keep):
            break
        keep = new
    return float(np.sqrt(params[0])), float(_SNR_PIVOT * np.sqrt(params[1])), int((~keep).sum())


def fit_snr_uncertainty_scale(parallax, parallax_error, model_parallax, model_error, snr, zeropoint=0.0, star=None,
                              n_bootstrap=200, seed=0):
    """Fit the S/N-dependent scale :math:`k({\\rm S/N})^2 = k_\\infty^2 + (s/{\\rm S/N})^2` on Gaia z-scores.

    As :func:`fit_uncertainty_scale`, with the scale of each row at its S/N.
    Rows may be several versions of the same star (its spectrum with noise
    injected, :func:`degrade_spectra`): ``star`` says which, and the bootstrap
    resamples stars with all their rows.

    Parameters
    ----------
    parallax, parallax_error, model_parallax, model_error, zeropoint : array_like [mas]
        As :func:`fit_uncertainty_scale`, one value per row.
    snr : array_like
        S/N of the spectrum behind each row's model parallax.
    star : array_like of int, optional
        Star of each row (default: every row its own star).
    n_bootstrap, seed : int

    Returns
    -------
    dict
        ``scale_inf``, ``scale_inf_error``, ``noise`` (:math:`s`), ``noise_error``, ``n_rows``, ``n_stars``,
        ``n_clipped``, ``snr_range`` (of the rows used) and ``method``.

    Raises
    ------
    ValueError
        The reasons of :func:`fit_uncertainty_scale`.
    """
    shape = np.shape(parallax)
    plx, plx_err, nn, nn_err, zp, sn = (np.broadcast_to(np.asarray(a, float), shape).ravel()
                                        for a in (parallax, parallax_error, model_parallax, model_error, zeropoint, snr))
    star = np.arange(plx.size) if star is None else np.asarray(star, int).ravel()
    ok = _usable(plx, plx_err, nn, nn_err, zp, sn) & (plx_err > 0) & (nn_err > 0) & (sn > 0)
    stars = np.unique(star[ok])
    if stars.size < MIN_CALIBRATION_STARS:
        raise ValueError(f"{stars.size} stars with a Gaia parallax, a model uncertainty and an S/N; the uncertainty "
                         f"calibration needs at least {MIN_CALIBRATION_STARS}")
    delta, g_err, m_err, sn, star = (plx - zp - nn)[ok], plx_err[ok], nn_err[ok], sn[ok], star[ok]
    start = _robust_scale(delta, g_err, m_err)
    k_inf, noise, n_clipped = _solve_snr_scale(delta, g_err, m_err, sn, start)
    rows = [np.flatnonzero(star == s) for s in stars]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(int(n_bootstrap)):
        i = np.concatenate([rows[j] for j in rng.integers(0, stars.size, stars.size)])
        with contextlib.suppress(ValueError):
            boot.append(_solve_snr_scale(delta[i], g_err[i], m_err[i], sn[i], k_inf)[:2])
    err = np.std(boot, axis=0, ddof=1) if len(boot) > 1 else np.full(2, np.nan)
    return {"scale_inf": k_inf, "scale_inf_error": float(err[0]), "noise": noise, "noise_error": float(err[1]),
            "n_rows": int(delta.size), "n_stars": int(stars.size), "n_clipped": n_clipped,
            "snr_range": [float(sn.min()), float(sn.max())], "method": SNR_METHOD}


def degrade_spectra(spectra, spectra_err, snr, target_snr, rng):
    """Spectra ``(N, P)`` with Gaussian noise added so that their S/N ``(N,)`` falls to ``target_snr`` (float32).

    Pixel errors scale as 1/(S/N): the added noise has standard deviation
    ``spectra_err * sqrt((snr / target_snr)^2 - 1)``.  Stars already at or below
    ``target_snr`` and pixels whose error is not finite or not below 1 (masked)
    are left as they are.  ``rng``: a :class:`numpy.random.Generator`.
    """
    err = usable_errors(spectra_err)
    factor = np.sqrt(np.clip((np.asarray(snr, float) / np.asarray(target_snr, float)) ** 2 - 1.0, 0.0, None))
    noise = rng.standard_normal(err.shape, dtype=np.float32) * err
    return (np.asarray(spectra, np.float32) + noise * factor.astype(np.float32)[:, None]).astype(np.float32)


def coverage(residual, sigma, levels=(0.5, 0.6827, 0.8, 0.9, 0.9545, 0.99)):
    """Observed against nominal coverage of Gaussian intervals: the fraction with :math:`|r| < z_p\\sigma`.

    Parameters
    ----------
    residual, sigma : array_like
        Per-star error (estimate - truth) and its reported uncertainty, same unit.
        Missing (NaN/-9999) or non-positive ``sigma`` are left out.
    levels : sequence of float
        Nominal two-sided coverages :math:`p`; the interval half-width is
        :math:`z_p = \\sqrt2\\,{\\rm erf}^{-1}(p)` (1 sigma is 0.6827, 2 sigma 0.9545).

    Returns
    -------
    dict
        ``n``, ``nominal`` (list), ``observed`` (list), ``within_1sigma``,
        ``within_2sigma`` and ``robust_std_z`` (sigma_MAD of residual/sigma).
    """
    r = np.asarray(residual, float)
    s = np.asarray(sigma, float)
    ok = _usable(r, s) & (s > 0)
    z = np.abs(r[ok] / s[ok])
    levels = [float(p) for p in levels]
    observed = [float(np.mean(z < np.sqrt(2) * erfinv(p))) if z.size else float("nan") for p in levels]
    return {
        "n": int(z.size), "nominal": levels, "observed": observed,
        "within_1sigma": float(np.mean(z < 1)) if z.size else float("nan"),
        "within_2sigma": float(np.mean(z < 2)) if z.size else float("nan"),
        "robust_std_z": sigma_mad(r[ok] / s[ok]) if z.size else float("nan"),
    }


#: Nominal coverage of :math:`\pm1\sigma` and :math:`\pm2\sigma` Gaussian intervals.
ONE_SIGMA, TWO_SIGMA = float(erf(1 / np.sqrt(2))), float(erf(2 / np.sqrt(2)))


def validation_indices(n_stars, val_size, seed=VALIDATION_SEED):
    """Indices of the validation split of ``fit`` on ``n_stars`` stars (the split astroNN makes, seeded)."""
    from sklearn.model_selection import train_test_split

    return np.sort(train_test_split(np.arange(int(n_stars)), test_size=val_size, random_state=int(seed))[1])


@contextlib.contextmanager
def seeded_validation_split(seed):
    """Make astroNN's training/validation split (``train_test_split`` without a seed) use ``seed``.

    ``seed=None`` leaves astroNN's own split as it is.
    """
    if seed is None:
        yield
        return
    from astroNN.models import base_bayesian_cnn

    original = base_bayesian_cnn.train_test_split

    def seeded(*args, **kwargs):
        original(*args, **kwargs)  # draw what astroNN's unseeded split draws: the rest of training stays as it was
        return original(*args, random_state=int(seed), **kwargs)

    base_bayesian_cnn.train_test_split = seeded
    try:
        yield
    finally:
        base_bayesian_cnn.train_test_split = original


class CalibratedUncertainty:
    """The uncertainty calibration of a model or an ensemble (mixed into both).

    An implementation supplies ``predict(input_data, batch_size=..., calibrated=False)``
    (the uncalibrated uncertainties), ``predict_zeropoint``, ``offset``,
    ``offset_features`` and ``_split_records`` (the validation splits of its trainings).
    """

    #: Seed of the validation split of ``fit``; ``None`` keeps astroNN's own random split (its indices are
    #: recorded).  The members of an ensemble share :data:`VALIDATION_SEED`.
    validation_seed = None
    #: Calibrate the uncertainties on the validation stars at the end of ``fit`` (the default).
    calibrate_at_fit = True
    #: The fitted calibration, or ``None`` (uncalibrated: scale 1).
    uncertainty_calibration = None

    @property
    def uncertainty_scale(self):
        """The factor applied to every uncertainty (1 when uncalibrated)."""
        cal = self.uncertainty_calibration
        return 1.0 if cal is None else float(cal.scale)

    @property
    def uncertainty_calibrated(self):
        """Whether the uncertainties carry a fitted calibration."""
        return self.uncertainty_calibration is not None

    def uncertainty_scale_at(self, snr=None):
        """The factor applied to the uncertainties of stars with this S/N (:meth:`UncertaintyCalibration.scale_at`;
        1 when uncalibrated, :attr:`uncertainty_scale` without an S/N form or S/N)."""
        cal = self.uncertainty_calibration
        return 1.0 if cal is None else cal.scale_at(snr)

    def _scaled(self, errors, calibrated, snr=None):
        k = np.reshape(self.uncertainty_scale_at(snr), (-1, 1)) if calibrated else 1.0
        return {name: err * k for name, err in errors.items()}

    def _split_records(self):
        """The ``validation_split`` record of each training behind the predictions."""
        return [getattr(self, "validation_split", None)]

    def _validation_split(self, n):
        """Indices of the stars (of the ``n`` given to ``fit``) that no training behind the model used, and a label."""
        records = self._split_records()
        if any(r is None for r in records):
            raise ValueError("no record of the validation split of fit (trained with val_size=0 or saved before the "
                             "calibration existed): give the held-out stars with stars=")
        if any(r != records[0] for r in records):
            raise ValueError("the members were trained on different stars or splits: give stars= held out by all")
        rec = records[0]
        if int(rec["n_stars"]) != n:
            raise ValueError(f"fit was given {rec['n_stars']} stars, these are {n}: give the same stars, in the same "
                             f"order, or the held-out ones with stars=")
        if rec.get("seed") is None:
            idx = np.asarray(rec["indices"], dtype=int)
            return idx, f"validation split of fit ({idx.size} of {n} stars)"
        idx = validation_indices(n, rec["val_size"], rec["seed"])
        return idx, f"validation split of fit ({idx.size} of {n} stars, seed {rec['seed']})"

    def _calibration_zeropoint(self, offset_features, n):
        if self.offset == "none":
            return np.zeros(n)
        if self.offset == "constant":
            return np.full(n, self.predict_zeropoint()[0].to_value(u.mas))
        return self.predict_zeropoint(offset_features)[0].to_value(u.mas)

    def calibrate_uncertainties(self, input_data, parallax, parallax_error, magnitude=None, offset_features=None,
                                stars=None, batch_size=None, spectra_err=None, snr=None, injection_snr=INJECTION_SNR):
        """Fit the uncertainty scale on held-out stars with Gaia parallaxes, and keep it (saved with the model).

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``) or the full input layout, of the stars given to ``fit``
            (with ``stars=None``) or of any stars the network was not trained on.
        parallax, parallax_error : array_like or Quantity [mas]
            Gaia catalogue parallaxes and errors (not zero-point corrected).
        magnitude : array_like, optional
        offset_features : ndarray, Table or dict, optional
            A multivariate model's features, for the per-star zero-point.
        stars : array_like of int or bool, optional
            Which rows to use; default the validation split of ``fit`` (the
            stars given must then be those given to ``fit``, in order).
        batch_size : int, optional
        spectra_err : ndarray, optional
            The spectra's pixel errors, same shape; with ``snr``, also fit the
            S/N-dependent scale (:func:`fit_snr_uncertainty_scale`) on these
            stars at their S/N and with noise injected down to each S/N of
            ``injection_snr`` below their own (:func:`degrade_spectra`).
        snr : array_like, optional
            The spectra's S/N, one per star.
        injection_snr : sequence of float

        Returns
        -------
        UncertaintyCalibration
            Also kept as :attr:`uncertainty_calibration` (saved with the model).

        Raises
        ------
        ValueError
            The reasons of :func:`fit_uncertainty_scale`, or no record of the validation split to use.
        """
        spectra, mag = spectra_and_magnitude(self, input_data, magnitude)
        n = spectra.shape[0]
        if stars is None:
            idx, label = self._validation_split(n)
        else:
            idx = np.arange(n)[np.asarray(stars)] if np.asarray(stars).dtype == bool else np.asarray(stars, int)
            label = f"{idx.size} given held-out stars"
        plx = mas_values(parallax, "parallax", n)[idx]
        plx_err = mas_values(parallax_error, "parallax_error", n)[idx]
        feats = feature_matrix(offset_features, self.offset_features)[idx] if self.offset == "multivariate" else None
        fakemag, err = self.predict(spectra[idx], batch_size=batch_size, calibrated=False)
        factor = 10.0 ** (-0.2 * mag[idx])
        zp = self._calibration_zeropoint(feats, idx.size)
        cal = fit_uncertainty_scale(plx, plx_err, fakemag[:, 0] * factor, err["total"][:, 0] * factor, zeropoint=zp,
                                    stars=label)
        cal = replace(cal, luminosity_check=luminosity_bias(
            plx, plx_err, fakemag[:, 0] * factor, err["total"][:, 0] * factor * cal.scale, fakemag[:, 0], zeropoint=zp))
        warn_luminosity_bias(cal.luminosity_check, type(self).__name__)
        if spectra_err is not None and snr is not None:
            cal = replace(cal, snr_dependence=self._fit_snr_dependence(
                spectra[idx], np.asarray(spectra_err)[idx], np.asarray(snr, float)[idx], injection_snr,
                (plx, plx_err, zp, factor), (fakemag[:, 0], err["total"][:, 0]), batch_size))
        self.uncertainty_calibration = cal
        return cal

    def _fit_snr_dependence(self, spectra, spectra_err, snr, injection_snr, gaia, native, batch_size):
        """:func:`fit_snr_uncertainty_scale` on these stars at their S/N and with noise injected (one copy per S/N)."""
        plx, plx_err, zp, factor = gaia
        rng = np.random.default_rng(INJECTION_SEED)
        rows = [(np.arange(snr.size), snr, *native)]
        for target in injection_snr:
            sel = np.flatnonzero(snr > target)
            if sel.size:
                noisy = degrade_spectra(spectra[sel], spectra_err[sel], snr[sel], target, rng)
                fakemag, err = self.predict(noisy, batch_size=batch_size, calibrated=False)
                rows.append((sel, np.full(sel.size, float(target)), fakemag[:, 0], err["total"][:, 0]))
        star, sn, fakemag, total = (np.concatenate(c) for c in zip(*rows))
        fit = fit_snr_uncertainty_scale(plx[star], plx_err[star], fakemag * factor[star], total * factor[star], sn,
                                        zeropoint=np.broadcast_to(zp, plx.shape)[star], star=star)
        return {**fit, "injection_snr": [float(t) for t in injection_snr]}

    def _calibrate_after_fit(self, input_data, parallax, parallax_error, magnitude, offset_features):
        """The default calibration at the end of ``fit``: on its validation stars, with a warning if impossible."""
        if not self.calibrate_at_fit:
            return
        try:
            self.calibrate_uncertainties(input_data, parallax, parallax_error, magnitude=magnitude,
                                         offset_features=offset_features if self.offset == "multivariate" else None)
        except ValueError as exc:
            warnings.warn(f"{type(self).__name__}: uncertainties left uncalibrated (scale 1): {exc}",
                          UncalibratedWarning, stacklevel=3)


def warn_uncalibrated(what):
    """Warn that ``what`` (a folder) carries no uncertainty calibration."""
    warnings.warn(f"{what} has no uncertainty calibration (saved before the calibration existed, or it was "
                  f"impossible or switched off): its uncertainties are the network's own (scale 1), ~2.5x too wide "
                  f"on the mock survey; calibrate_uncertainties() on held-out stars fixes that", UncalibratedWarning,
                  stacklevel=3)
