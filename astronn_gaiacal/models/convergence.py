r"""Whether a training converged, judged from its training loss; a model that did not is flagged.

A network stopped while its loss still falls gives luminosities, and hence a
zero-point, that mean little (docs/policy.rst has an example).
:func:`training_convergence` fits a straight line
to the training loss of the last :data:`WINDOW_FRACTION` of the epochs (at
least :data:`MIN_WINDOW`) and compares the fall it projects over another such
window with the fall achieved since the first epoch:

.. math::

    r = \frac{\max(0, -b)\,W}{L_1 - \bar L_{\rm last}}

The training has converged when :math:`r <` :data:`TOLERANCE`.  With fewer
than :data:`MIN_EPOCHS` epochs there is no trend to judge and the training
counts as not converged.  A loss that has stopped falling can still be
useless: a training that diverged (too high a learning rate) and a network
whose units died both level off.  So a training whose final loss is no lower
than that of the best model that does not read the spectra (one luminosity
and one offset for every star, :func:`constant_luminosity_loss`) has learnt
nothing from them and counts as not converged.  The verdict is stored in the
model folder (:data:`CONVERGENCE_KEY`), printed by ``train``, ``zeropoint``
and ``predict``, and a :class:`ConvergenceWarning` names the model;
docs/policy.rst.
"""
import warnings

import numpy as np
from scipy.optimize import minimize

from ..constants import MAGIC_NUMBER, is_missing
from ..nn.losses import loss_from_name

__all__ = ["CONVERGENCE_KEY", "MIN_EPOCHS", "MIN_WINDOW", "TOLERANCE", "WINDOW_FRACTION", "ConvergenceWarning",
           "constant_luminosity_loss", "convergence_note", "ensemble_convergence", "training_convergence",
           "warn_not_converged"]

#: Key of the verdict in a model's plugin section.
CONVERGENCE_KEY = "training_convergence"
#: Fewest epochs with a trend to judge.
MIN_EPOCHS = 10
#: Fraction of the epochs, at the end, whose loss trend is fitted; and the fewest epochs in it.
WINDOW_FRACTION, MIN_WINDOW = 0.2, 5
#: Largest projected fall over another window, as a fraction of the fall achieved, of a converged training.
TOLERANCE = 0.1
#: How the verdict is reached (recorded with it).
METHOD = (f"least-squares slope b of the training loss over the last W = max({MIN_WINDOW}, {WINDOW_FRACTION:g} x "
          f"epochs) epochs; converged when max(0, -b) W / (loss of epoch 1 - mean loss of the last W) < {TOLERANCE:g}; "
          f"fewer than {MIN_EPOCHS} epochs, or a final loss no lower than that of one luminosity and one offset for "
          f"every star: not converged")
#: Most stars the constant-luminosity loss is evaluated on (a fixed random subset beyond).
BASELINE_STARS = 20000


class ConvergenceWarning(UserWarning):
    """A model's training did not converge (its loss still falling, or no lower than a constant luminosity's): its
    numbers are not to be trusted."""


def constant_luminosity_loss(parallax, parallax_error, magnitude, loss="gaia_gaussian_nll", loss_config=None,
                             label_scale=1.0):
    r"""The training loss of the best model that does not read the spectra.

    Every star gets the same pseudo-luminosity :math:`a`, offset :math:`b` and
    predictive log-variance :math:`s`: :math:`\hat\varpi = a\,10^{-m/5} + b`.
    The three are fitted (Nelder-Mead) to minimise ``loss`` itself, so the value is
    the floor any network that learnt something from the spectra must go below.

    Parameters
    ----------
    parallax, parallax_error : array_like
        The training labels; -9999/NaN parallaxes are masked as in training.
    magnitude : array_like
        The apparent magnitudes :math:`m`.
    loss : str
        A registered loss name (:data:`~astronn_gaiacal.nn.losses.LOSS_CLASSES`).
    loss_config : dict, optional
    label_scale : float
        The labels are divided by it, into the units the loss sees them in training (a model's ``labels_std``).

    Returns
    -------
    float
        The mean loss per star; NaN without two stars with a parallax.

    Examples
    --------
    The Gaussian loss of a constant model is :math:`\tfrac12(1 + \ln{\rm var})` of the residuals:

    >>> rng = np.random.default_rng(0)
    >>> m = rng.uniform(8, 12, 5000)
    >>> plx = 100.0 * 10 ** (-m / 5) + rng.normal(0, 0.1, m.size)
    >>> round(constant_luminosity_loss(plx, np.full(m.size, 1e-3), m), 2)
    -1.8
    """
    plx, err, mag = (np.asarray(a, float).ravel() for a in (parallax, parallax_error, magnitude))
    if plx.size > BASELINE_STARS:
        keep = np.random.default_rng(0).choice(plx.size, BASELINE_STARS, replace=False)
        plx, err, mag = plx[keep], err[keep], mag[keep]
    factor = 10 ** (-0.2 * mag)
    valid = ~is_missing(plx) & np.isfinite(factor)
    if valid.sum() < 2:
        return float("nan")
    plx, err = plx / label_scale, err / label_scale  # the masked ones are replaced below
    fn = loss_from_name(loss, **(loss_config or {}))
    y_true = np.stack([np.where(valid, plx, MAGIC_NUMBER), np.where(valid, err, 0.0)], axis=1)
    ratio = plx[valid] / factor[valid]
    a0 = float(np.median(ratio))
    s0 = float(np.log(np.var(plx[valid] - a0 * factor[valid]) + 1e-300))

    def mean_loss(p):
        pred = np.stack([p[0] * factor + p[1], np.full(factor.size, p[2])], axis=1)
        value = float(fn(y_true, pred))
        return value if np.isfinite(value) else 1e300

    scale = max(abs(a0), float(np.std(ratio)), 1e-12)
    start = np.array([a0, 0.0, s0])
    simplex = np.array([start, start + [0.5 * scale, 0, 0], start + [0, 0.5 * np.std(plx[valid]) + 1e-12, 0],
                        start + [0, 0, 1.0]])
    fit = minimize(mean_loss, start, method="Nelder-Mead",
                   options=dict(initial_simplex=simplex, maxiter=3000, xatol=1e-8, fatol=1e-8))
    return float(fit.fun)


