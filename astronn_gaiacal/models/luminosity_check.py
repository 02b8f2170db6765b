r"""Are the network's luminosities right along their range?  A check against Gaia, no truth needed.

On held-out stars with Gaia parallaxes, in quantile bins of the predicted
pseudo-luminosity :math:`L` (fakemag), the inverse-variance weighted
least-squares :math:`b` (corrected for the scatter of the network's own parallaxes) of

.. math:: \varpi_{\rm Gaia} - \varpi_0 = (1 + b)\,\varpi_{\rm NN}

is the fraction by which Gaia's parallaxes exceed the network's: :math:`b > 0`
means luminosities (fakemag) too low and distances too long by about
:math:`b`.  A network trained with dropout pulls the ends of its luminosity
range towards the middle (docs/calibration.rst measures ~5 % for the mock's
coolest dwarfs); the uncertainty scale does not see such a bias, this check
does.  A bin is flagged where :math:`|b|` exceeds both
:data:`BIAS_TOLERANCE` and :data:`BIAS_SIGNIFICANCE` standard errors.

Examples
--------
>>> import numpy as np
>>> from astronn_gaiacal.models.luminosity_check import luminosity_bias
>>> rng = np.random.default_rng(1)
>>> fakemag = rng.uniform(50, 500, 4000)
>>> nn = fakemag * 10 ** (-0.2 * 10.0)                      # the network's parallaxes at K = 10
>>> truth = nn * np.where(fakemag > 400, 1.06, 1.0)         # its brightest-fakemag quarter 6 % low
>>> gaia = truth + rng.normal(0, 0.01, nn.size)
>>> check = luminosity_bias(gaia, 0.01, nn, 0.0, fakemag, n_bins=4)
>>> [b["flagged"] for b in check["bins"]]
[False, False, False, True]
"""
import warnings

import numpy as np

__all__ = ["BIAS_SIGNIFICANCE", "BIAS_TOLERANCE", "COLLAPSED_DEX", "LUMINOSITY_BINS", "LuminosityBiasWarning",
           "checked", "flagged_stars", "luminosity_bias", "warn_luminosity_bias"]

#: Quantile bins of the predicted fakemag.
LUMINOSITY_BINS = 4
#: A bin's bias is flagged only beyond this fraction ...
BIAS_TOLERANCE = 0.03
#: ... and this many standard errors.
BIAS_SIGNIFICANCE = 3.0
#: Held-out stars whose predicted log10 fakemag spans less than this: the network predicts one value (failed).
COLLAPSED_DEX = 0.01
#: Stars further than this (in units of their combined error) from the bin's fit are left out, once.
CLIP = 4.0
METHOD = ("inverse-variance least squares of parallax_gaia - zero-point = (1 + b) parallax_NN in quantile bins of the "
          "predicted fakemag, corrected for the scatter of parallax_NN, |residual| > 4 sigma left out")


class LuminosityBiasWarning(UserWarning):
    """The network's parallaxes differ from Gaia's over part of the luminosity range."""


def _fit(delta, model, model_error, sigma):
    """Least squares of ``delta = b model`` with weights ``sigma**-2``, corrected for the noise of ``model`` itself
    (the regressor: its scatter ``model_error`` would otherwise pull :math:`b` down by about its variance)."""
    w = sigma**-2.0
    signal, noise = np.sum(w * model**2), np.sum(w * model_error**2)
    if not signal > noise:  # the network's own scatter as large as its parallaxes: no bias can be stated
        return float("nan"), float("nan")
    return float((np.sum(w * model * delta) + noise) / (signal - noise)), float(signal**-0.5)


