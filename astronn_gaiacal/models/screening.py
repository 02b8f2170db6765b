r"""Screening a deep ensemble's members on the stars they all held out.

Members of one ensemble differ only in their random seeds, yet one of them can
end its training clearly worse than the others (on the mock survey, one
member of four had a luminosity scatter of 8.3 % against 5.8-6.2 %).  The
mean of the members then carries its error into every distance.  Since the
members share their validation split, each can be scored on the same
held-out stars with the likelihood they were trained with, no truth needed:
the per-star Gaussian negative log-likelihood of the Gaia parallaxes,

.. math::

    \ell_{ik} = \frac{(\varpi_i - \hat\varpi_{ik})^2}{2 v_{ik}} + \frac12 \ln v_{ik},
    \qquad v_{ik} = \sigma_{\varpi,i}^2 + \sigma_{ik}^2,

with :math:`\hat\varpi_{ik}` member :math:`k`'s parallax plus its own
zero-point and :math:`\sigma_{ik}` its (uncalibrated) uncertainty.  A member
is dropped when its mean excess over the per-star median of the members,
:math:`\overline{\ell_{ik} - {\rm med}_j\,\ell_{ij}}`, is both large, at
least :data:`MIN_EXCESS` (a likelihood ratio of :math:`e^{-0.1}` per star),
and significant, at least :data:`SCREEN_SIGMA` times its standard error (a
paired comparison, star by star), so that neither noise on few stars nor
trivial differences on many drop a member.  Ensembles of fewer than :data:`MIN_MEMBERS` are left alone (two
members cannot say which is the odd one), and at most half of the members
are dropped.
"""
import numpy as np

from ..conversions import mas_values
from .inputs import feature_matrix, spectra_and_magnitude

__all__ = ["MIN_EXCESS", "MIN_MEMBERS", "SCREEN_SIGMA", "MemberScreeningWarning", "held_out_nll", "screen_members"]

class MemberScreeningWarning(UserWarning):
    """Members of an ensemble were left out by the screening."""


#: Significance (standard errors of the paired mean excess) at which a member is dropped.
SCREEN_SIGMA = 3.0
#: Smallest mean excess (nats per star) at which a member is dropped.
MIN_EXCESS = 0.1
#: Smallest ensemble that is screened.
MIN_MEMBERS = 3


def held_out_nll(ensemble, input_data, parallax, parallax_error, magnitude=None, offset_features=None, stars=None,
                 batch_size=None):
    """Per-star negative log-likelihood of the Gaia parallaxes under each member, shape ``(K, n)``.

    Parameters
    ----------
    ensemble : DeepEnsemble
    input_data, parallax, parallax_error, magnitude, offset_features
        The stars given to ``train`` (as for
        :meth:`~astronn_gaiacal.models.calibration.CalibratedUncertainty.calibrate_uncertainties`).
    stars : array_like of int, optional
        Rows to score; default the validation split the members share.
    batch_size : int, optional

    Returns
    -------
    nll : ndarray ``(K, n)``
    stars : ndarray of int
        The rows scored (stars with a Gaia parallax and error).
    """
    spectra, mag = spectra_and_magnitude(ensemble, input_data, magnitude)
    n = spectra.shape[0]
    idx = ensemble._validation_split(n)[0] if stars is None else np.asarray(stars, int)
    plx = mas_values(parallax, "parallax", n)[idx]
    plx_err = mas_values(parallax_error, "parallax_error", n)[idx]
    ok = np.isfinite(plx) & np.isfinite(plx_err) & (plx_err > 0)
    idx, plx, plx_err = idx[ok], plx[ok], plx_err[ok]
    multivariate = ensemble.offset == "multivariate"
    feats = feature_matrix(offset_features, ensemble.offset_features)[idx] if multivariate else None
    factor = 10.0 ** (-0.2 * mag[idx])
    rows = []
    for member in ensemble.members:
        fakemag, err = member.predict(spectra[idx], batch_size=batch_size, calibrated=False)
        model = fakemag[:, 0] * factor + member._calibration_zeropoint(feats, idx.size)
        var = plx_err**2 + (err["total"][:, 0] * factor) ** 2
        rows.append(0.5 * (plx - model) ** 2 / var + 0.5 * np.log(var))
    return np.array(rows), idx


def screen_members(nll, sigma=SCREEN_SIGMA, min_excess=MIN_EXCESS):
    """Which members to drop, from :func:`held_out_nll`.

    Parameters
    ----------
    nll : ndarray ``(K, n)``
    sigma : float
        Significance threshold.
    min_excess : float
        Smallest mean excess (nats per star).

    Returns
    -------
    dict
        ``dropped`` (member indices, worst first, at most half of them),
        ``excess`` (each member's mean excess over the per-star median),
        ``significance`` (excess / its standard error), ``n_stars`` and
        ``threshold``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> nll = rng.normal(0, 1, (4, 300)) + np.array([[0], [0], [0.5], [0]])
    >>> screen_members(nll)["dropped"]
    [2]
    """
    nll = np.asarray(nll, float)
    k, n = nll.shape
    excess = nll - np.median(nll, axis=0)
    mean = excess.mean(axis=1)
    se = excess.std(axis=1, ddof=1) / np.sqrt(n)
    significance = np.divide(mean, se, out=np.zeros(k), where=se > 0)
    dropped = []
    if k >= MIN_MEMBERS:
        order = np.argsort(-significance)
        dropped = [int(i) for i in order if significance[i] > sigma and mean[i] >= min_excess][: k // 2]
    return {"dropped": dropped, "excess": [float(x) for x in mean], "significance": [float(x) for x in significance],
            "n_stars": int(n), "threshold": float(sigma), "min_excess": float(min_excess)}
