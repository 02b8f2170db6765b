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
counts as not converged.  The verdict is stored in the model folder
(:data:`CONVERGENCE_KEY`), printed by ``train``, ``zeropoint`` and ``predict``, and a
:class:`ConvergenceWarning` names the model; docs/policy.rst.
"""
import warnings

import numpy as np

__all__ = ["CONVERGENCE_KEY", "MIN_EPOCHS", "MIN_WINDOW", "TOLERANCE", "WINDOW_FRACTION", "ConvergenceWarning",
           "convergence_note", "ensemble_convergence", "training_convergence", "warn_not_converged"]

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
          f"fewer than {MIN_EPOCHS} epochs: not converged")


class ConvergenceWarning(UserWarning):
    """A model's training stopped while its loss was still falling: its numbers are not to be trusted."""


def training_convergence(loss):
    """Whether a training converged, from its training loss per epoch.

    Parameters
    ----------
    loss : array_like
        Mean training loss of each epoch, in order.

    Returns
    -------
    dict
        ``converged`` (bool), ``epochs``, ``window`` (W), ``projected_fall``
        (:math:`\\max(0,-b)\\,W`), ``achieved_fall``, ``ratio`` (:math:`r`; None
        with too few epochs or nothing achieved), ``reason`` (one line) and ``method``.

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
    out = {"converged": False, "epochs": int(n), "window": int(window), "projected_fall": None,
           "achieved_fall": None, "ratio": None, "method": METHOD}
    if n < MIN_EPOCHS or not np.all(np.isfinite(loss)):
        why = f"fewer than {MIN_EPOCHS}, no trend to judge" if n < MIN_EPOCHS else "a loss that is not finite"
        return {**out, "reason": f"{n} epochs: {why}"}
    tail = loss[-window:]
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
            f"train with more epochs (--epochs) or leave the recipe's default")


def warn_not_converged(verdict, what):
    """Warn (:class:`ConvergenceWarning`) if ``verdict`` says the training of ``what`` did not converge."""
    note = convergence_note(verdict)
    if note:
        warnings.warn(f"{what}: {note}", ConvergenceWarning, stacklevel=3)