def luminosity_bias(parallax, parallax_error, model_parallax, model_error, fakemag, zeropoint=0.0,
                    n_bins=LUMINOSITY_BINS):
    """The fractional parallax bias :math:`b` of the network against Gaia, per quantile bin of fakemag.

    Parameters
    ----------
    parallax, parallax_error : array_like [mas]
        Gaia parallaxes and errors of held-out stars (not zero-point corrected).
    model_parallax, model_error : array_like [mas]
        The network's parallaxes and their (calibrated) uncertainties.
    fakemag : array_like
        The predicted pseudo-luminosities (the binning variable).
    zeropoint : float or array_like [mas]
        Subtracted from the Gaia parallaxes.
    n_bins : int

    Returns
    -------
    dict
        ``bins``: per bin ``log10_fakemag`` (its range), ``n``, ``bias``,
        ``bias_error``, ``flagged``; ``n_flagged``; ``method``;
        Bins of fewer than 10 stars (ties) are left out; ``None`` with fewer than 20 usable stars or no bin left
        (fewer bins are used down to 2 where the stars are few).
    """
    arrays = [np.broadcast_to(np.asarray(a, float), np.shape(fakemag)).ravel()
              for a in (parallax, parallax_error, model_parallax, model_error, fakemag, zeropoint)]
    plx, plx_err, nn, nn_err, fm, zp = arrays
    ok = np.isfinite(plx) & np.isfinite(plx_err) & np.isfinite(nn) & np.isfinite(nn_err) & np.isfinite(zp)
    ok &= (plx_err > 0) & (nn > 0) & (fm > 0) & (plx > -9000) & (nn_err >= 0)
    n_bins = min(int(n_bins), int(ok.sum()) // 10)
    if n_bins < 2:
        return None
    x = np.log10(fm[ok])
    delta, model, model_err = (plx - zp - nn)[ok], nn[ok], nn_err[ok]
    sigma = np.hypot(plx_err[ok], model_err)
    edges = np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1))
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    bins = []
    for i in range(n_bins):
        sel = index == i
        if sel.sum() < 10:  # tied fakemags (e.g. a network that predicts one value) leave bins empty
            continue
        b, _ = _fit(delta[sel], model[sel], model_err[sel], sigma[sel])
        sel &= np.abs(delta - b * model) < CLIP * sigma  # catalogue outliers (binaries, mismatches) out
        b, err = _fit(delta[sel], model[sel], model_err[sel], sigma[sel])
        if not np.isfinite(b):
            continue
        flagged = abs(b) > BIAS_TOLERANCE and abs(b) > BIAS_SIGNIFICANCE * err
        bins.append({"log10_fakemag": [float(edges[i]), float(edges[i + 1])], "n": int(sel.sum()), "bias": b,
                     "bias_error": err, "flagged": bool(flagged)})
    if not bins:
        return None
    return {"bins": bins, "n_flagged": sum(b["flagged"] for b in bins), "method": METHOD}


def warn_luminosity_bias(check, what="the network"):
    """A :class:`LuminosityBiasWarning` naming each flagged bin of ``check`` (:func:`luminosity_bias`), and one if the
    held-out stars' fakemags span less than :data:`COLLAPSED_DEX`; none otherwise."""
    bins = (check or {}).get("bins", [])
    if bins and bins[-1]["log10_fakemag"][1] - bins[0]["log10_fakemag"][0] < COLLAPSED_DEX:
        warnings.warn(f"{what}: the network predicts the same fakemag for every held-out star (its training "
                      f"failed, e.g. dead units); retrain it (another seed, more epochs) before using it",
                      LuminosityBiasWarning, stacklevel=3)
    flagged = [b for b in bins if b["flagged"]]
    if flagged:
        parts = "; ".join(f"log10 fakemag {b['log10_fakemag'][0]:.2f}-{b['log10_fakemag'][1]:.2f}: Gaia's parallaxes "
                          f"{100 * b['bias']:+.1f} +- {100 * b['bias_error']:.1f} % from the network's"
                          for b in flagged)
        warnings.warn(f"{what}: luminosities biased against Gaia on the held-out stars ({parts}); distances there "
                      f"are off by about that fraction (more epochs or training stars in that range help)",
                      LuminosityBiasWarning, stacklevel=3)


def checked(check):
    """``check`` (:func:`luminosity_bias`'s dict, e.g. read from a model folder) if well formed, else ValueError."""
    if check is None:
        return None
    try:
        for b in check["bins"]:
            lo, hi = (float(v) for v in b["log10_fakemag"])
            if not (lo <= hi and isinstance(b["flagged"], bool) and np.isfinite([b["bias"], b["bias_error"]]).all()):
                raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ValueError("the uncertainty calibration's luminosity_check is malformed (a corrupted or hand-edited "
                         "model folder): retrain, or calibrate_uncertainties() again and save") from None
    return check


def flagged_stars(check, fakemag):
    """True for stars whose predicted ``fakemag`` lies in a flagged bin of ``check`` (:func:`luminosity_bias`).

    The first and last bins reach to the ends of the range (a star beyond the held-out stars' range is at least as
    far out); a missing fakemag (NaN) is not flagged.
    """
    fakemag = np.asarray(fakemag, float)
    flag = np.zeros(fakemag.shape, bool)
    bins = (check or {}).get("bins", [])
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.log10(fakemag)
    for i, b in enumerate(bins):
        if b["flagged"]:
            lo = -np.inf if i == 0 else b["log10_fakemag"][0]
            hi = np.inf if i == len(bins) - 1 else b["log10_fakemag"][1]
            flag |= (x >= lo) & (x <= hi)
    return flag
