"""MC-dropout inference of one trained joint model: fakemag, zero-points, model parallaxes.

:class:`JointPrediction` is the part of
:class:`~astronn_gaiacal.models.GaiaCalBCNNBase` that implements the
prediction methods of :class:`~astronn_gaiacal.models.ZeropointModel` for a
single network.
"""
import contextlib

import numpy as np
from astropy import units as u

from ..constants import is_missing
from ..nn.device import use_fused_kernels
from ..nn.inference import (check_mc_passes, dropout_active, dropout_disabled, dropout_switched_off, mc_predict,
                             mc_predict_shared_masks)
from .inputs import check_spectra, normalised_columns, split_layout

__all__ = ["SHARED_MASKS_BATCH", "JointPrediction", "without_dropout"]

#: Stars per call of :meth:`JointPrediction.predict_zeropoint` with ``shared_masks`` when no batch size is given.
SHARED_MASKS_BATCH = 4096


class JointPrediction:
    """Predictions of a trained joint model (mixed into :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`).

    Uses the model's ``keras_model_predict`` (spectra -> fakemag and its
    log-variance), ``offset_model``, input and label normalisation, ``mc_num``
    and the inference switches ``inference_bf16`` and ``inference_fused``.
    """

    #: One network.
    n_members = 1

    def _normalise_spectra(self, spectra):
        n_pix = self.n_pixels
        mean = np.asarray(self.input_mean["input"], dtype=float).ravel()[:n_pix]
        std = np.asarray(self.input_std["input"], dtype=float).ravel()
        std = std[:n_pix] if std.size > 1 else np.ones(n_pix)
        return normalised_columns(spectra, mean, std)

    def _label_std(self):
        return float(np.asarray(self.labels_std["output"]).ravel()[0])

    def predict(self, input_data, inputs_err=None, batch_size=None, calibrated=True, snr=None):
        """Fakemag with MC-dropout uncertainties, as astroNN's Bayesian models return them.

        Parameters
        ----------
        input_data : ndarray
            Spectra ``(N, spectrum_length)``, spectra + magnitude, or the full layout.
        inputs_err : ignored
            Kept for astroNN's signature.
        batch_size : int, optional
            Stars per compiled MC-dropout call (each is ``batch_size * mc_num``
            rows); by default chosen so that a call holds about
            :data:`~astronn_gaiacal.nn.inference.DEFAULT_CALL_VALUES` input values
            (:data:`~astronn_gaiacal.nn.inference.DEFAULT_FUSED_CALL_VALUES` for the
            paper's network, whose passes run in fused kernels).
        calibrated : bool
            Multiply the uncertainties by the model's fitted scale
            (``uncertainty_scale``, :mod:`~astronn_gaiacal.models.calibration`;
            default).  ``False``: the network's own.
        snr : array_like, optional
            The spectra's S/N: with a calibration that has an S/N dependence,
            each star's scale at its S/N (:meth:`~astronn_gaiacal.models.calibration.UncertaintyCalibration.scale_at`).

        Returns
        -------
        fakemag : ndarray, shape (N, 1)
        uncertainty : dict
            ``{'total', 'model', 'predictive'}``, each ``(N, 1)``: the
            predictive (aleatoric) and MC-dropout model (epistemic) standard
            deviations and their quadrature sum, each times the uncertainty scale.
            With the network's dropout switched off (:func:`without_dropout`),
            ``'model'`` and ``'total'`` are NaN: no MC spread was measured.
        """
        self.has_model_check()
        spectra, _ = split_layout(self, input_data)
        check_mc_passes(self.mc_num, dropout_active(self.keras_model_predict))
        x = self._normalise_spectra(check_spectra(self, spectra, dtype=None))  # no full-size copy
        mean, var = mc_predict(
            self.keras_model_predict, x, mc_num=self.mc_num, batch_size=batch_size,
            progress=self.verbose > 0, desc="fakemag", bf16=self.inference_bf16,
            fused_kernels=use_fused_kernels(self.inference_fused, "inference"),
        )
        scale = self._label_std()
        fakemag = mean[:, :1] * scale
        model_var = var[:, :1] * scale**2
        if dropout_switched_off(self.keras_model_predict):  # one deterministic pass: no spread measured
            model_var = np.full_like(model_var, np.nan)
        predictive_var = np.exp(mean[:, 1:2]) * scale**2
        return fakemag, self._scaled({
            "total": np.sqrt(model_var + predictive_var),
            "model": np.sqrt(model_var),
            "predictive": np.sqrt(predictive_var),
        }, calibrated, snr)

    def member_parallaxes(self, input_data, magnitude=None, batch_size=None):
        """The MC-mean model parallax :math:`L\\,10^{-m/5}` (mas) as one row: shape ``(1, N)``."""
        return self.predict_parallax(input_data, magnitude=magnitude, batch_size=batch_size)[0].to_value(u.mas)[None]

    def predict_zeropoint(self, features=None, mc_num=None, batch_size=None, shared_masks=False, components=False):
        """The offset calibration model on its own: per-star zero-point with MC-dropout spread.

        Parameters
        ----------
        features : ndarray, Table, DataFrame or dict, optional
            Offset features of any Gaia stars (multivariate); ignored for the
            constant model, which returns one value.
        mc_num : int, optional
            Stochastic passes; defaults to ``mc_num``.  1 only with the offset
            network's dropout switched off (:func:`without_dropout`): one
            deterministic pass, its error NaN (no spread measured).
        batch_size : int, optional
            Stars per compiled call (default: chosen by
            :func:`~astronn_gaiacal.nn.inference.mc_predict`; :data:`SHARED_MASKS_BATCH`
            with ``shared_masks``).
        shared_masks : bool
            Multivariate only: share each pass's dropout masks by a batch of
            stars (:func:`~astronn_gaiacal.nn.inference.mc_predict_shared_masks`):
            at most ~1.5x faster on a CPU with Numba (per-star masks run in the
            fused kernel), several times on a GPU or without Numba; the same
            distribution for every star, MC noise correlated between the stars
            of a batch.  Off by default.
        components : bool
            Also return ``{'mc': error, 'ensemble': 0}`` (one network: no
            between-member part), as :meth:`DeepEnsemble.predict_zeropoint
            <astronn_gaiacal.models.DeepEnsemble.predict_zeropoint>` does.

        Returns
        -------
        zeropoint, zeropoint_error : Quantity [mas]
            Shape (N,) (multivariate) or scalar (constant).  Rows with
            NaN/-9999 features come back as NaN.  Convention:
            ``parallax_gaia = parallax_true + zeropoint``.

        Raises
        ------
        ValueError
            ``mc_num=1`` with MC dropout on (:func:`~astronn_gaiacal.nn.inference.check_mc_passes`).
        """
        self.has_model_check()
        if self.offset == "none":
            raise ValueError("this model was trained with offset='none': it has no zero-point model")
        mc_num = self.mc_num if mc_num is None else mc_num
        check_mc_passes(mc_num, dropout_active(self.offset_model))  # before int(): 2.5 or 0 are refused, not cast
        mc_num = int(mc_num)
        scale = self._label_std()
        if self.offset == "constant":
            mean, var = mc_predict(self.offset_model, np.ones((1, 1), np.float32), mc_num=mc_num, progress=False)
            zp, zp_err = mean[0, 0] * scale * u.mas, np.sqrt(var[0, 0]) * scale * u.mas
        else:
            feats = self.feature_matrix(features)
            bad = is_missing(feats).any(axis=1)
            n_pix = self.n_pixels
            mean_all = np.asarray(self.input_mean["input"], dtype=float).ravel()
            std_all = np.asarray(self.input_std["input"], dtype=float).ravel()
            f_mean, f_std = mean_all[n_pix + 1 :], std_all[n_pix + 1 :]
            x = np.where(bad[:, None], 0.0, (np.where(bad[:, None], 0.0, feats) - f_mean) / f_std).astype(np.float32)
            if shared_masks:
                mean, var = mc_predict_shared_masks(
                    self.offset_model, x, mc_num=mc_num, batch_size=batch_size or SHARED_MASKS_BATCH,
                    progress=self.verbose > 0, desc="zero-point",
                )
            else:
                mean, var = mc_predict(self.offset_model, x, mc_num=mc_num, batch_size=batch_size,
                                       progress=self.verbose > 0, desc="zero-point")
            zp = np.where(bad, np.nan, mean[:, 0] * scale) * u.mas
            zp_err = np.where(bad, np.nan, np.sqrt(var[:, 0]) * scale) * u.mas
        if mc_num == 1:  # one deterministic pass (dropout off): no spread measured, the error is unknown, not 0
            zp_err = np.full(np.shape(zp_err), np.nan) * u.mas
        if components:
            return zp, zp_err, {"mc": zp_err, "ensemble": np.zeros_like(zp_err)}
        return zp, zp_err


@contextlib.contextmanager
def without_dropout(net, which=("keras_model_predict", "offset_model")):
    """MC dropout switched off in the sub-models ``which`` of a model, or of each member of an ensemble.

    Inside the block a prediction with ``mc_num=1`` is one deterministic pass.

    Parameters
    ----------
    net : GaiaCalBCNNBase or DeepEnsemble
    which : tuple of str
        Attributes of each member holding the Keras models to run without dropout.
    """
    with contextlib.ExitStack() as stack:
        for member in getattr(net, "members", [net]):
            for name in which:
                if getattr(member, name, None) is not None:
                    stack.enter_context(dropout_disabled(getattr(member, name)))
        yield net
