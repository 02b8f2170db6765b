"""The calibrated zero-point a trained model carries: its refit on its own training set.

The offset a network learns is biased (docs/calibration.rst); the calibrated
estimate is the maximum-likelihood refit with the network(s) held fixed: for a
constant model a number (the estimate the calibration study validated), for a
multivariate model the trend, quadratic in each feature, with a free
luminosity scale.  :class:`CalibratedZeropoint` keeps that result with the
name of its estimate, turns it into per-star zero-points, and round-trips
through the JSON of a model folder.

Examples
--------
>>> import numpy as np
>>> from astropy import units as u
>>> from astronn_gaiacal.zeropoint.fit import ZeropointFit
>>> fit = ZeropointFit(-52.0 * u.uas, 2.0 * u.uas, 0.05, 0.01, 3000)
>>> cal = CalibratedZeropoint("refit_ensemble", fit)
>>> cal.per_star(None, 2)[0]
<Quantity [-0.052, -0.052] mas>
>>> CalibratedZeropoint.from_dict(cal.to_dict()) == cal
True
"""
from dataclasses import dataclass

import numpy as np
from astropy import units as u

from ..constants import is_missing
from .fit import ZeropointFit
from .trends import ZeropointTrendFit, feature_column

__all__ = ["TREND_ESTIMATE", "CalibratedZeropoint"]

#: Name of the multivariate model's calibrated estimate: the trend refit with the network(s) fixed.
TREND_ESTIMATE = "trend_refit"


@dataclass(frozen=True)
class CalibratedZeropoint:
    """A model's calibrated zero-point: the named estimate and its fit.

    Attributes
    ----------
    estimate : str
        ``'refit'``, an ensemble refit (e.g. ``'refit_ensemble'``) or
        :data:`TREND_ESTIMATE`.
    fit : ZeropointFit or ZeropointTrendFit
    data : str
        What it was fitted on (``'training set'`` at the end of training).
    """

    estimate: str
    fit: object
    data: str = "training set"

    @property
    def is_trend(self):
        """True for a trend (multivariate), False for a constant."""
        return isinstance(self.fit, ZeropointTrendFit)

    @property
    def features(self):
        """The features of a trend, ``()`` for a constant."""
        return tuple(self.fit.features) if self.is_trend else ()

    def per_star(self, features, n):
        """Zero-point and 1-sigma error of ``n`` stars, Quantity [mas].

        Parameters
        ----------
        features : Table, dict or DataFrame, or None
            The trend's feature columns (ignored for a constant).
        n : int
            Number of stars.

        Returns
        -------
        zeropoint, zeropoint_error : Quantity [mas], shape (n,)
            A constant repeated; a trend evaluated per star, also outside its
            valid ranges (flag those with the model's ``out_of_range``), NaN
            where a feature is missing.
        """
        if not self.is_trend:
            return (np.full(n, self.fit.value.to_value(u.mas)) * u.mas,
                    np.full(n, self.fit.error.to_value(u.mas)) * u.mas)
        columns = {name: np.asarray(feature_column(features, name, n, allow_missing=True), float)
                   for name in self.features}
        has = np.ones(n, bool)
        for x in columns.values():
            has &= ~is_missing(x)
        value, error = np.full(n, np.nan), np.full(n, np.nan)
        if has.any():
            v, e = self.fit({name: x[has] for name, x in columns.items()}, extrapolate=True)
            value[has], error[has] = v.to_value(u.mas), e.to_value(u.mas)
        return value * u.mas, error * u.mas

    def summary(self):
        """JSON-ready numbers: ``estimate``, ``data`` and the fit's ``to_dict()``."""
        return {"estimate": self.estimate, "data": self.data, **self.fit.to_dict()}

    def to_dict(self):
        """Everything needed to rebuild it (:meth:`from_dict`), as plain JSON types."""
        block = {"estimate": self.estimate, "data": self.data}
        f = self.fit
        if self.is_trend:
            block["trend"] = {
                "features": list(f.features), "pivots": [float(p) for p in f.pivots],
                "valid_ranges": {k: [float(v) for v in r] for k, r in f.valid_ranges.items()},
                "coefficients_uas": [float(c) for c in f.coefficients],
                "covariance_uas2": np.asarray(f.covariance, float).tolist(),
                "scale": float(f.scale), "scale_error": float(f.scale_error), "scatter": float(f.scatter),
                "scatter_error": float(f.scatter_error), "n_stars": int(f.n_stars), "likelihood": str(f.likelihood),
            }
        else:
            block["constant"] = f.to_dict()
        return block

    @classmethod
    def from_dict(cls, block):
        """Rebuild from :meth:`to_dict`'s output; ``None`` gives ``None`` (a model without a calibration)."""
        if block is None:
            return None
        if "trend" in block:
            t = block["trend"]
            fit = ZeropointTrendFit(
                tuple(t["features"]), tuple(float(p) for p in t["pivots"]),
                {k: tuple(float(v) for v in r) for k, r in t["valid_ranges"].items()},
                np.asarray(t["coefficients_uas"], float), np.asarray(t["covariance_uas2"], float),
                float(t["scale"]), float(t["scale_error"]), float(t["scatter"]), float(t["scatter_error"]),
                int(t["n_stars"]), str(t["likelihood"]))
        else:
            c = block["constant"]
            fit = ZeropointFit(c["value_uas"] * u.uas, c["error_uas"] * u.uas, float(c["scatter"]),
                               float(c["scatter_error"]), int(c["n_stars"]), float(c["scale"]),
                               float(c["scale_error"]), float(c["curvature"]), float(c["curvature_error"]),
                               str(c["likelihood"]))
        _check_numbers(fit)
        return cls(str(block["estimate"]), fit, str(block.get("data", "training set")))

    def __eq__(self, other):
        if not isinstance(other, CalibratedZeropoint):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None


def _check_numbers(fit):
    """ValueError when a stored calibration holds numbers no fit can give (edited or corrupted settings)."""
    if isinstance(fit, ZeropointTrendFit):
        values, errors = np.asarray(fit.coefficients, float), np.diag(np.asarray(fit.covariance, float))
    else:
        values, errors = np.atleast_1d(fit.value.to_value(u.uas)), np.atleast_1d(fit.error.to_value(u.uas))
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(errors)) and np.all(errors >= 0)):
        raise ValueError("the folder's stored zero-point calibration holds a non-finite value or a negative or "
                         "non-finite error (the settings file was edited or corrupted): train or copy the model again")
