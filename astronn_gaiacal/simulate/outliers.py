r"""Outliers of a real APOGEE x Gaia catalogue: unresolved binaries, mis-matched cross-matches, Gaia error tails.

Each kind has a switch (its fraction, 0 = off, the default) and is recorded per
star in the truth column ``true_outlier`` (:data:`OUTLIER_CODES`).  The kinds
are exclusive: one uniform number per star picks at most one, so the counts are
binomial with the requested fractions.

``binary``
    An unresolved pair at one distance.  The primary's spectrum (and labels,
    ``true_fakemag``, ``true_absmag_ks``) is unchanged, but the system is
    brighter by :math:`2.5\log_{10}(1 + f)` in every band, with the
    companion's flux ratio :math:`f = q^4` (a main-sequence mass-luminosity
    relation) and the mass ratio :math:`q` uniform in ``[binary_q_min, 1]``.
    The default ``binary_q_min = 1`` makes equal-mass twins: twice the
    luminosity, so a spectro-photometric parallax :math:`L^{1/2}\,10^{-m/5}`
    from the primary's spectrum is :math:`\sqrt{1+f} = \sqrt 2` times the true
    one, while Gaia measures the true parallax (photocentre wobble is not
    modelled).  The brighter G also enters the drawn Gaia error and the S/N.
``mismatch``
    A mis-matched or blended cross-match: the star's Gaia parallax and its
    error are those of another star of the survey, drawn at random (the
    photometry, spectrum and labels stay the target's).
``tail``
    A non-Gaussian Gaia error: the star's parallax noise is ``tail_scale``
    times its Gaussian draw, a second Gaussian component ``tail_scale`` times
    broader than the quoted error (which is unchanged).

The defaults leave a survey untouched: with every fraction 0 nothing is drawn
and no column is added, so the same seed gives the same arrays as before.
"""
import numbers
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["OUTLIER_CODES", "OutlierDraw", "Outliers", "as_outliers", "draw_outliers"]

#: Code of each kind in the ``true_outlier`` column.
OUTLIER_CODES = {"none": 0, "binary": 1, "mismatch": 2, "tail": 3}


@dataclass(frozen=True)
class Outliers:
    """The outlier population of a mock survey (fractions of all stars; see the module docstring).

    Attributes
    ----------
    binary, mismatch, tail : float
        Fraction of the stars of each kind (each in [0, 1], together <= 1).
    binary_q_min : float
        Smallest mass ratio of a binary (uniform in ``[binary_q_min, 1]``; 1: equal-mass twins).
    tail_scale : float
        Width of the broad Gaia error component in units of the quoted error (> 1).
    """

    binary: float = 0.0
    mismatch: float = 0.0
    tail: float = 0.0
    binary_q_min: float = 1.0
    tail_scale: float = 5.0

    def __post_init__(self):
        for name in ("binary", "mismatch", "tail", "binary_q_min", "tail_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ValueError(f"outliers: {name} must be a finite number, got {value!r}")
        for name in ("binary", "mismatch", "tail"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"outliers: the {name} fraction must be in [0, 1], got {getattr(self, name)!r}")
        if self.binary + self.mismatch + self.tail > 1:
            raise ValueError(f"outliers: the fractions add up to {self.binary + self.mismatch + self.tail:g} > 1")
        if not 0 < self.binary_q_min <= 1:
            raise ValueError(f"outliers: binary_q_min must be in (0, 1], got {self.binary_q_min!r}")
        if not self.tail_scale > 1:
            raise ValueError(f"outliers: tail_scale must be > 1, got {self.tail_scale!r}")

    @property
    def on(self):
        """Whether any kind has a fraction above 0."""
        return self.binary > 0 or self.mismatch > 0 or self.tail > 0

    def to_attrs(self):
        """The settings as plain numbers, with the codes of ``true_outlier`` (a dataset attribute)."""
        return {**{k: float(v) for k, v in asdict(self).items()}, "codes": dict(OUTLIER_CODES)}


def as_outliers(outliers):
    """An :class:`Outliers` from None, a dict of its fields or an Outliers; ``None`` when no kind is on."""
    if outliers is None:
        return None
    if isinstance(outliers, dict):
        outliers = Outliers(**outliers)
    if not isinstance(outliers, Outliers):
        raise TypeError(f"outliers must be None, a dict or an Outliers, got {type(outliers).__name__}")
    return outliers if outliers.on else None


@dataclass(frozen=True)
class OutlierDraw:
    """The outlier kind of every star of one survey, and what each kind needs."""

    settings: Outliers
    code: np.ndarray
    flux_ratio: np.ndarray
    partner: np.ndarray

    @property
    def brightening(self):
        """Magnitudes by which each star's system is brighter than its primary (0 but for binaries)."""
        return np.where(self.code == OUTLIER_CODES["binary"], 2.5 * np.log10(1.0 + self.flux_ratio), 0.0)

    def gaia(self, parallax, parallax_error, expected):
        """The catalogue parallaxes and errors with the tails and mis-matches applied.

        ``expected`` is each star's noise-free catalogue parallax (true parallax + zero-point).
        """
        parallax = np.asarray(parallax, dtype=float).copy()
        parallax_error = np.asarray(parallax_error, dtype=float).copy()
        tail = self.code == OUTLIER_CODES["tail"]
        parallax[tail] = expected[tail] + self.settings.tail_scale * (parallax[tail] - expected[tail])
        mismatch = self.code == OUTLIER_CODES["mismatch"]
        other = self.partner[mismatch]
        parallax[mismatch], parallax_error[mismatch] = parallax[other], parallax_error[other]
        return parallax, parallax_error


def draw_outliers(outliers, n, rng):
    """Each star's outlier kind, its binary flux ratio and its cross-match partner; ``None`` when off.

    Always draws the same numbers for a given ``n`` (one uniform for the kind,
    one for the mass ratio, one partner index per star), whatever the fractions.
    """
    outliers = as_outliers(outliers)
    if outliers is None:
        return None
    u_kind = rng.random(n)
    q = outliers.binary_q_min + (1.0 - outliers.binary_q_min) * rng.random(n)
    partner = (np.arange(n) + rng.integers(1, max(n, 2), n)) % n  # another star (itself only if n == 1)
    edges = np.cumsum([outliers.binary, outliers.mismatch, outliers.tail])
    code = np.zeros(n, np.int8)
    for kind, lo, hi in zip(("binary", "mismatch", "tail"), np.r_[0.0, edges[:-1]], edges):
        code[(u_kind >= lo) & (u_kind < hi)] = OUTLIER_CODES[kind]
    flux_ratio = np.where(code == OUTLIER_CODES["binary"], q**4, 0.0)
    return OutlierDraw(outliers, code, flux_ratio, partner)
