r"""The likelihood of a zero-point refit: Gaussian, or the robust Student-t of ``gaia_student_t_nll``.

A model trained with ``loss='gaia_student_t_nll'`` learned its luminosities
under a likelihood whose tails absorb outliers (unresolved binaries,
mis-matched cross-matches, non-Gaussian Gaia errors).  Its refits must use the
same likelihood: with a Gaussian one the outliers dominate the zero-point and
the fitted scatter (docs/calibration.rst).  With the residual
:math:`r_i = \varpi_i - \mu_i` of the linear model :math:`\mu_i = X_i\beta` and
the squared scale :math:`v_i = \sigma_{\varpi,i}^2 + \tau^2\hat\varpi_i^2`
(the Gaussian variance of :mod:`~astronn_gaiacal.zeropoint.fit`), the
negative log-likelihood per star is, up to constants, that of the training
loss (:mod:`astronn_gaiacal.nn.losses`),

.. math::

    \tfrac12\ln v_i + \tfrac{\nu+1}{2}\ln\left(1 + \frac{r_i^2}{\nu v_i}\right),

with :math:`\nu` fixed (the loss's).  For fixed :math:`\tau` the best
:math:`\beta` solves the weighted normal equations with weights
:math:`w_i = (\nu+1)/(\nu v_i + r_i^2)`, iterated to convergence (the EM
algorithm of the Student-t, which never lowers the likelihood); :math:`\tau`
is found by a bounded 1-D search of the profile likelihood, as in the Gaussian
fit.  Errors come from the analytic observed information of
:math:`(\beta, \ln\tau)`; as :math:`\nu\to\infty` every expression becomes the
Gaussian one.

Examples
--------
>>> from astronn_gaiacal.zeropoint.likelihood import as_likelihood, likelihood_for_loss
>>> str(likelihood_for_loss("gaia_student_t_nll", {"nu": 6}))
'student_t(nu=6)'
>>> str(as_likelihood(None)), str(as_likelihood("student_t"))
('gaussian', 'student_t(nu=4)')
"""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from ..constants import DEFAULT_STUDENT_T_NU

__all__ = ["GAUSSIAN", "LIKELIHOODS", "Likelihood", "as_likelihood", "likelihood_for_loss", "student_t_profile_fit"]

#: Names of the refit likelihoods.
LIKELIHOODS = ("gaussian", "student_t")
#: Training losses whose refit likelihood is the Student-t (the others are refitted with the Gaussian).
_STUDENT_T_LOSSES = ("gaia_student_t_nll",)
#: Convergence of the iteratively re-weighted fit of the coefficients (mas), and its iteration cap.
_ATOL, _MAX_ITER = 1e-12, 2000


@dataclass(frozen=True)
class Likelihood:
    """The likelihood of a refit.

    Attributes
    ----------
    name : {'gaussian', 'student_t'}
    nu : float or None
        Degrees of freedom of the Student-t (``None`` for the Gaussian).
    """

    name: str = "gaussian"
    nu: float = None

    def __post_init__(self):
        if self.name not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {list(LIKELIHOODS)}, got {self.name!r}")
        if self.name == "gaussian" and self.nu is not None:
            raise ValueError("the Gaussian likelihood has no nu")
        if self.name == "student_t":
            nu = DEFAULT_STUDENT_T_NU if self.nu is None else self.nu
            if not (isinstance(nu, (int, float, np.floating, np.integer)) and np.isfinite(nu) and nu > 0):
                raise ValueError(f"nu must be a finite number > 0, got {self.nu!r}")
            object.__setattr__(self, "nu", float(nu))

    @property
    def gaussian(self):
        return self.name == "gaussian"

    def __str__(self):
        return "gaussian" if self.gaussian else f"student_t(nu={self.nu:g})"


#: The Gaussian likelihood (the refits' default).
GAUSSIAN = Likelihood()


def as_likelihood(likelihood):
    """A :class:`Likelihood` from ``None``/``'gaussian'`` (Gaussian), ``'student_t'`` (default nu) or a Likelihood."""
    if likelihood is None:
        return GAUSSIAN
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, str):
        return Likelihood(likelihood)
    raise TypeError(f"likelihood must be None, a name {list(LIKELIHOODS)} or a Likelihood, got {likelihood!r}")


