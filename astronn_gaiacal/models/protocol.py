"""What every trained joint model offers, whether one network or a deep ensemble of them.

:class:`ZeropointModel` is the interface that callers (the pipeline, the
command line, the catalogue workers) program against:
:class:`~astronn_gaiacal.models.GaiaCalBCNNBase` and
:class:`~astronn_gaiacal.models.DeepEnsemble` both implement it, with the same
signatures.  The operations built on the MC-dropout predictions (parallaxes,
distances, the zero-point refits, the constant zero-point) are written here
once; an implementation supplies :meth:`~ZeropointModel.predict`,
:meth:`~ZeropointModel.predict_zeropoint`, :meth:`~ZeropointModel.member_parallaxes`
and :attr:`~ZeropointModel.n_members`.
"""
import abc
import warnings

import numpy as np
from astropy import units as u

from .. import conversions
from ..zeropoint.calibrated import TREND_ESTIMATE, CalibratedZeropoint
from ..zeropoint.estimates import ENSEMBLE_REFITS, combine_fits, refits_from_parallaxes
from ..zeropoint.fit import fit_zeropoint
from ..zeropoint.likelihood import likelihood_for_loss
from ..zeropoint.trends import MISSING_ANCHOR_ERROR, feature_column, fit_zeropoint_trend
from .inputs import as_1d_float, refit_inputs, spectra_and_magnitude

__all__ = ["DESCRIPTIVE_ATTRIBUTES", "LEARNED", "OWN_REFIT", "ZeropointCalibrationWarning", "ZeropointModel"]

#: Attributes that describe a trained model; a deep ensemble has its members' values.
DESCRIPTIVE_ATTRIBUTES = ("offset", "offset_features", "n_features", "spectrum_length", "band", "feature_ranges",
                          "loss_name", "mc_num", "n_members")

#: Name of the estimate of :meth:`ZeropointModel.refit_zeropoint` that refits one model on its own.
OWN_REFIT = "refit"

#: ``estimate=`` of :meth:`ZeropointModel.zeropoint` for the offset the network learned (not the calibrated one).
LEARNED = "learned"


class ZeropointCalibrationWarning(UserWarning):
    """The model carries no calibrated zero-point: its numbers are the learned offset's (biased, docs/calibration.rst)."""