def training_convergence(loss, baseline=None):
    """Whether a training converged, from its training loss per epoch.

    Parameters
    ----------
    loss : array_like
        Mean training loss of each epoch, in order.
    baseline : float, optional
        :func:`constant_luminosity_loss` of the training stars: a final loss (the mean of the last window) no lower
        than this is not converged, whatever its trend.

    Returns
    -------
    dict
        ``converged`` (bool), ``epochs``, ``window`` (W), ``projected_fall``
        (:math:`\\max(0,-b)\\,W`), ``achieved_fall``, ``ratio`` (:math:`r`; None
        with too few epochs or nothing achieved), ``final_loss``, ``baseline_loss``, ``reason`` (one line) and
        ``method``.

    Examples
    --------
    >>> training_convergence([5.0, 3.0, 2.0, 1.5, 1.2, 1.1, 1.05, 1.02, 1.01, 1.0, 1.0, 1.0])["converged"]
    True
    >>> training_convergence(np.linspace(5.0, 1.0, 30))["converged"]
    False
    >>> training_convergence([0.44, 0.39])["reason"]
    '2 epochs: fewer than 10, no trend to judge'
    """
    loss = np.asarray(loss, float).ravel()
    n = loss.size
    window = max(MIN_WINDOW, int(round(WINDOW_FRACTION * n)))
    baseline = None if baseline is None or not np.isfinite(baseline) else float(baseline)
    out = {"converged": False, "epochs": int(n), "window": int(window), "projected_fall": None,
           "achieved_fall": None, "ratio": None, "final_loss": None, "baseline_loss": baseline, "method": METHOD}
    if n < MIN_EPOCHS or not np.all(np.isfinite(loss)):
        why = f"fewer than {MIN_EPOCHS}, no trend to judge" if n < MIN_EPOCHS else "a loss that is not finite"
        return {**out, "reason": f"{n} epochs: {why}"}
    tail = loss[-window:]
    out["final_loss"] = float(tail.mean())
    if baseline is not None and tail.mean() >= baseline:
        return {**out, "reason": f"a final loss of {tail.mean():.4g}, no lower than the {baseline:.4g} of one "
                                 f"luminosity for every star: it learnt nothing from the spectra (diverged, e.g. too "
                                 f"high a learning rate, or dead units)"}
    slope = np.polyfit(np.arange(window, dtype=float), tail, 1)[0]
    projected, achieved = max(0.0, -slope) * window, float(loss[0] - tail.mean())
    out.update(projected_fall=float(projected), achieved_fall=achieved)
    if achieved <= 0:
        return {**out, "reason": f"the loss of the last {window} epochs is not below that of the first"}
    ratio = projected / achieved
    out.update(ratio=float(ratio), converged=bool(ratio < TOLERANCE))
    verdict = "converged" if out["converged"] else "still falling"
    return {**out, "reason": f"{verdict}: the loss trend of the last {window} of {n} epochs projects a further fall of "
                             f"{100 * ratio:.0f} % of the fall achieved (limit {100 * TOLERANCE:.0f} %)"}


def ensemble_convergence(verdicts):
    """One verdict for several trainings (an ensemble's members): converged when every one of them is.

    Parameters
    ----------
    verdicts : list of dict or None
        :func:`training_convergence` of each; ``None`` where unknown (a folder saved before the check).

    Returns
    -------
    dict or None
        ``converged``, ``members_not_converged`` (indices), ``reason`` and ``members``; ``None`` when all are unknown.
    """
    if all(v is None for v in verdicts):
        return None
    bad = [i for i, v in enumerate(verdicts) if v is not None and not v["converged"]]
    reason = ("every member converged" if not bad else
              f"member(s) {', '.join(map(str, bad))} of {len(verdicts)} did not converge: {verdicts[bad[0]]['reason']}")
    return {"converged": not bad, "members_not_converged": bad, "reason": reason, "members": list(verdicts)}


def convergence_note(verdict):
    """The one-line flag ``train``, ``zeropoint`` and ``predict`` print for a model that did not converge, or ``''``."""
    if verdict is None or verdict["converged"]:
        return ""
    return (f"NOT CONVERGED ({verdict['reason']}): the luminosities and zero-point are not to be trusted; "
            f"retrain with the recipe's defaults (or more epochs, --epochs; a lower learning rate, --lr)")


def warn_not_converged(verdict, what):
    """Warn (:class:`ConvergenceWarning`) if ``verdict`` says the training of ``what`` did not converge."""
    note = convergence_note(verdict)
    if note:
        warnings.warn(f"{what}: {note}", ConvergenceWarning, stacklevel=3)
