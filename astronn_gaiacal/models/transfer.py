"""Start a joint model from another model's luminosity network (``fit(luminosity_from=...)``).

The second stage of a two-stage calibration (docs/calibration.rst): a
multivariate offset fitted with the luminosity scale fixed by a
constant-offset model.  :class:`LuminosityTransfer` loads and checks the source
model and takes its spectrum and label normalisation and its luminosity
weights, kept frozen or fine-tuned.
"""
import os

import numpy as np

from .folders import folder_kind, load_model_folder

__all__ = ["LuminosityTransfer"]


class LuminosityTransfer:
    """Luminosity-network transfer between joint models (mixed into :class:`~astronn_gaiacal.models.GaiaCalBCNNBase`).

    Only models of this kind can be a source: a deep ensemble cannot (its
    members can).  The transferred state is the provenance
    ``luminosity_from`` (saved with the model), ``luminosity_frozen`` and the
    start weights ``_luminosity_start``, set on the network when it is built.
    """

    def _luminosity_source(self, source):
        """The trained model behind ``luminosity_from`` (a model or its folder), checked against this one."""
        if self.keras_model is not None:
            raise ValueError("luminosity_from needs an untrained model: this one already has a network")
        if isinstance(source, (str, os.PathLike)):
            if folder_kind(source) == "ensemble":
                raise TypeError(f"luminosity_from must be one model's folder, not an ensemble folder: {source}")
            source = load_model_folder(source)
        if not isinstance(source, LuminosityTransfer):
            raise TypeError(f"luminosity_from must be a trained astronn_gaiacal model or its folder (one member, not an "
                            f"ensemble), got {type(source).__name__}")
        source.has_model_check()
        mine = None if self.pixel_mask is None else np.asarray(self.pixel_mask, bool)
        theirs = None if source.pixel_mask is None else np.asarray(source.pixel_mask, bool)
        if (source.spectrum_length != self.spectrum_length or (mine is None) != (theirs is None)
                or (mine is not None and not np.array_equal(mine, theirs))):
            raise ValueError(f"luminosity_from has spectra of {source.spectrum_length} pixels"
                             f"{' with another pixel mask' if mine is not None else ''}; this model has "
                             f"{self.spectrum_length}")
        if source.fakemag_scale != self.fakemag_scale or source.band != self.band:
            raise ValueError(f"luminosity_from uses fakemag_scale {source.fakemag_scale} in {source.band}; this model "
                             f"uses {self.fakemag_scale} in {self.band}")
        return source

    def _adopt_luminosity(self, source, given, freeze):
        """Take the source's spectrum and label normalisation; its weights are set when the network is built."""
        n_pix = self.n_pixels
        for attr in ("input_mean", "input_std"):
            mine = np.asarray(getattr(self, attr)["input"], dtype=float).copy()
            mine[:n_pix] = np.asarray(getattr(source, attr)["input"], dtype=float).ravel()[:n_pix]
            getattr(self, attr)["input"] = mine
            getattr(self.input_normalizer, {"input_mean": "mean_labels", "input_std": "std_labels"}[attr])["input"] = mine
        self.labels_std = {k: np.array(v, dtype=float).copy() for k, v in source.labels_std.items()}
        self.labels_normalizer.std_labels = dict(self.labels_std)
        weights = source.luminosity_model.get_weights()
        if self.luminosity_hidden != source.luminosity_hidden:
            raise ValueError(f"luminosity_from has dense layers {source.luminosity_hidden}; this model has "
                             f"{self.luminosity_hidden}")
        self._luminosity_start = weights
        self.luminosity_frozen = bool(freeze)
        self.luminosity_from = os.path.abspath(os.fspath(given)) if isinstance(given, (str, os.PathLike)) else (
            getattr(source, "folder_name", None) or type(source).__name__)

    def _start_luminosity(self):
        """After the network is built: set the transferred start weights and freeze the luminosity network if asked."""
        if self._luminosity_start is not None:  # fit(luminosity_from=...): start from those weights
            self.luminosity_model.set_weights(self._luminosity_start)
            self._luminosity_start = None
        # frozen also when reloaded, so the saved optimizer state (offset network only) fits
        self.luminosity_model.trainable = not self.luminosity_frozen