class ZeropointModel(abc.ABC):
    """A trained joint distance + Gaia zero-point model (one network or an ensemble).

    Attributes
    ----------
    offset : {'none', 'constant', 'multivariate'}
        The zero-point model.
    offset_features : list of str
        Inputs of a multivariate zero-point model.
    n_features : int
        Offset-feature columns of the full input layout (0 unless multivariate).
    spectrum_length : int
        Pixels (inputs) per star.
    band : str
        Photometric band of the magnitudes.
    feature_ranges : dict or None
        ``{feature: [min, max]}`` of the training set (multivariate).
    loss_name : str
        The training likelihood.
    mc_num : int
        MC-dropout passes per prediction (settable).
    n_members : int
        Trained networks behind the predictions (1 for a single model).
    default_estimate : str
        The estimate :meth:`refit_zeropoint` returns when none is named.
    zeropoint_calibration : CalibratedZeropoint or None
        The calibrated zero-point (constant) or trend (multivariate) fitted on
        the training set at the end of training (:meth:`calibrate_zeropoint`);
        what :meth:`zeropoint` and the per-star zero-points report by default.
    """

    offset: str
    offset_features: list
    n_features: int
    spectrum_length: int
    band: str
    feature_ranges: dict
    loss_name: str
    mc_num: int

    #: ``'refit'``: the model's own refit (:data:`~astronn_gaiacal.models.protocol.OWN_REFIT`); an ensemble combines its members'.
    default_estimate = OWN_REFIT

    #: The calibrated zero-point (:class:`~astronn_gaiacal.zeropoint.calibrated.CalibratedZeropoint`), or None.
    zeropoint_calibration = None

    @property
    @abc.abstractmethod
    def n_members(self):
        """Trained networks behind the predictions (1 for a single model)."""

    # ------------------------------------------------------------------ implemented by each kind
    @abc.abstractmethod
    def predict(self, input_data, inputs_err=None, batch_size=None, calibrated=True, snr=None):
        """Fakemag ``(N, 1)`` and its uncertainties ``{'total', 'model', 'predictive'}`` (astroNN's form).

        ``input_data`` holds spectra, spectra + magnitude, or the full layout;
        ``inputs_err`` is ignored (astroNN's signature); ``batch_size`` is the
        number of stars per compiled MC-dropout call.  The uncertainties are
        multiplied by the model's fitted uncertainty scale unless
        ``calibrated=False`` (:mod:`~astronn_gaiacal.models.calibration`); with
        the stars' ``snr``, by the scale at each star's S/N where the
        calibration has an S/N dependence.
        """

    @abc.abstractmethod
    def predict_zeropoint(self, features=None, mc_num=None, batch_size=None, shared_masks=False, components=False):
        """The offset calibration model on its own: per-star zero-point with its uncertainty.

        Parameters
        ----------
        features : ndarray, Table, DataFrame or dict, optional
            Offset features (multivariate); ignored by a constant model.
        mc_num : int, optional
            Stochastic passes; defaults to ``mc_num``.
        batch_size : int, optional
            Stars per compiled call.
        shared_masks : bool
            Share each pass's dropout masks by a batch of stars (multivariate).
        components : bool
            Also return ``{'mc': ..., 'ensemble': ...}``, the two parts of the
            error (the between-member part is 0 for a single model).

        Returns
        -------
        zeropoint, zeropoint_error : Quantity [mas]
            Shape (N,) (multivariate) or scalar (constant); NaN where a
            feature is NaN/-9999.
        """

    @abc.abstractmethod
    def member_parallaxes(self, input_data, magnitude=None, batch_size=None):
        """Each member's MC-mean model parallax :math:`L\\,10^{-m/5}`.

        Returns
        -------
        ndarray, shape (n_members, N)
            In mas.
        """

    # ------------------------------------------------------------------ written once
    @property
    def refit_likelihood(self):
        """The likelihood of this model's refits: its training loss's (the Student-t of ``gaia_student_t_nll``
        with its ``nu``, else the Gaussian; :func:`~astronn_gaiacal.zeropoint.likelihood.likelihood_for_loss`)."""
        config = getattr(self, "loss_config", None)
        if config is None and hasattr(self, "members"):
            config = getattr(self.members[0], "loss_config", None)
        return likelihood_for_loss(self.loss_name, config)

    def test(self, input_data, inputs_err=None, batch_size=None):
        """Alias of :meth:`predict` (astroNN's older name)."""
        return self.predict(input_data, inputs_err=inputs_err, batch_size=batch_size)

    def _via_fakemag(self, input_data, magnitude, batch_size, convert):
        spectra, mag = spectra_and_magnitude(self, input_data, magnitude)
        fakemag, err = self.predict(spectra, batch_size=batch_size)
        value = convert(fakemag[:, 0], mag)
        return value, {k: convert(fakemag[:, 0], mag, v[:, 0])[1] for k, v in err.items()}

    def predict_parallax(self, input_data, magnitude=None, batch_size=None):
        """Spectro-photometric parallax :math:`L\\,10^{-m/5}` (a true parallax: no zero-point).

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``), spectra + magnitude, or the full layout.
        magnitude : array_like or Quantity [mag], optional
            Extinction-corrected magnitudes in ``band``.
        batch_size : int, optional

        Returns
        -------
        parallax : Quantity [mas], shape (N,)
        uncertainty : dict of Quantity [mas]
            ``{'total', 'model', 'predictive'}``.
        """
        return self._via_fakemag(input_data, magnitude, batch_size, conversions.fakemag_to_parallax)

    def predict_distance(self, input_data, magnitude=None, batch_size=None):
        """Spectro-photometric distance :math:`1000\\,10^{m/5}/L` pc.

        Parameters are those of :meth:`predict_parallax`.

        Returns
        -------
        distance : Quantity [pc], shape (N,)
        uncertainty : dict of Quantity [pc]
            ``{'total', 'model', 'predictive'}`` (first-order propagation).
        """
        return self._via_fakemag(input_data, magnitude, batch_size, conversions.fakemag_to_distance)

    def refit_zeropoint(self, input_data, parallax, parallax_error, magnitude=None, batch_size=None, scatter=None,
                        fit_scale=False, components=False, estimate=None, likelihood=None):
        """Maximum-likelihood constant zero-point with the luminosity network(s) held fixed.

        The model parallaxes are the MC-dropout means :math:`L\\,10^{-m/5}`
        (:meth:`member_parallaxes`: no dropout noise, unlike during training);
        the zero-point and the fractional scatter of the model parallaxes are
        fitted to the Gaia parallaxes
        (:func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`).  Works for any
        offset variant (for ``'none'`` it measures the offset the network
        absorbed).  Stars without a Gaia parallax (NaN/-9999) are left out;
        ``n_stars`` of the result counts the stars used.

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``) or the full input layout.
        parallax, parallax_error : array_like or Quantity [mas]
            Gaia catalogue parallaxes and errors, not zero-point corrected.
        magnitude : array_like, optional
            Extinction-corrected magnitudes in ``band``.
        batch_size : int, optional
        scatter : float, optional
            ``estimate='refit'`` only: fix the fractional scatter instead of fitting it.
        fit_scale : bool
            ``estimate='refit'`` only: also fit a common luminosity scale (the
            zero-point is then the intercept at zero parallax).
        components : bool
            Also return the parts of the error: ``{'statistical', 'ensemble', 'member_spread'}``
            (uas), ``'failed'`` (the indices of the members left out) and, for
            ``refit_consistency_ensemble``, ``'consistency_factor'``.
        estimate : str, optional
            ``'refit'``: one model's own refit (a single model's default; an
            ensemble needs one member for it).  ``'refit_ensemble'``,
            ``'refit_scaled_ensemble'``, ``'refit_curved_ensemble'`` or
            ``'refit_consistency_ensemble'``
            (:data:`~astronn_gaiacal.zeropoint.estimates.ENSEMBLE_REFITS`): the
            refits of the members that trained
            (:func:`~astronn_gaiacal.zeropoint.estimates.usable_members`) combined; a
            single model counts as a one-member ensemble.  Default
            :attr:`default_estimate` (an ensemble's is
            :data:`~astronn_gaiacal.zeropoint.estimates.DEFAULT_ESTIMATE`, the one
            whose error the calibration study found calibrated, docs/calibration.rst).
        likelihood : None, str or Likelihood
            Of every refit; default :attr:`refit_likelihood`, the one the model was
            trained with (``'gaussian'`` or ``'student_t'``: :func:`~astronn_gaiacal.zeropoint.fit.fit_zeropoint`).

        Returns
        -------
        ZeropointFit, or (ZeropointFit, dict) with ``components=True``
        """
        estimate = self.default_estimate if estimate is None else estimate
        valid = (OWN_REFIT, *ENSEMBLE_REFITS) if self.n_members == 1 else ENSEMBLE_REFITS
        if estimate not in valid:
            raise ValueError(f"estimate must be one of {list(valid)}, got {estimate!r}")
        if estimate != OWN_REFIT and (scatter is not None or fit_scale):
            raise ValueError(f"scatter and fit_scale apply to estimate={OWN_REFIT!r} only, not {estimate!r}")
        _, spectra, mag, plx, plx_err = refit_inputs(self, input_data, parallax, parallax_error, magnitude)
        model_plx = self.member_parallaxes(spectra, magnitude=mag, batch_size=batch_size)
        likelihood = self.refit_likelihood if likelihood is None else likelihood
        if estimate == OWN_REFIT:
            combined = fit_zeropoint(plx, plx_err, model_plx[0], scatter=scatter, fit_scale=fit_scale,
                                     likelihood=likelihood)
            parts = {**combine_fits([combined])[1], "failed": []}
        else:
            fits = refits_from_parallaxes(model_plx, plx, plx_err, mag, likelihood)
            combined, parts = fits[estimate]
            parts = {**parts, "failed": fits["failed"]}
        return (combined, parts) if components else combined

    def refit_zeropoint_trend(self, input_data, parallax, parallax_error, features, magnitude=None, names=None,
                              fit_scale=True, batch_size=None, separately=False, likelihood=None, pivots=None,
                              anchor_fakemag=None, anchor_fakemag_error=None):
        """Zero-point quadratic in each feature (and a luminosity scale) with the luminosity network held fixed.

        The additive form of the paper's eqs. 7-9, fitted by maximum likelihood
        to the Gaia parallaxes (:func:`astronn_gaiacal.zeropoint.trends.fit_zeropoint_trend`)
        against the MC-mean model parallaxes (an ensemble's: the mean of its
        members'); the free scale keeps a luminosity-scale error of the network
        out of the trend.  Works for any offset variant; stars without a Gaia
        parallax are left out.

        Parameters
        ----------
        input_data : ndarray
            Spectra (with ``magnitude``) or the full input layout.
        parallax, parallax_error : array_like or Quantity [mas]
        features : Table, dict or DataFrame
            The feature columns of the same stars.
        magnitude : array_like, optional
        names : sequence of str, optional
            Features to fit; default ``offset_features``.
        fit_scale : bool
        batch_size : int, optional
        separately : bool
            Fit one quadratic per feature, each on its own (the marginal trends
            of the paper's eqs. 7-9), from one MC-dropout prediction.
        likelihood : None, str or Likelihood
            Default :attr:`refit_likelihood` (the training loss's), as :meth:`refit_zeropoint`.
        pivots : dict, optional
            ``{feature: pivot}``; default the paper's pivots
            (:func:`~astronn_gaiacal.zeropoint.trends.fit_zeropoint_trend`).
        anchor_fakemag, anchor_fakemag_error : array_like, optional
            Known fakemag of some of the stars (NaN elsewhere; e.g. red-clump stars,
            :data:`~astronn_gaiacal.constants.RED_CLUMP_ABSMAG_KS`) and its 1-sigma
            error: the fit then frees an additive fakemag term, which these pin
            (:func:`~astronn_gaiacal.zeropoint.trends.fit_zeropoint_trend`;
            docs/calibration.rst, "The partner: an additive luminosity error").

        Returns
        -------
        ZeropointTrendFit, or ``{name: ZeropointTrendFit}`` with ``separately=True``
        """
        n = spectra_and_magnitude(self, input_data, magnitude)[0].shape[0]
        names = list(names or self.offset_features)
        columns = {name: feature_column(features, name, n) for name in names}
        if anchor_fakemag is not None:  # checked before the prediction
            known = as_1d_float(anchor_fakemag, "anchor_fakemag", n)
            if anchor_fakemag_error is None:
                raise ValueError(MISSING_ANCHOR_ERROR)
            error = as_1d_float(anchor_fakemag_error, "anchor_fakemag_error", n)
        has, spectra, mag, plx, plx_err = refit_inputs(self, input_data, parallax, parallax_error, magnitude)
        model_plx = np.mean(self.member_parallaxes(spectra, magnitude=mag, batch_size=batch_size), axis=0)
        columns = {name: col[has] for name, col in columns.items()}
        likelihood = self.refit_likelihood if likelihood is None else likelihood
        anchored = {}
        if anchor_fakemag is not None:
            anchored = dict(magnitude=mag, anchor_fakemag=known[has], anchor_fakemag_error=error[has])
        if separately:
            return {name: fit_zeropoint_trend(plx, plx_err, model_plx, {name: columns[name]}, names=[name],
                                              fit_scale=fit_scale, likelihood=likelihood, pivots=pivots, **anchored)
                    for name in names}
        return fit_zeropoint_trend(plx, plx_err, model_plx, columns, names=names, fit_scale=fit_scale,
                                   likelihood=likelihood, pivots=pivots, **anchored)

    def calibrate_zeropoint(self, input_data, parallax, parallax_error, magnitude=None, offset_features=None,
                            batch_size=None, data="training set"):
        """Fit and keep the calibrated zero-point (:attr:`zeropoint_calibration`) on these stars.

        A constant model: :meth:`refit_zeropoint` with :attr:`default_estimate`
        (an ensemble's is the estimate the calibration study validated).  A
        multivariate model: :meth:`refit_zeropoint_trend`, a quadratic in each
        feature about the training stars' median, with a free luminosity scale (estimate
        :data:`~astronn_gaiacal.zeropoint.calibrated.TREND_ESTIMATE`).  Training
        calls it on the training set; call it again to calibrate on other stars.

        Parameters
        ----------
        input_data, parallax, parallax_error, magnitude, batch_size
            As for :meth:`refit_zeropoint`.
        offset_features : Table, dict or DataFrame, optional
            The feature columns (multivariate).
        data : str
            What the stars are, recorded with the result.

        Returns
        -------
        CalibratedZeropoint

        Raises
        ------
        ValueError
            Offset ``'none'``, too few usable stars for the fit, or a fitted
            luminosity scale that is not positive (the network's parallaxes do
            not follow Gaia's: nothing is kept).
        """
        if self.offset == "constant":
            fit = self.refit_zeropoint(input_data, parallax, parallax_error, magnitude=magnitude, batch_size=batch_size)
            estimate = self.default_estimate
        elif self.offset == "multivariate":
            if offset_features is None:
                raise ValueError(f"the multivariate model needs offset_features {self.offset_features}")
            pivots = {name: float(np.nanmedian(feature_column(offset_features, name, allow_missing=True)))
                      for name in self.offset_features}  # the constant term is then the typical star's level
            fit = self.refit_zeropoint_trend(input_data, parallax, parallax_error, offset_features,
                                             magnitude=magnitude, batch_size=batch_size, pivots=pivots)
            estimate = TREND_ESTIMATE
        else:
            raise ValueError(f"the model has offset={self.offset!r}: it has no zero-point to calibrate")
        scale = float(getattr(fit, "scale", 1.0))
        if not scale > 0:  # parallax_gaia = scale * parallax_NN + zero-point: a luminosity scale must be positive
            raise ValueError(f"the fitted luminosity scale is {scale:.3g}: the network's parallaxes do not follow the "
                             f"Gaia parallaxes of the {data} (too little training?), so no zero-point is calibrated")
        self.zeropoint_calibration = CalibratedZeropoint(estimate, fit, str(data))
        return self.zeropoint_calibration

    def _calibrate_zeropoint_after_fit(self, input_data, parallax, parallax_error, magnitude, offset_features):
        """:meth:`calibrate_zeropoint` on the training set; a warning, not an error, when it cannot be fitted."""
        self.zeropoint_calibration = None
        if self.offset == "none":
            return
        try:
            self.calibrate_zeropoint(input_data, parallax, parallax_error, magnitude=magnitude,
                                     offset_features=offset_features)
        except ValueError as err:
            warnings.warn(f"the zero-point was not calibrated ({err}); the learned offset is reported instead",
                          ZeropointCalibrationWarning, stacklevel=3)

    def zeropoint(self, mc_num=None, components=False, estimate=None):
        """The constant model's zero-point and its uncertainty, in micro-arcsec.

        Parameters
        ----------
        mc_num : int, optional
            Stochastic passes of the learned offset; defaults to ``mc_num``.
        components : bool
            Also return the parts of the error: for the learned offset
            ``{'mc': ..., 'ensemble': ...}`` (the MC-dropout and between-member
            parts), for the calibrated one ``{}``.
        estimate : {None, 'calibrated', 'learned'}
            ``None`` (default): the calibrated zero-point
            (:attr:`zeropoint_calibration`) if the model has one, else the
            learned offset with a :class:`~astronn_gaiacal.models.protocol.ZeropointCalibrationWarning`.

        Returns
        -------
        value, error : Quantity [uas]
            (and the parts, with ``components=True``)

        Raises
        ------
        ValueError
            The model's offset is not ``'constant'``, an unknown ``estimate``,
            or ``'calibrated'`` for a model without a calibration.
        """
        if self.offset != "constant":
            raise ValueError(f"zeropoint() is for offset='constant'; this {type(self).__name__} has "
                             f"offset={self.offset!r}")
        if estimate not in (None, "calibrated", LEARNED):
            raise ValueError(f"estimate must be None, 'calibrated' or {LEARNED!r}, got {estimate!r}")
        cal = self.zeropoint_calibration
        if estimate == "calibrated" and cal is None:
            raise ValueError("the model has no calibrated zero-point (calibrate_zeropoint() fits one)")
        if estimate is None and cal is None:
            warnings.warn(f"{type(self).__name__} has no calibrated zero-point: the learned offset is reported",
                          ZeropointCalibrationWarning, stacklevel=2)
        if estimate != LEARNED and cal is not None:
            value, error = cal.fit.value.to(u.uas), cal.fit.error.to(u.uas)
            return (value, error, {}) if components else (value, error)
        value, error, parts = self.predict_zeropoint(mc_num=mc_num, components=True)
        if components:
            return value.to(u.uas), error.to(u.uas), {k: v.to(u.uas) for k, v in parts.items()}
        return value.to(u.uas), error.to(u.uas)