def likelihood_for_loss(loss_name, loss_config=None):
    """The refit likelihood of a model trained with ``loss_name`` (and ``loss_config``, e.g. ``{'nu': 4}``).

    ``'gaia_student_t_nll'`` gives the Student-t with the loss's ``nu``
    (default :data:`~astronn_gaiacal.constants.DEFAULT_STUDENT_T_NU`, the loss's
    default); every other loss the Gaussian.
    """
    if loss_name in _STUDENT_T_LOSSES:
        return Likelihood("student_t", (loss_config or {}).get("nu"))
    return GAUSSIAN


def _nll(r, v, nu):
    return np.sum(0.5 * np.log(v) + 0.5 * (nu + 1.0) * np.log1p(r**2 / (nu * v)))


def _irls(target, design, v, nu, start):
    """The Student-t maximum of the coefficients at fixed squared scales ``v`` (EM iterations from ``start``)."""
    coef = start
    for _ in range(_MAX_ITER):
        r = target - design @ coef
        w = (nu + 1.0) / (nu * v + r**2)
        new = np.linalg.solve(design.T @ (w[:, None] * design), design.T @ (w * target))
        done = np.all(np.abs(new - coef) <= _ATOL * (1.0 + np.abs(coef)))
        coef = new
        if done:
            return coef
    warnings.warn(f"the Student-t refit did not converge in {_MAX_ITER} iterations (last step "
                  f"{np.max(np.abs(new - start)):.3g} mas from its start); its values may be off", RuntimeWarning,
                  stacklevel=4)
    return coef


def _information_t(r, design, p, sigma, tau, nu):
    """Observed information of (coefficients, ln tau) of the Student-t fit (analytic; Gaussian as nu -> inf)."""
    v = sigma**2 + (tau * p) ** 2
    a = 2.0 * (tau * p) ** 2  # dv / d ln tau
    d = nu * v + r**2
    h_bb = design.T @ (design * ((nu + 1.0) * (nu * v - r**2) / d**2)[:, None])
    h_bt = design.T @ ((nu + 1.0) * nu * a * r / d**2)
    h_tt = 0.5 * np.sum((2 * a / v - a**2 / v**2) * (1.0 - (nu + 1.0) * r**2 / d)
                        + (nu + 1.0) * nu * r**2 * a**2 / (v * d**2))
    return np.block([[h_bb, h_bt[:, None]], [h_bt[None, :], np.array([[h_tt]])]])


def _coefficient_covariance(r, design, v, nu):
    """Inverse observed information of the coefficients at fixed tau; the expected one where that is not positive."""
    d = nu * v + r**2
    h = design.T @ (design * ((nu + 1.0) * (nu * v - r**2) / d**2)[:, None])
    if np.all(np.linalg.eigvalsh(h) > 0):
        return np.linalg.inv(h)
    return np.linalg.inv(design.T @ (design * ((nu + 1.0) / ((nu + 3.0) * v))[:, None]))


def student_t_profile_fit(target, design, model, err, scatter, nu, bounds, start):
    """Student-t ML of ``target = design @ coef`` with squared scales ``err^2 + (tau model)^2``, tau profiled.

    ``start`` are starting coefficients (the Gaussian fit's); ``bounds`` the
    search range of tau.  Returns the coefficients, their covariance, tau and
    its error (0 when fixed or at a bound), as
    :func:`~astronn_gaiacal.zeropoint.fit.profile_fit`.
    """
    state = {"coef": np.asarray(start, dtype=float)}

    def best(tau):
        v = err**2 + (tau * model) ** 2
        state["coef"] = _irls(target, design, v, nu, state["coef"])
        return state["coef"], v

    if scatter is not None:
        tau = float(scatter)
        if not np.isfinite(tau) or tau < 0:
            raise ValueError(f"scatter must be a finite number >= 0, got {scatter!r}")
        coef, v = best(tau)
        return coef, _coefficient_covariance(target - design @ coef, design, v, nu), tau, 0.0

    def profile_nll(log_tau):
        coef, v = best(np.exp(log_tau))
        return _nll(target - design @ coef, v, nu)

    lo, hi = np.log(bounds)
    sol = minimize_scalar(profile_nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    tau = float(np.exp(sol.x))
    coef, v = best(tau)
    r = target - design @ coef
    try:
        cov = np.linalg.inv(_information_t(r, design, model, err, tau, nu))
    except np.linalg.LinAlgError:
        cov = None
    if cov is None or not np.all(np.isfinite(np.diag(cov))) or np.any(np.diag(cov) <= 0):
        return coef, _coefficient_covariance(r, design, v, nu), tau, 0.0  # tau at its bound: the fixed-tau errors
    return coef, cov[:-1, :-1], tau, tau * np.sqrt(cov[-1, -1])
